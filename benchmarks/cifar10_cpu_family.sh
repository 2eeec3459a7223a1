#!/usr/bin/env bash
# The family on real images: one 8-epoch run each at the cifar10_cpu preset, seed 0, beside the four methods of
# methods_seed0.json. Predictors under BYOL (linear, DirectPred, DirectCopy, and DirectPred with GSG), then the four
# contrastive losses; each finished with the fast linear probe, then all collected into
# benchmarks/results/cifar10_cpu/family_seed0_{table,curves,compute_curves}.json.
#
#   nice -n 19 bash benchmarks/cifar10_cpu_family.sh RUNS_DIR [CACHE_DIR] &
#
# Resumable: the same command continues every run from its last checkpoint. RUNS_DIR belongs outside the checkout.
# Every row has the cifar10_cpu footing (the quick ConvNet at 24×24, batch 256, SGD, cosine, 8 epochs), not each
# paper's recipe; the contrastive losses take their recipe's base lr 1.0 (config_lib.contrastive_recipe).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 RUNS_DIR [CACHE_DIR]" >&2
  exit 2
fi
runs=$1
cache=${2:-$runs/cache}
cd "$(dirname "$0")/.."
mkdir -p "$runs" "$cache"
# label|run name|config|extra flags
family=(
  "BYOL, linear predictor|byol_linear|byol|--config.method.predictor=linear"
  "BYOL+DirectPred|byol_directpred|byol_directpred|"
  "BYOL+DirectCopy|byol_directcopy|byol_directpred|--config.method.predictor=directcopy"
  "InfoNCE|simclr|simclr|"
  "DCL|dcl|dcl|"
  "DHEL|dhel|dhel|"
  "KCL|kcl|kcl|"
  "BYOL+GSG+DirectPred|byol_gsg_directpred|byol_gsg|--config.method.predictor=directpred"
)
labels=()
for entry in "${family[@]}"; do
  IFS='|' read -r label name config extra <<< "$entry"
  workdir="$runs/${name}_e8"
  # A run that fails (a diverged loss stops with exit 1) is reported and left out; the others go on.
  # shellcheck disable=SC2086  # $extra is zero or one flag.
  if python -m gsg_jax.main --config="configs/$config.py:cifar10_cpu" --workdir="$workdir" \
    --config.data.cache_dir="$cache" $extra; then
    python -m gsg_jax.evaluate --workdir="$workdir" --protocols=knn,fast_linear,diagnostics
    labels+=("--label=$label=$workdir")
  else
    echo "$label: training failed (above); left out of the record" >&2
  fi
done
python benchmarks/collect_runs.py --study=cifar10_cpu --name=family_seed0 \
  --title="The family at the cifar10_cpu preset, 8 epochs, seed 0" \
  --command="nice -n 19 bash benchmarks/cifar10_cpu_family.sh RUNS_DIR" --bars "${labels[@]}"
