#!/usr/bin/env bash
# One process over all GPUs of this machine (data-parallel over the local devices).
#
#   launch/single_host_gpus.sh [--dry-run] CONFIG[:preset] WORKDIR [-- extra flags]
#
# Restrict the GPUs with CUDA_VISIBLE_DEVICES. distributed.mode=off: no cluster
# detection, a single process.
set -euo pipefail

usage() {
  echo "usage: $0 [--dry-run] CONFIG[:preset] WORKDIR [-- extra flags]" >&2
  exit 2
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
parse_launch_args "$@"
[[ ${#POSITIONAL[@]} -eq 2 ]] || usage
CONFIG=${POSITIONAL[0]}
WORKDIR=${POSITIONAL[1]}

validate_config "$CONFIG" "${EXTRA[@]+"${EXTRA[@]}"}"
validate_workdir "$WORKDIR"

CMD=("$PYTHON" -m gsg_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" --config.distributed.mode=off
     "${EXTRA[@]+"${EXTRA[@]}"}")

if [[ $DRY_RUN -eq 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
cd "$LAUNCH_REPO"
exec "${CMD[@]}"
