"""Weighted k-nearest-neighbour classification on frozen features.

The InstDisc / SimSiam-monitor convention (Wu et al. 2018): features are
ℓ2-normalised; for a query q its k most cosine-similar memory features
f_1..f_k (labels y_j) vote with weights w_j = exp(cos(q, f_j) / T):

    score_c(q) = Σ_{j ≤ k} w_j · [y_j = c],     ŷ(q) = argmax_c score_c(q).

Top-5 accuracy counts a query as correct when its label is among the five
best-scoring classes. Similarities are computed on the accelerator, one
chunk of queries at a time, so memory stays bounded for large memory banks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.methods.similarity import l2_normalize as _normalize


@functools.partial(jax.jit, static_argnames=('ks', 'num_classes', 'temperature'))
def _top5_per_k(queries, memory, memory_labels, *, ks, num_classes, temperature):
  """For each k: the indices of the five best classes, [len(ks), chunk, min(5, C)]."""
  similarity = _normalize(queries) @ memory.T
  top_similarity, top_index = jax.lax.top_k(similarity, max(ks))
  votes = jax.nn.one_hot(memory_labels[top_index], num_classes) * jnp.exp(top_similarity / temperature)[..., None]
  return jnp.stack([jax.lax.top_k(votes[:, :k].sum(1), min(5, num_classes))[1] for k in ks])


def weighted_knn(train_features, train_labels, query_features, query_labels, num_classes: int,
                 ks=(20, 200), temperature: float = 0.1, chunk_size: int = 1024) -> dict:
  """Top-1 and top-5 accuracy (percent) of weighted kNN for each k in ``ks``.

  Returns ``{'knn_top1@k': ..., 'knn_top5@k': ...}``; k larger than the
  memory bank is clipped to its size (the key keeps the requested k).
  """
  memory = _normalize(jnp.asarray(train_features, jnp.float32))
  memory_labels = jnp.asarray(train_labels, jnp.int32)
  query_features = np.asarray(query_features, np.float32)
  query_labels = np.asarray(query_labels)
  clipped = tuple(min(k, memory.shape[0]) for k in ks)
  run = functools.partial(_top5_per_k, ks=clipped, num_classes=num_classes, temperature=float(temperature))

  correct1, correct5 = np.zeros(len(ks)), np.zeros(len(ks))
  for start in range(0, len(query_features), chunk_size):
    chunk = query_features[start:start + chunk_size]
    valid = len(chunk)
    if valid < chunk_size and start > 0:  # Pad to the compiled shape; padding is dropped below.
      chunk = np.concatenate([chunk, np.zeros((chunk_size - valid, chunk.shape[1]), chunk.dtype)])
    top5 = np.asarray(run(jnp.asarray(chunk), memory, memory_labels))[:, :valid]
    labels = query_labels[start:start + valid]
    correct1 += (top5[:, :, 0] == labels).sum(1)
    correct5 += (top5 == labels[:, None]).any(-1).sum(1)
  n = max(len(query_features), 1)
  result = {}
  for i, k in enumerate(ks):
    result[f'knn_top1@{k}'] = 100.0 * correct1[i] / n
    result[f'knn_top5@{k}'] = 100.0 * correct5[i] / n
  return result
