"""Weighted k-nearest-neighbour classification on frozen features, with a streamed memory bank.

The InstDisc / SimSiam-monitor convention (Wu et al. 2018): features are
ℓ2-normalised; for a query q its k most cosine-similar memory features
f_1..f_k (labels y_j) vote with weights w_j = exp(cos(q, f_j) / T):

    score_c(q) = Σ_{j ≤ k} w_j · [y_j = c],     ŷ(q) = argmax_c score_c(q).

Top-5 accuracy counts a query as correct when its label is among the five
best-scoring classes.

Memory does not grow with the bank: ``KNNBank`` holds the (normalised)
queries and, per query, the running top-k (similarity, label) on the device;
each chunk of memory features is merged into it by ``knn_topk_merge`` and
can then be dropped, so a whole ImageNet training split can be the bank
while only ``queries × k`` entries and one ``query block × chunk`` similarity
matrix exist at a time. Every (k, T) of interest is read from one pass, for
k up to the bank's k.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.evaluation.evaluator import Column, Evaluator, register_evaluator
from gsg_jax.evaluation.features import pad_rows
from gsg_jax.methods.similarity import l2_normalize

_HIGHEST = jax.lax.Precision.HIGHEST  # Full float32 matmuls (no TF32 on GPUs), so rankings match NumPy.


def knn_topk_merge(best_similarity, best_labels, queries, memory, memory_labels):
  """The running top-k of every query after one more memory chunk (pure; k = ``best_similarity.shape[1]``).

  Args: ``best_similarity`` [Q, k] (descending; −∞ where empty) and
  ``best_labels`` [Q, k] int32 (−1 where empty); ``queries`` [Q, D] and
  ``memory`` [C, D], both ℓ2-normalised; ``memory_labels`` [C] int32, −1
  marking padding rows, which are never chosen.

  Returns the k largest cosine similarities of the union of the old top-k and
  the chunk, descending, with their labels. Ties keep the earlier entry
  (``lax.top_k`` is stable and the old top-k comes first), so merging chunks
  in order equals one top-k over the concatenated bank.
  """
  k = best_similarity.shape[1]
  similarity = jnp.matmul(queries, memory.T, precision=_HIGHEST)
  similarity = jnp.where(memory_labels[None, :] >= 0, similarity, -jnp.inf)
  candidates = jnp.concatenate([best_similarity, similarity], axis=1)
  candidate_labels = jnp.concatenate([best_labels, jnp.broadcast_to(memory_labels, similarity.shape)], axis=1)
  top, index = jax.lax.top_k(candidates, k)
  return top, jnp.take_along_axis(candidate_labels, index, axis=1)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _merge_blocks(best_similarity, best_labels, query_blocks, memory, memory_labels):
  """``knn_topk_merge`` over query blocks [B, q, ·] one block at a time (bounds the similarity matrix)."""
  memory = l2_normalize(memory.astype(jnp.float32))
  merge = lambda block: knn_topk_merge(*block, memory, memory_labels)
  return jax.lax.map(merge, (best_similarity, best_labels, query_blocks))


@functools.partial(jax.jit, static_argnames='num_classes')
def _vote_hits(similarity, labels, query_labels, k, temperature, *, num_classes: int):
  """Top-1 and top-5 hits, int32 [2], of the weighted vote of each query's first k neighbours.

  ``k`` and ``temperature`` are traced (one compilation serves every setting).
  Rows whose query label is −1 (padding) count as misses; empty neighbour
  slots (label −1) have no vote.
  """
  first_k = jnp.arange(similarity.shape[1]) < k
  weights = jnp.where(first_k & (labels >= 0), jnp.exp(similarity / temperature), 0.0)
  rows = jnp.arange(similarity.shape[0])[:, None]
  scores = jnp.zeros((similarity.shape[0], num_classes)).at[rows, jnp.maximum(labels, 0)].add(weights)
  _, best = jax.lax.top_k(scores, min(5, num_classes))
  valid = query_labels >= 0
  top1 = (best[:, 0] == query_labels) & valid
  top5 = jnp.any(best == query_labels[:, None], axis=1) & valid
  return jnp.stack([top1.sum(), top5.sum()])


@functools.partial(jax.jit, static_argnames='k')
def _empty_bank(query_blocks, *, k: int):
  """(normalised query blocks [B, q, D], similarities −∞ [B, q, k], labels −1 [B, q, k])."""
  shape = query_blocks.shape[:2] + (k,)
  return (l2_normalize(query_blocks), jnp.full(shape, -jnp.inf, jnp.float32), jnp.full(shape, -1, jnp.int32))


class KNNBank:
  """The k nearest memory features of fixed queries, over a memory bank added chunk by chunk.

  ``add(features, labels)`` merges a chunk (any size; chunks are padded to the
  first chunk's size, so one compiled merge serves all); ``accuracy`` votes.
  Queries are processed in blocks of ``query_block`` rows.
  """

  def __init__(self, queries, k: int, query_block: int = 1024):
    queries = np.asarray(queries, np.float32)
    self.num_queries, self.k, self.size = len(queries), int(k), 0
    block = max(min(query_block, self.num_queries), 1)
    num_blocks = -(-self.num_queries // block)
    padded = pad_rows(queries, num_blocks * block).reshape(num_blocks, block, -1)
    self._queries, self._similarity, self._labels = _empty_bank(padded, k=self.k)
    self._chunk = None

  def add(self, features, labels) -> None:
    """Merge memory ``features`` [C, D] (unnormalised) with int ``labels`` [C] into every query's top-k."""
    features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int32)
    self._chunk = self._chunk or max(len(features), 1)
    for start in range(0, len(features), self._chunk):
      rows = features[start : start + self._chunk]
      self._similarity, self._labels = _merge_blocks(
        self._similarity,
        self._labels,
        self._queries,
        jnp.asarray(pad_rows(rows, self._chunk)),
        jnp.asarray(pad_rows(labels[start : start + self._chunk], self._chunk, -1)),
      )
      self.size += len(rows)

  def neighbours(self):
    """(similarity, label) of each query's top-k so far, NumPy [Q, k] each, descending (−∞ / −1 where empty)."""
    flat = lambda x: np.asarray(x).reshape(-1, self.k)[: self.num_queries]
    return flat(self._similarity), flat(self._labels)

  def accuracy(self, query_labels, num_classes: int, k: int, temperature: float) -> tuple[float, float]:
    """(top-1, top-5) accuracy, percent, of the first ``k`` (≤ the bank's) neighbours' vote at ``temperature``."""
    if not 0 < k <= self.k:
      raise ValueError(f'k={k} must be in [1, {self.k}] (the bank keeps {self.k} neighbours).')
    query_labels = np.asarray(query_labels, np.int32)
    padded = jnp.asarray(pad_rows(query_labels, self._similarity.shape[0] * self._similarity.shape[1], -1))
    hits = _vote_hits(
      self._similarity.reshape(-1, self.k),
      self._labels.reshape(-1, self.k),
      padded,
      jnp.int32(k),
      jnp.float32(temperature),
      num_classes=int(num_classes),
    )
    top1, top5 = np.asarray(hits) * 100.0 / max(self.num_queries, 1)
    return float(top1), float(top5)


