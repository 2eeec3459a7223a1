"""Feature extraction over a whole in-memory split, batched and sharded."""

import jax
import numpy as np
from jax.experimental import multihost_utils


def to_global_array(batch: np.ndarray, sharding) -> jax.Array:
  """A host array that every process holds whole → a global array laid out by ``sharding``."""
  return jax.make_array_from_callback(batch.shape, sharding, lambda index: batch[index])


def map_in_batches(fn, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
  """``fn(batch, start) -> tuple of arrays`` over fixed-size batches of ``images``; each output concatenated, float32.

  The last batch is zero-padded to ``batch_size`` (one compiled shape) and its padding rows dropped.
  """
  outputs = []
  for start in range(0, len(images), batch_size):
    batch = images[start : start + batch_size]
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
    outputs.append([np.asarray(out, np.float32)[:valid] for out in fn(batch, start)])
  return [np.concatenate(parts) for parts in zip(*outputs)]


def extract_features(encode_fn, state, images_u8: np.ndarray, batch_size: int, sharding) -> np.ndarray:
  """``encode_fn(state, images)`` over ``images_u8`` [N, H, W, C] in batches laid out by ``sharding``;
  float32 [N, D]."""
  encode = lambda batch, start: (
    multihost_utils.process_allgather(encode_fn(state, to_global_array(batch, sharding)), tiled=True),
  )
  return map_in_batches(encode, images_u8, batch_size)[0]
