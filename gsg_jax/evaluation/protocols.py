"""kNN and the fast linear probe of a frozen encoder, with the memory split streamed once.

``frozen_metrics(encode_fn, memory, heldout_features, heldout_labels, ...)``
reads the memory split (a ``LabelledImages``) chunk by chunk, encodes each
chunk, merges it into a ``KNNBank`` of the held-out queries and, for the fast
linear probe, keeps its features on the host. The same function evaluates a
trained encoder, raw pixels and a random-init encoder (``floors``), so every
figure and its floors come from one code path.

kNN settings (``knn_settings``): the configured k and T (``config.eval``),
k = 20 and 200 beside them, and T = 0.1 beside the configured T. Keys:
``knn_top1`` / ``knn_top5`` at the configured k and T; ``knn_top1@k`` at
the configured T; ``knn_top1@k_t0.1`` at T = 0.1 (see ``knn.knn_key``).

The fast probe holds N·D·4 bytes of training features; beyond
``max_linear_gb`` it trains on a uniform random subset of the memory split
(seed 0) and ``fast_linear_train_examples`` says how many it used.
"""

import numpy as np

from gsg_jax.evaluation.knn import KNNBank, bank_metrics
from gsg_jax.evaluation.linear_probe import fast_linear_probe

REPORTED_KS = (20, 200)
REFERENCE_TEMPERATURE = 0.1  # InstDisc / SimSiam-monitor T, reported beside the configured one.


def knn_settings(eval_config) -> dict:
  """The kNN settings of ``config.eval``: configured k and T, the other k and T reported beside them."""
  k = int(eval_config.knn_k)
  temperature = float(eval_config.get('knn_temperature', REFERENCE_TEMPERATURE))
  return {
    'k': k,
    'temperature': temperature,
    'ks': sorted({k, *REPORTED_KS}),
    'extra_temperatures': [REFERENCE_TEMPERATURE] if temperature != REFERENCE_TEMPERATURE else [],
  }


def encode_chunks(encode_fn, data, batch_size: int):
  """(features float32 [n, D], labels [n]) per chunk of ``data``: ``encode_fn`` on fixed-size, zero-padded batches."""
  for images, labels in data.chunks(batch_size):
    valid = len(images)
    if valid < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - valid,) + images.shape[1:], images.dtype)])
    yield np.asarray(encode_fn(images), np.float32)[:valid], np.asarray(labels, np.int32)


def _linear_rows(num_examples: int, dim: int, max_gb: float):
  """The memory rows the fast probe keeps: None (all) or a sorted uniform random subset within ``max_gb``."""
  keep = int(max_gb * 1e9 // (4 * max(dim, 1)))
  if keep >= num_examples:
    return None
  return np.sort(np.random.default_rng(0).choice(num_examples, max(keep, 1), replace=False))


def frozen_metrics(
  encode_fn,
  memory,
  heldout_features,
  heldout_labels,
  num_classes: int,
  *,
  knn: dict | None,
  fast_linear: dict | None,
  batch_size: int,
  max_linear_gb: float = 16.0,
) -> dict:
  """kNN (``knn``: ``knn_settings``) and fast-linear (``fast_linear``: a resolved 'fast' protocol) metrics.

  ``encode_fn(uint8 images [batch_size, H, W, 3]) -> features``; the memory
  split is encoded once, chunk by chunk. Accuracies in percent.
  """
  bank = None
  if knn is not None:
    bank = KNNBank(heldout_features, min(max(knn['ks']), max(memory.num_examples, 1)))
  kept, kept_labels, rows, start = [], [], None, 0
  for features, labels in encode_chunks(encode_fn, memory, batch_size):
    if bank is not None:
      bank.add(features, labels)
    if fast_linear is not None:
      if start == 0:
        rows = _linear_rows(memory.num_examples, features.shape[1], max_linear_gb)
      index = slice(None) if rows is None else rows[(rows >= start) & (rows < start + len(labels))] - start
      kept.append(features[index])
      kept_labels.append(labels[index])
    start += len(labels)
  metrics = {}
  if bank is not None:
    metrics.update(
      bank_metrics(bank, heldout_labels, num_classes, knn['ks'], knn['temperature'], knn['extra_temperatures'])
    )
    metrics['knn_top1'] = metrics[f'knn_top1@{knn["k"]}']
    metrics['knn_top5'] = metrics[f'knn_top5@{knn["k"]}']
    metrics['knn_memory_examples'] = bank.size
  if fast_linear is not None:
    train, train_labels = np.concatenate(kept), np.concatenate(kept_labels)
    r = fast_linear_probe(
      train,
      train_labels,
      heldout_features,
      heldout_labels,
      num_classes,
      epochs=fast_linear['epochs'],
      batch_size=fast_linear['batch_size'],
      lr=fast_linear['lr'],
      weight_decay=fast_linear['weight_decay'],
    )
    metrics['fast_linear_top1'], metrics['fast_linear_top5'] = r['top1'], r['top5']
    metrics['fast_linear_train_examples'] = len(train_labels)
  return metrics