def knn_key(top: int, k: int, temperature: float | None = None) -> str:
  """``knn_top1@200`` (the configured temperature), or ``knn_top1@200_t0.1`` (the named one)."""
  return f'knn_top{top}@{k}' + ('' if temperature is None else f'_t{temperature:g}')


def bank_metrics(bank: KNNBank, query_labels, num_classes: int, ks, temperature: float, extra_temperatures=()) -> dict:
  """``{knn_top1@k, knn_top5@k}`` at ``temperature`` and ``{knn_top1@k_t<T>, ...}`` at each extra T, for k in ``ks``.

  A k larger than the bank is clipped to its size (the key keeps the requested k).
  """
  result = {}
  for k in ks:
    for t, named in [(temperature, None)] + [(t, t) for t in extra_temperatures]:
      top1, top5 = bank.accuracy(query_labels, num_classes, min(int(k), bank.k), t)
      result[knn_key(1, k, named)], result[knn_key(5, k, named)] = top1, top5
  return result


def weighted_knn(
  train_features,
  train_labels,
  query_features,
  query_labels,
  num_classes: int,
  ks=(20, 200),
  temperature: float = 0.1,
  chunk_size: int = 1024,
  memory_chunk_size: int = 65536,
) -> dict:
  """Top-1 and top-5 accuracy (percent, 0–100) of weighted kNN for each k in ``ks``, features held whole.

  Args: train (memory) features [N, D] and int labels [N]; query features
  [M, D] and labels [M]; ``chunk_size`` queries and ``memory_chunk_size``
  memory rows are compared at a time (a ``KNNBank`` fed in chunks).

  Returns ``{'knn_top1@k': ..., 'knn_top5@k': ...}`` as Python floats; k
  larger than the memory bank is clipped to its size (the key keeps the
  requested k).
  """
  ks = tuple(int(k) for k in ks)
  memory, labels = np.asarray(train_features, np.float32), np.asarray(train_labels, np.int32)
  bank = KNNBank(query_features, min(max(ks), max(len(memory), 1)), query_block=chunk_size)
  for start in range(0, len(memory), memory_chunk_size):
    bank.add(memory[start : start + memory_chunk_size], labels[start : start + memory_chunk_size])
  return bank_metrics(bank, query_labels, num_classes, ks, temperature)


