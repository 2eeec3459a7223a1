# Shared checks for the launch scripts (sourced, not run). Each fails with
# "error: ..." and exit status 1 before any accelerator time is spent.

LAUNCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}

quote() { printf '%q' "$1"; }

# parse_launch_args "$@": sets DRY_RUN (0/1), POSITIONAL (the arguments before --) and EXTRA (those after
# --, passed on to gsg_jax.main). Calls the script's usage() on -h/--help.
parse_launch_args() {
  DRY_RUN=0
  POSITIONAL=()
  EXTRA=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage ;;
      --) shift; EXTRA=("$@"); break ;;
      *) POSITIONAL+=("$1"); shift ;;
    esac
  done
}

# validate_config CONFIG[:preset] [--config.key=value ...]: the file exists, get_config(preset) loads,
# the overrides name real keys with values of the right type, and config_lib.validate accepts the result.
validate_config() {
  local spec=$1; shift
  local file=${spec%%:*}
  if [[ ! -f "$file" ]]; then
    echo "error: config file not found: $file" >&2
    exit 1
  fi
  (cd "$LAUNCH_REPO" && "$PYTHON" - "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" "$spec" "$@" <<'PY'
import importlib.util, sys
path, spec, *args = sys.argv[1:]
preset = spec.split(':', 1)[1] if ':' in spec else None
try:
  sys.path.insert(0, '.')
  from gsg_jax import config_lib
  module_spec = importlib.util.spec_from_file_location('launch_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(preset) if preset is not None else module.get_config()
  from ml_collections import config_flags
  from absl import flags
  fv = flags.FlagValues()
  config_flags.DEFINE_config_dict('config', config, flag_values=fv, lock_config=True)
  overrides = [f for f in args if f.startswith('--config.')]
  fv(['launch'] + overrides)
  config_lib.validate(fv.config)
except Exception as e:  # Any failure to load is a launch error, reported in one line.
  print(f'error: config {spec}: {type(e).__name__}: {e}', file=sys.stderr)
  sys.exit(1)
print(f'config {spec}: ok', file=sys.stderr)
PY
  ) || exit 1
}

# validate_workdir DIR: a gs:// URL (checked by the run itself, on the machine that has the credentials),
# or a directory that exists and is writable, or one that can be created under a writable parent.
validate_workdir() {
  local dir=$1
  if [[ "$dir" == gs://* ]]; then return 0; fi
  local probe=$dir
  while [[ ! -e "$probe" ]]; do probe=$(dirname "$probe"); done
  if [[ ! -d "$probe" || ! -w "$probe" ]]; then
    echo "error: workdir $dir is not writable (checked $probe)." >&2
    exit 1
  fi
}
