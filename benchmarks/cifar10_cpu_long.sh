#!/usr/bin/env bash
# Longer CIFAR-10 curves at CPU scale: SimSiam and SimSiam+GSG on the cifar10_cpu preset to 32 epochs, held-out kNN
# every 4 epochs, each finished with the fast linear probe; then both collected into results records.
#
#   nice -n 19 bash benchmarks/cifar10_cpu_long.sh RUNS_DIR [CACHE_DIR] &
#
# Resumable: run the same command again and every run continues from its last checkpoint (a run directory is bound
# to its config, so a changed command is refused rather than mixed in). RUNS_DIR belongs outside the checkout.
# Times in the records are wall time on whatever else the machine was doing: read the curves against epochs, and
# compute against benchmarks/train_step.py's per-image cost ratio, not against these times.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 RUNS_DIR [CACHE_DIR]" >&2
  exit 2
fi
runs=$1
cache=${2:-$runs/cache}
cd "$(dirname "$0")/.."
mkdir -p "$runs" "$cache"
epochs=32
for method in simsiam simsiam_gsg; do
  workdir="$runs/${method}_e$epochs"
  python -m gsg_jax.main --config="configs/$method.py:cifar10_cpu" --workdir="$workdir" \
    --config.num_epochs=$epochs --config.eval_every_epochs=4 --config.data.cache_dir="$cache"
  python -m gsg_jax.evaluate --workdir="$workdir" --protocols=knn,fast_linear,diagnostics
done
python benchmarks/collect_runs.py --study=cifar10_cpu --name=long_e$epochs \
  --title="SimSiam and SimSiam+GSG to $epochs epochs, seed 0" \
  --command="nice -n 19 bash benchmarks/cifar10_cpu_long.sh RUNS_DIR" \
  --label="SimSiam=$runs/simsiam_e$epochs" --label="SimSiam+GSG=$runs/simsiam_gsg_e$epochs"
