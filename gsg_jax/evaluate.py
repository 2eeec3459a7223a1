"""The ``gsg-evaluate`` command: evaluate a trained run's checkpoint (``gsg_jax.evaluation.run``).

    python -m gsg_jax.evaluate --workdir=RUN [--step=N] [--protocols=knn,fast_linear,diagnostics,...] \
        [--linear_protocol=cifar|imagenet|fast] [--memory_data=PATH --heldout_data=PATH]

``--protocols`` names evaluators (default: the run's ``config.eval.protocols``;
``gsg_jax.evaluation.evaluator`` lists them). A Markdown summary is printed;
user mistakes are one line and exit status 1.
"""

from absl import flags

from gsg_jax import cli, storage
from gsg_jax.evaluation.linear_probe import LINEAR_PROTOCOLS
from gsg_jax.evaluation.run import DEFAULT_LINEAR_PROTOCOL, evaluate_run, markdown_summary
from gsg_jax.training.outputs import quiet_library_logs


def main(argv):
  del argv
  quiet_library_logs()
  f = flags.FLAGS
  result = evaluate_run(
    f.workdir,
    f.step,
    tuple(f.protocols.split(',')) if f.protocols else None,
    linear_protocol=f.linear_protocol,
    linear_epochs=f.linear_epochs,
    linear_lr=f.linear_lr,
    linear_batch_size=f.linear_batch_size,
    fast_linear_epochs=f.fast_linear_epochs,
    memory_data=f.memory_data,
    heldout_data=f.heldout_data,
    memory_split=f.memory_split,
    heldout_split=f.heldout_split,
  )
  print(markdown_summary(result))
  print(f'\nWritten to {storage.join(result["eval_dir"], "step_%d.json" % result["step"])}')


def _define_flags():
  flags.DEFINE_string('workdir', None, 'Run directory (with config.json and checkpoints/).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string(
    'protocols', '', "Comma-separated evaluators (default: the run's config.eval.protocols), e.g. knn,fast_linear."
  )
  flags.DEFINE_string(
    'linear_protocol',
    DEFAULT_LINEAR_PROTOCOL,
    f'What the linear evaluator runs: one of {tuple(LINEAR_PROTOCOLS)} '
    '(gsg_jax.evaluation.linear_probe.LINEAR_PROTOCOLS).',
  )
  flags.DEFINE_integer('linear_epochs', None, "Override the linear protocol's epochs.")
  flags.DEFINE_float('linear_lr', None, "Override the linear protocol's base lr (× batch/256; the fast probe's lr).")
  flags.DEFINE_integer('linear_batch_size', None, "Override the linear protocol's batch size.")
  flags.DEFINE_integer('fast_linear_epochs', None, "Override the fast linear probe's epochs (default 100).")
  flags.DEFINE_string(
    'memory_data',
    None,
    'Other labelled data as kNN bank / probe training set: a folder or zip '
    'of <class>/<image> or <split>/<class>/<image>, or tfds:NAME:SPLIT (with --heldout_data).',
  )
  flags.DEFINE_string('heldout_data', None, 'Other labelled held-out data, as --memory_data.')
  flags.DEFINE_string('memory_split', '', "Split folder of --memory_data (default 'train' when there is one).")
  flags.DEFINE_string(
    'heldout_split',
    '',
    'Split folder of --heldout_data (default the first of test, val, validation when there is one).',
  )
  flags.mark_flag_as_required('workdir')


def run():
  """The command line: ``python -m gsg_jax.evaluate``."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
