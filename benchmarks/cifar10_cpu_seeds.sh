#!/usr/bin/env bash
# One more seed of the four methods with a predictor at the cifar10_cpu preset (8 epochs): SimSiam, SimSiam+GSG,
# BYOL and BYOL+GSG, each finished with the fast linear probe, then collected into
# benchmarks/results/cifar10_cpu/methods_seed<SEED>_{table,curves}.json. benchmarks/paired_seeds.py reads those
# records (and the earlier seeds') into GSG-minus-plain differences per seed.
#
#   nice -n 19 bash benchmarks/cifar10_cpu_seeds.sh RUNS_DIR SEED [CACHE_DIR] &
#
# Resumable: the same command continues every run from its last checkpoint. RUNS_DIR belongs outside the checkout.
# Each pair runs plain then GSG, so an interrupted session leaves whole pairs for the paired difference.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 RUNS_DIR SEED [CACHE_DIR]" >&2
  exit 2
fi
runs=$1
seed=$2
cache=${3:-$runs/cache}
cd "$(dirname "$0")/.."
mkdir -p "$runs" "$cache"
labels=()
for pair in simsiam:SimSiam byol:BYOL; do
  method=${pair%%:*}
  name=${pair#*:}
  for variant in "$method:$name" "${method}_gsg:$name+GSG"; do
    config=${variant%%:*}
    workdir="$runs/${config}_e8_s$seed"
    python -m gsg_jax.main --config="configs/$config.py:cifar10_cpu" --workdir="$workdir" \
      --config.seed="$seed" --config.data.cache_dir="$cache"
    python -m gsg_jax.evaluate --workdir="$workdir" --protocols=knn,fast_linear,diagnostics
    labels+=("--label=${variant#*:}=$workdir")
  done
done
python benchmarks/collect_runs.py --study=cifar10_cpu --name="methods_seed$seed" \
  --title="The four methods with a predictor at the cifar10_cpu preset, 8 epochs, seed $seed" \
  --command="nice -n 19 bash benchmarks/cifar10_cpu_seeds.sh RUNS_DIR $seed" "${labels[@]}"