# ---------------------------------------------------------------- the evaluator

REPORTED_KS = (20, 200)
REFERENCE_TEMPERATURE = 0.1  # InstDisc / SimSiam-monitor T, reported beside the configured one.


def knn_settings(eval_config) -> dict:
  """The kNN settings of ``config.eval``: configured k and T, the other k and T reported beside them."""
  k, temperature = int(eval_config.knn_k), float(eval_config.knn_temperature)
  return {
    'k': k,
    'temperature': temperature,
    'ks': sorted({k, *REPORTED_KS}),
    'extra_temperatures': [REFERENCE_TEMPERATURE] if temperature != REFERENCE_TEMPERATURE else [],
  }


class KNN(Evaluator):
  """Weighted kNN of the held-out features against the memory split's, merged chunk by chunk (``KNNBank``).

  Keys: ``knn_top1`` / ``knn_top5`` at the configured k and T
  (``config.eval.knn_k``, ``knn_temperature``); ``knn_top1@k`` for k in
  ``knn_settings``' ks at the configured T; ``knn_top1@k_t0.1`` at T = 0.1;
  ``knn_memory_examples``, the bank's size. Percent.
  """

  name = 'knn'
  columns = (Column('knn_top1', 'kNN top-1 (%)', floor='knn_top1'),)

  def settings(self, ctx) -> dict:
    return knn_settings(ctx.config.eval)

  def memory_sink(self, ctx):
    ks = self.settings(ctx)['ks']
    return KNNBank(ctx.heldout_outputs['features'], min(max(ks), max(ctx.memory.num_examples, 1)))

  def evaluate(self, ctx, bank) -> dict:
    s = self.settings(ctx)
    labels = ctx.heldout_outputs['labels']
    metrics = bank_metrics(bank, labels, ctx.num_classes, s['ks'], s['temperature'], s['extra_temperatures'])
    metrics['knn_top1'], metrics['knn_top5'] = metrics[knn_key(1, s['k'])], metrics[knn_key(5, s['k'])]
    metrics['knn_memory_examples'] = bank.size
    return metrics


register_evaluator(KNN())
