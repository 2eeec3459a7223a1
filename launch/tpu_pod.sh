#!/usr/bin/env bash
# Train on every worker of a Cloud TPU pod slice (one process per TPU VM host).
#
#   launch/tpu_pod.sh [--dry-run] CONFIG WORKDIR [TPU_NAME ZONE] [-- extra flags]
#
# CONFIG is configs/X.py[:preset]; WORKDIR a gs:// path (or a local path writable
# on every worker). TPU_NAME and ZONE default to $TPU_NAME and $ZONE. The config
# is loaded and validated here before any TPU time is spent; on the pod,
# distributed.mode=auto detects the workers (TPU_WORKER_HOSTNAMES).
set -euo pipefail

usage() {
  echo "usage: $0 [--dry-run] CONFIG[:preset] WORKDIR [TPU_NAME ZONE] [-- extra flags]" >&2
  exit 2
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
parse_launch_args "$@"
[[ ${#POSITIONAL[@]} -eq 2 || ${#POSITIONAL[@]} -eq 4 ]] || usage
CONFIG=${POSITIONAL[0]}
WORKDIR=${POSITIONAL[1]}
TPU=${POSITIONAL[2]:-${TPU_NAME:-}}
ZONE=${POSITIONAL[3]:-${ZONE:-}}
[[ -n "$TPU" && -n "$ZONE" ]] || { echo "error: TPU_NAME and ZONE are required (arguments or environment)." >&2; exit 2; }

validate_config "$CONFIG" "${EXTRA[@]+"${EXTRA[@]}"}"
validate_workdir "$WORKDIR"

REMOTE="cd ~/gsg_jax && python -m gsg_jax.main --config=$(quote "$CONFIG") --workdir=$(quote "$WORKDIR") --config.distributed.mode=auto"
for flag in "${EXTRA[@]+"${EXTRA[@]}"}"; do REMOTE+=" $(quote "$flag")"; done
CMD=(gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$REMOTE")

if [[ $DRY_RUN -eq 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
command -v gcloud >/dev/null || { echo "error: gcloud not found on PATH." >&2; exit 1; }
exec "${CMD[@]}"
