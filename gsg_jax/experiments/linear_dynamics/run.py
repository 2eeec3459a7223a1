"""The command: every stage of ``figures.py`` into one folder, with results.json.

    python -m gsg_jax.experiments.linear_dynamics [--config=configs/linear_dynamics.py[:quick]] --out=DIR
        [--config.KEY=VALUE ...]

writes phase_portraits.png, collapse_threshold.png, matrix_dynamics.png, directpred.png and results.json (the
config and the numbers behind every figure) to DIR. Without ``--config`` the command runs
``configs/linear_dynamics.py``'s defaults; ``:quick`` shortens every stage. The command front is the shared one
(``gsg_jax.cli``): a misspelt key, an unknown preset or an unwritable ``--out`` is one line and exit status 1.
"""

import os
import time

from gsg_jax import storage
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.linear_dynamics import figures

STAGES = (
  ('phase_portraits', figures.phase_portraits),
  ('collapse_threshold', figures.collapse_threshold_figure),
  ('matrix_dynamics', figures.matrix_dynamics_figure),
  ('directpred', figures.directpred_figure),
)
CONFIG = 'linear_dynamics.py'  # In gsg_jax.config_lib.CONFIG_DIR: the checkout's configs/ or the wheel's copy.


def run(cfg, out):
  """All four stages; writes the figures and results.json to ``out`` and returns the results."""
  import matplotlib

  matplotlib.use('Agg')
  out = storage.resolve(out)
  storage.makedirs(out)
  results = {'config': cfg.to_dict()}
  for name, stage in STAGES:
    start = time.time()
    results[name] = stage(cfg, out)
    print(f'[{name}] done in {time.time() - start:.1f}s -> {storage.join(out, name + ".png")}', flush=True)
  storage.write_json(storage.join(out, 'results.json'), jsonable(results), indent=1)
  return results


def main():
  """The command line (module docstring)."""
  from absl import flags
  from ml_collections import config_flags

  from gsg_jax import cli, config_lib
  from gsg_jax.errors import ConfigError
  from gsg_jax.training.outputs import quiet_library_logs

  try:  # With a default, the file loads here and the command line's --config.KEY overrides apply to it at once.
    config = config_flags.DEFINE_config_file(
      'config',
      os.path.join(config_lib.CONFIG_DIR, CONFIG),
      f'configs/{CONFIG}[:quick] (default: configs/{CONFIG}); override keys with --config.KEY=VALUE.',
      lock_config=True,
    )
  except (AttributeError, KeyError) as e:  # A misspelt key: the user's mistake, as cli.define_config_dict says it.
    cli.fail(f'{cli.root_message(e)} (see --helpfull).')
  flags.DEFINE_string('out', None, 'Directory for the figures and results.json.')
  flags.mark_flag_as_required('out')

  def command(argv):
    if len(argv) > 1:
      raise ConfigError(f'unexpected arguments: {argv[1:]}')
    quiet_library_logs()  # Hides JAX's backend-probing INFO lines.
    cfg = cli.config_value(config)
    out = storage.ensure_writable_dir(flags.FLAGS.out, '--out')  # Before any simulation.
    start = time.time()
    run(cfg, out)
    print(f'all done in {time.time() - start:.1f}s', flush=True)

  cli.run(command)
