"""The training monitor: the evaluators ``config.eval.monitor`` names, on the held-out split, during training.

``train_and_evaluate`` calls ``monitor(state)`` at step 0 and every
``eval_every_epochs`` epochs and logs ``monitor.message(step, metrics)``.
By default: weighted kNN (``config.eval.knn_k``, ``knn_temperature``) against
the data layer's memory split (for a streamed TFDS training split, its first
``data.eval_max_examples`` images; ``knn_memory_examples`` is the bank's
size), the online probe's held-out top-1, and the floors (raw pixels and the
random-init encoder, cached beside the workdir) as ``floors/<kind>/<metric>``.
"""

from gsg_jax.evaluation import labelled
from gsg_jax.evaluation.context import network_context
from gsg_jax.evaluation.evaluator import columns, get_evaluators, run_evaluators


class Monitor:
  """``monitor(state) -> metrics`` on the held-out split; ``monitor.message(step, metrics)``, the log line."""

  def __init__(self, trainer, dataset, config, mesh, workdir: str | None = None):
    self.evaluators = get_evaluators(config.eval.monitor, 'config.eval.monitor')
    memory = labelled.run_memory(dataset, config, stream=False)
    # An unlabelled training folder has num_classes 0; its data.eval_path splits carry their own labels.
    num_classes = dataset.num_classes or int(dataset.memory.labels.max()) + 1
    self.network = network_context(
      config,
      workdir or '.',
      dataset.train.image_shape,
      memory,
      labelled.run_heldout(dataset, config),
      num_classes,
      trainer,
      mesh=mesh,
    )
    streamed = config.data.source == 'tfds' and len(dataset.memory) < dataset.train.num_examples
    self.split_examples = dataset.train.num_examples if streamed else len(dataset.memory)

  def __call__(self, state) -> dict:
    return run_evaluators(self.evaluators, self.network.at_state(state))[0]

  def message(self, step: int, metrics: dict) -> str:
    """The log line: each evaluator's headline figures, with their floors beside them.

    At step 0 the kNN figure is the random-init floor itself, so only the raw-pixel floor stands beside it.
    """
    parts = []
    for column in columns([e.name for e in self.evaluators]):
      value = metrics.get(column.key)
      if not isinstance(value, (int, float)) or isinstance(value, bool):
        continue
      name = column.header.replace(' (%)', '')
      if column.key == 'knn_top1':
        bank = metrics.get('knn_memory_examples', self.split_examples)
        name += '' if bank >= self.split_examples else f' (bank: {bank} of {self.split_examples} training images)'
      kinds = (('raw_pixels', 'raw pixels'), ('random_init', 'random init'))
      if step == 0 and column.key == 'knn_top1':
        kinds = kinds[:1]
      floors = [
        f'{label} {metrics[f"floors/{kind}/{column.floor}"]:.2f}%'
        for kind, label in kinds
        if column.floor and f'floors/{kind}/{column.floor}' in metrics
      ]
      label = 'floors' if column.floor == column.key else f'{column.floor} floors'
      percent = '%' if '(%)' in column.header else ''
      parts.append(f'{name} {value:{column.format}}{percent}' + (f' ({label}: {", ".join(floors)})' if floors else ''))
    return f'step {step}{" (random init)" if step == 0 else ""}: ' + ', '.join(parts)
