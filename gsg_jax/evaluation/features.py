"""Feature extraction over a whole in-memory split, batched and sharded."""

import jax
import numpy as np
from jax.experimental import multihost_utils


def to_global_array(batch: np.ndarray, sharding) -> jax.Array:
  """A host array that every process holds whole → a global array laid out by ``sharding``."""
  return jax.make_array_from_callback(batch.shape, sharding, lambda index: batch[index])


def extract_features(encode_fn, state, images_u8: np.ndarray, batch_size: int, sharding) -> np.ndarray:
  """``encode_fn(state, images)`` over ``images_u8`` [N, H, W, C] in batches; returns float32 [N, D].

  The last batch is padded to ``batch_size`` (one compiled shape) and the
  padding dropped from the result.
  """
  n = len(images_u8)
  outputs = []
  for start in range(0, n, batch_size):
    batch = images_u8[start:start + batch_size]
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
    features = encode_fn(state, to_global_array(batch, sharding))
    outputs.append(np.asarray(multihost_utils.process_allgather(features, tiled=True))[:valid])
  return np.concatenate(outputs).astype(np.float32)
