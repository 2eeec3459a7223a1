"""The training monitor: kNN and online-probe accuracy on the held-out split, beside their floors.

``gsg_jax.train.make_monitor`` builds it; ``train_and_evaluate`` calls it at
step 0 and every ``eval_every_epochs`` epochs and logs ``message``.
"""

import jax
import numpy as np

from gsg_jax import parallel
from gsg_jax.evaluation import floors as floors_lib
from gsg_jax.evaluation import labelled
from gsg_jax.evaluation.features import extract_features
from gsg_jax.evaluation.knn import KNNBank
from gsg_jax.evaluation.linear_probe import resolve_protocol
from gsg_jax.evaluation.protocols import encode_chunks, frozen_metrics, knn_settings


class Monitor:
  """``monitor(state) -> metrics`` on the held-out split, run during training; ``monitor.message(step, metrics)``.

  Weighted kNN (``config.eval.knn_k``, ``knn_temperature``) of held-out
  backbone features against the memory split, merged into the neighbours
  chunk by chunk (``KNNBank``; ``knn_memory_examples`` is the bank's size:
  the data layer's memory split, the first ``data.eval_max_examples`` images
  of a streamed training split) and, when the online probe is on, the
  probe's held-out top-1 accuracy.

  With ``config.eval.floors``, the first call also takes the floors
  (``gsg_jax.evaluation.floors``: raw pixels and the random-init encoder,
  kNN and fast linear probe, cached beside ``workdir``) and every result
  carries them as ``floors/<raw_pixels|random_init>/<knn_top1|fast_linear_top1>``.
  A step-0 state is the random-init encoder: its kNN is read from that
  floor's pass, not computed twice.
  """

  def __init__(self, trainer, dataset, config, mesh, workdir: str | None = None):
    self.trainer, self.dataset, self.config, self.workdir = trainer, dataset, config, workdir
    self.replicated, self.batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    self.encode = jax.jit(
      trainer.encode, in_shardings=(self.replicated, self.batch_sharding), out_shardings=self.batch_sharding
    )
    self.probe_logits = jax.jit(trainer.probe_logits) if trainer.probe is not None else None
    self.memory = labelled.run_memory(dataset, config, stream=False)
    self.heldout = labelled.run_heldout(dataset, config)
    # An unlabelled training folder has num_classes 0; its data.eval_path splits carry their own labels.
    self.num_classes = dataset.num_classes or int(dataset.memory.labels.max()) + 1
    self.knn, self.fast = knn_settings(config.eval), resolve_protocol('fast')
    streamed = config.data.source == 'tfds' and len(dataset.memory) < dataset.train.num_examples
    self.split_examples = dataset.train.num_examples if streamed else len(dataset.memory)
    self.floors = {}

  def _encoder(self, state):
    batch_size, sharding = self.config.eval.batch_size, self.batch_sharding
    return lambda images: extract_features(self.encode, state, images, batch_size, sharding)

  def _frozen(self, encode_fn) -> dict:
    batch_size = self.config.eval.batch_size
    queries = np.concatenate([f for f, _ in encode_chunks(encode_fn, self.heldout, batch_size)])
    return frozen_metrics(
      encode_fn,
      self.memory,
      queries,
      self.dataset.heldout.labels,
      self.num_classes,
      knn=self.knn,
      fast_linear=self.fast,
      batch_size=batch_size,
      max_linear_gb=float(self.config.eval.get('fast_linear_max_gb', 16.0)),
    )

  def _take_floors(self, state) -> None:
    config = self.config
    keys = {
      kind: floors_lib.floor_key(kind, config, self.memory, self.heldout, self.knn, self.fast)
      for kind in floors_lib.KINDS
    }
    raw = floors_lib.raw_pixel_encoder(config.augment)

    def random_init():
      init = (
        state
        if int(state.step) == 0
        else jax.device_put(
          floors_lib.random_init_state(self.trainer, config, self.dataset.train.image_shape), self.replicated
        )
      )
      return self._frozen(self._encoder(init))

    compute = {'raw_pixels': lambda: self._frozen(lambda images: raw(images)), 'random_init': random_init}
    self.floors.update(floors_lib.get_or_compute(floors_lib.cache_dir(config, self.workdir or '.'), keys, compute))

  def __call__(self, state) -> dict:
    config, dataset, k = self.config, self.dataset, self.config.eval.knn_k
    if config.eval.floors and not self.floors:
      self._take_floors(state)
    queries = self._encoder(state)(dataset.heldout.images)
    if self.floors and int(state.step) == 0:  # The random-init floor is this state's kNN.
      init = self.floors['random_init']
      metrics = {
        key: init[key] for key in ('knn_top1', 'knn_top5', f'knn_top1@{k}', f'knn_top5@{k}', 'knn_memory_examples')
      }
    else:
      # The floors' bank size, so that one compiled merge serves both; the vote reads the first k.
      bank = KNNBank(queries, min(max(self.knn['ks']), len(dataset.memory)))
      for features, labels in encode_chunks(self._encoder(state), self.memory, config.eval.batch_size):
        bank.add(features, labels)
      top1, top5 = bank.accuracy(dataset.heldout.labels, self.num_classes, min(k, bank.k), config.eval.knn_temperature)
      metrics = {
        'knn_top1': top1,
        'knn_top5': top5,
        f'knn_top1@{k}': top1,
        f'knn_top5@{k}': top5,
        'knn_memory_examples': bank.size,
      }
    if self.probe_logits is not None:
      predicted = np.argmax(np.asarray(self.probe_logits(state.params, queries)), axis=-1)
      metrics['online_probe_top1'] = 100.0 * float(np.mean(predicted == dataset.heldout.labels))
    for kind, values in self.floors.items():
      for key in ('knn_top1', 'fast_linear_top1'):
        metrics[f'floors/{kind}/{key}'] = values[key]
    return metrics

  def message(self, step: int, metrics: dict) -> str:
    """The log line: kNN top-1 (and online probe top-1) with their floors beside them.

    At step 0 the kNN figure is the random-init floor itself, so only the raw-pixel floor stands beside it.
    """

    def beside(key, label):
      kinds = (
        (('raw_pixels', 'raw pixels'),)
        if step == 0 and key == 'knn_top1'
        else (('raw_pixels', 'raw pixels'), ('random_init', 'random init'))
      )
      values = [
        f'{name} {metrics[f"floors/{kind}/{key}"]:.2f}%' for kind, name in kinds if f'floors/{kind}/{key}' in metrics
      ]
      return f' ({label}: {", ".join(values)})' if values else ''

    bank = metrics.get('knn_memory_examples', self.split_examples)
    named = '' if bank >= self.split_examples else f' (bank: {bank} of {self.split_examples} training images)'
    probe = metrics.get('online_probe_top1')
    return (
      f'step {step}{" (random init)" if step == 0 else ""}: kNN top-1{named} {metrics["knn_top1"]:.2f}%'
      + beside('knn_top1', 'floors')
      + (
        '' if probe is None else f', online probe top-1 {probe:.2f}%' + beside('fast_linear_top1', 'fast-probe floors')
      )
    )
