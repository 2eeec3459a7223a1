#!/usr/bin/env bash
# Small batches on real images: SimSiam, SimSiam+GSG and InfoNCE at batches 32 and 64 beside 256, 8 epochs at the
# cifar10_cpu preset, seed 2, with the reference's linear learning-rate rule (lr = base_lr · batch / 256,
# training/optim.py). Each run is finished with the fast linear probe, then all are collected into
# benchmarks/results/cifar10_cpu/batches_seed2_{table,curves,compute_curves}.json, whose figure is kNN and linear
# against the batch.
#
#   nice -n 19 bash benchmarks/cifar10_cpu_batches.sh RUNS_DIR [CACHE_DIR] &
#
# Resumable: the same command continues every run from its last checkpoint. RUNS_DIR belongs outside the checkout.
# The batch-256 SimSiam and SimSiam+GSG runs are cifar10_cpu_seeds.sh's seed-2 runs (the same workdir names: a
# finished run is not trained again). Order: the batch-32 triple, InfoNCE at 256, then the batch-64 triple, so an
# interrupted session leaves the widest contrast whole.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 RUNS_DIR [CACHE_DIR]" >&2
  exit 2
fi
runs=$1
cache=${2:-$runs/cache}
seed=2
cd "$(dirname "$0")/.."
mkdir -p "$runs" "$cache"
declare -A names=([simsiam]=SimSiam [simsiam_gsg]=SimSiam+GSG [simclr]=InfoNCE)
# batch:config, in the order they run
cases=(32:simsiam 32:simsiam_gsg 32:simclr 256:simclr 64:simsiam 64:simsiam_gsg 64:simclr 256:simsiam 256:simsiam_gsg)
for case in "${cases[@]}"; do
  batch=${case%%:*}
  config=${case#*:}
  if [[ $batch == 256 ]]; then workdir="$runs/${config}_e8_s$seed"; else workdir="$runs/${config}_b${batch}_e8_s$seed"; fi
  python -m gsg_jax.main --config="configs/$config.py:cifar10_cpu" --workdir="$workdir" \
    --config.seed="$seed" --config.batch_size="$batch" --config.data.cache_dir="$cache"
  python -m gsg_jax.evaluate --workdir="$workdir" --protocols=knn,fast_linear,diagnostics
done
labels=()
for config in simsiam simsiam_gsg simclr; do
  for batch in 32 64 256; do
    if [[ $batch == 256 ]]; then workdir="$runs/${config}_e8_s$seed"; else workdir="$runs/${config}_b${batch}_e8_s$seed"; fi
    labels+=("--label=${names[$config]}=$workdir")
  done
done
python benchmarks/collect_runs.py --study=cifar10_cpu --name=batches_seed2 --by-batch \
  --title="SimSiam, SimSiam+GSG and InfoNCE at batches 32, 64 and 256, cifar10_cpu preset, 8 epochs, seed 2" \
  --command="nice -n 19 bash benchmarks/cifar10_cpu_batches.sh RUNS_DIR" "${labels[@]}"
