"""Command line: ``python -m gsg_jax.main --config=configs/byol_gsg.py[:preset] --workdir=DIR``.

Any config key can be overridden, e.g. ``--config.batch_size=256
--config.method.predictor=none``; a misspelt key or a value of the wrong type
stops at once with a message naming it, and ``config_lib.validate`` rejects
invalid values before any data is read.
"""

from absl import app, flags
from ml_collections import config_flags

from gsg_jax import cli
from gsg_jax.training import train_and_evaluate
from gsg_jax.training.outputs import quiet_library_logs


def _define_flags():
  """Defined when the command runs, as every command's flags are, so importing this module (a notebook, a test)
  leaves absl's global flags alone."""
  config = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/byol_gsg.py:quick.', lock_config=True
  )
  workdir = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics (resumes if it has them).')
  flags.mark_flags_as_required(['config', 'workdir'])
  return config, workdir


def run():
  """The ``gsg-train`` command."""
  config_flag, workdir_flag = _define_flags()

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    quiet_library_logs()
    train_and_evaluate(cli.config_value(config_flag), workdir_flag.value)

  cli.run(main)


if __name__ == '__main__':
  run()
