"""The one feature path: an encoder over fixed-size, zero-padded batches of a split, chunk by chunk.

An *encoder* maps uint8 images [B, H, W, 3] (B = the evaluation batch size) to
``{'features': [B, D], ...}`` (a network encoder adds ``'projection'``).
``network_encoder`` builds one from a trainer's network at a state, jitted
with the batch laid out over the device mesh and gathered back to every host;
``encode_split`` runs any encoder over a ``LabelledImages`` split.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from gsg_jax import compiler, parallel


def to_global_array(batch: np.ndarray, sharding) -> jax.Array:
  """A host array that every process holds whole → a global array laid out by ``sharding``."""
  return jax.make_array_from_callback(batch.shape, sharding, lambda index: batch[index])


def pad_rows(x, rows: int, value=0):
  """``x`` (numpy or jax) with rows of ``value`` appended up to ``rows``: the one way a short batch becomes a
  fixed-size one, so a jitted function compiles once."""
  if len(x) >= rows:
    return x
  xp = np if isinstance(x, np.ndarray) else jnp
  return xp.concatenate([x, xp.full((rows - len(x),) + tuple(x.shape[1:]), value, x.dtype)])


def map_in_batches(fn, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
  """``fn(batch, start) -> tuple of arrays`` over fixed-size batches of ``images``; each output concatenated, float32.

  The last batch is zero-padded to ``batch_size`` (one compiled shape) and its padding rows dropped.
  """
  outputs = []
  for start in range(0, len(images), batch_size):
    batch = images[start : start + batch_size]
    valid = len(batch)
    outputs.append([np.asarray(out, np.float32)[:valid] for out in fn(pad_rows(batch, batch_size), start)])
  return [np.concatenate(parts) for parts in zip(*outputs)]


def encode_split(encoder, data, batch_size: int):
  """(outputs {name: float32 [n, ...]}, labels int32 [n]) per chunk of ``data`` (a ``LabelledImages``)."""
  for images, labels in data.chunks(batch_size):
    names = None

    def run(batch, start):
      nonlocal names
      out = encoder(batch)
      names = list(out)
      return tuple(out[n] for n in names)

    values = map_in_batches(run, images, batch_size)
    yield dict(zip(names, values)), np.asarray(labels, np.int32)


def jit_encode(trainer, mesh):
  """``trainer.encode`` jitted with the batch laid out over ``mesh``: build it once per trainer, it compiles once."""
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return compiler.jit(
    trainer.encode, mesh.devices.flat, in_shardings=(replicated, batch_sharding), out_shardings=batch_sharding
  )


def network_encoder(apply, state, mesh):
  """The encoder of a trained network at ``state``: ``apply`` is ``jit_encode``'s, in evaluation mode (running
  BatchNorm statistics); returns ``{'features', 'projection'}`` gathered to every host."""
  state = jax.device_put(state, parallel.replicated(mesh))
  batch_sharding = parallel.batch_sharding(mesh)

  def encode(images):
    out = apply(state, to_global_array(images, batch_sharding))
    return {k: multihost_utils.process_allgather(v, tiled=True) for k, v in out.items()}

  return encode
