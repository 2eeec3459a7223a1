#!/usr/bin/env bash
# Longer CIFAR-10 curves at CPU scale: SimSiam and SimSiam+GSG on the cifar10_cpu preset to 32 epochs and SimSiam to
# 64 (the equal-compute view), held-out kNN every 4 epochs, each finished with the fast linear probe and collected
# into results records; then each gets the standard (cifar) linear probe, and the records are collected again.
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
train() {  # method, epochs, workdir
  python -m gsg_jax.main --config="configs/$1.py:cifar10_cpu" --workdir="$3" \
    --config.num_epochs="$2" --config.eval_every_epochs=4 --config.data.cache_dir="$cache"
  python -m gsg_jax.evaluate --workdir="$3" --protocols=knn,fast_linear,diagnostics
}
collect() {
  python benchmarks/collect_runs.py --study=cifar10_cpu --name=long_e$epochs \
    --title="SimSiam and SimSiam+GSG to $epochs epochs, and SimSiam to $((2 * epochs)), seed 0" \
    --command="nice -n 19 bash benchmarks/cifar10_cpu_long.sh RUNS_DIR" \
    --label="SimSiam=$runs/simsiam_e$epochs" --label="SimSiam+GSG=$runs/simsiam_gsg_e$epochs" \
    --label="SimSiam, $((2 * epochs)) epochs=$runs/simsiam_e$((2 * epochs))"
}
for method in simsiam simsiam_gsg; do
  train $method $epochs "$runs/${method}_e$epochs"
done
# SimSiam at twice the epochs costs about what SimSiam+GSG costs at $epochs: a GSG step costs about two SimSiam steps
# per image (benchmarks/results/throughput/gsg_cost.json). Its curve is the equal-compute view.
train simsiam $((2 * epochs)) "$runs/simsiam_e$((2 * epochs))"
collect
# Last, the standard linear probe (``linear``: the cifar protocol, 100 epochs on augmented images through the frozen
# encoder), the slowest step: skipped for a run whose last evaluation already has it, so a resumed script goes on.
for run in simsiam_e$epochs simsiam_gsg_e$epochs simsiam_e$((2 * epochs)); do
  if ! python -c "import json, sys; sys.exit('linear_top1' not in json.load(open(sys.argv[1]))['metrics'])" \
    "$runs/$run/eval/latest.json"; then
    python -m gsg_jax.evaluate --workdir="$runs/$run" --protocols=linear
    collect
  fi
done
