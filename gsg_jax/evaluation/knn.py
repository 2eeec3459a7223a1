"""Weighted k-nearest-neighbour classification on frozen features.

The InstDisc / SimSiam-monitor convention (Wu et al. 2018): features are
ℓ2-normalised; for a query q its k most cosine-similar memory features
f_1..f_k (labels y_j) vote with weights w_j = exp(cos(q, f_j) / T):

    score_c(q) = Σ_{j ≤ k} w_j · [y_j = c],     ŷ(q) = argmax_c score_c(q).

Top-5 accuracy counts a query as correct when its label is among the five
best-scoring classes. Memory stays bounded for large banks: queries are
processed one jitted chunk at a time (the last chunk padded and masked), and
within a chunk the memory bank is scanned block by block, keeping a running
top-k, so at most ``chunk_size × memory_chunk_size`` similarities exist at once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.methods.similarity import l2_normalize

_HIGHEST = jax.lax.Precision.HIGHEST  # Full float32 matmuls (no TF32 on GPUs), so rankings match NumPy.


def _nearest(queries, memory_blocks, label_blocks, k: int):
  """The k most similar memory rows per query, (similarity, label) each [Q, k], merged block by block.

  Padding rows of the memory carry label −1 and similarity −∞, so they are
  never chosen while k ≤ the number of real rows. Ties go to the lower memory
  index (``lax.top_k`` is stable and earlier blocks come first).
  """
  init = (jnp.full((queries.shape[0], k), -jnp.inf), jnp.zeros((queries.shape[0], k), jnp.int32))

  def merge(best, block):
    features, labels = block
    similarity = jnp.where(labels >= 0, jnp.matmul(queries, features.T, precision=_HIGHEST), -jnp.inf)
    candidates = jnp.concatenate([best[0], similarity], axis=1)
    candidate_labels = jnp.concatenate([best[1], jnp.broadcast_to(labels, similarity.shape)], axis=1)
    top, index = jax.lax.top_k(candidates, k)
    return (top, jnp.take_along_axis(candidate_labels, index, axis=1)), None

  return jax.lax.scan(merge, init, (memory_blocks, label_blocks))[0]


@functools.partial(jax.jit, static_argnames=('ks', 'num_classes', 'temperature'))
def _count_hits(queries, query_labels, valid, memory_blocks, label_blocks, *, ks, num_classes, temperature):
  """Top-1 and top-5 hits among the valid queries of one chunk, int32 [len(ks), 2]."""
  similarity, labels = _nearest(l2_normalize(queries), memory_blocks, label_blocks, max(ks))
  weights = jnp.exp(similarity / temperature)
  rows = jnp.arange(queries.shape[0])[:, None]
  hits = []
  for k in ks:
    scores = jnp.zeros((queries.shape[0], num_classes)).at[rows, labels[:, :k]].add(weights[:, :k])
    _, best = jax.lax.top_k(scores, min(5, num_classes))
    top1 = (best[:, 0] == query_labels) & valid
    top5 = jnp.any(best == query_labels[:, None], axis=1) & valid
    hits.append(jnp.stack([top1.sum(), top5.sum()]))
  return jnp.stack(hits)


def _pad_rows(x: np.ndarray, rows: int, value=0) -> np.ndarray:
  return np.concatenate([x, np.full((rows - len(x),) + x.shape[1:], value, x.dtype)]) if rows > len(x) else x


def weighted_knn(train_features, train_labels, query_features, query_labels, num_classes: int,
                 ks=(20, 200), temperature: float = 0.1, chunk_size: int = 1024,
                 memory_chunk_size: int = 65536) -> dict:
  """Top-1 and top-5 accuracy (percent, 0–100) of weighted kNN for each k in ``ks``.

  Args: train (memory) features [N, D] and int labels [N]; query features
  [M, D] and labels [M]; ``chunk_size`` queries and ``memory_chunk_size``
  memory rows are compared at a time.

  Returns ``{'knn_top1@k': ..., 'knn_top5@k': ...}`` as Python floats; k
  larger than the memory bank is clipped to its size (the key keeps the
  requested k).
  """
  ks = tuple(int(k) for k in ks)
  memory = np.asarray(train_features, np.float32)
  n = len(memory)
  block = min(memory_chunk_size, n)
  num_blocks = -(-n // block)
  memory_blocks = l2_normalize(jnp.asarray(_pad_rows(memory, num_blocks * block))).reshape(num_blocks, block, -1)
  label_blocks = jnp.asarray(_pad_rows(np.asarray(train_labels, np.int32), num_blocks * block, -1))
  label_blocks = label_blocks.reshape(num_blocks, block)

  queries = np.asarray(query_features, np.float32)
  query_labels = np.asarray(query_labels, np.int32)
  size = max(min(chunk_size, len(queries)), 1)
  count = functools.partial(_count_hits, ks=tuple(min(k, n) for k in ks), num_classes=int(num_classes),
                            temperature=float(temperature))
  hits = jnp.zeros((len(ks), 2), jnp.int32)
  for start in range(0, len(queries), size):
    chunk, labels = queries[start:start + size], query_labels[start:start + size]
    valid = np.arange(size) < len(chunk)
    hits = hits + count(jnp.asarray(_pad_rows(chunk, size)), jnp.asarray(_pad_rows(labels, size)),
                        jnp.asarray(valid), memory_blocks, label_blocks)
  hits = np.asarray(hits) * 100.0 / max(len(queries), 1)
  result = {}
  for i, k in enumerate(ks):
    result[f'knn_top1@{k}'] = float(hits[i, 0])
    result[f'knn_top5@{k}'] = float(hits[i, 1])
  return result
