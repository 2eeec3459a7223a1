"""Splits, datasets, and the two ways a training loop draws batches.

Every source returns a ``Dataset``: a ``TrainData`` to train on plus two
labelled in-memory ``Split``s for evaluation. A training batch is a dict
``{'image': uint8 [B, H, W, 3], 'label': int32 [B]}`` of global arrays laid
out by the batch sharding; augmentation happens later, on the accelerator.
Streamed data (``StreamingTrainData``) crop the views on the host instead:
``'image'`` is then uint8 [B, V, h, w, 3], and only the other augmentations
run on the accelerator.
Labels are there for the online linear probe only: no self-supervised loss
reads them.

Determinism contract shared by both ``TrainData`` implementations: global
step ``k`` belongs to epoch ``e = k // steps_per_epoch``; epoch ``e`` visits
the examples in the order ``np.random.default_rng([seed, e]).permutation(N)``
(``InMemoryTrainData`` exactly; ``StreamingTrainData`` with a TF shuffle
seeded from ``(seed, e)``), and batch ``k`` is slice ``k % steps_per_epoch``
of it, the incomplete last slice dropped. So batch ``k`` depends only on
``(seed, k)``, and ``batches(start_step=k)`` continues a run interrupted
after step ``k - 1`` exactly.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Dict, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gsg_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Split:
  """An in-memory labelled split."""

  images: np.ndarray  # uint8 [N, H, W, 3]
  labels: np.ndarray  # int32 [N]

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
      raise ValueError(f'Split.images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}.')
    if self.labels.shape != self.images.shape[:1]:
      raise ValueError(f'Split.labels has shape {self.labels.shape}, expected ({len(self.images)},).')

  def __len__(self) -> int:
    return len(self.images)


Batch = Dict[str, jax.Array]  # {'image': uint8 [B, H, W, 3] (or [B, V, h, w, 3] views), 'label': int32 [B]}


class TrainData(Protocol):
  """What the training loop draws global batches from."""

  num_examples: int
  image_shape: tuple[int, ...]  # One example of 'image' as batches yield it: (H, W, 3), or (V, h, w, 3) views.

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches per epoch; the incomplete last batch is dropped."""
    ...

  def batches(
    self, batch_size: int, seed: int = 0, start_step: int = 0, sharding: jax.sharding.Sharding | None = None
  ) -> Iterator[Batch]:
    """Endless global batches of ``batch_size`` examples, from global step ``start_step`` on."""
    ...


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A source's data: training batches plus the labelled splits evaluation uses."""

  name: str
  num_classes: int
  train: TrainData
  memory: Split  # kNN memory bank / linear-probe training set (unaugmented).
  heldout: Split  # Held-out queries, never seen in training.


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which epoch ``epoch`` visits the examples."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def check_batch_args(num_examples: int, batch_size: int, seed: int, start_step: int) -> int:
  """Validates ``batches()`` arguments; returns steps per epoch."""
  if not 0 < batch_size <= num_examples:
    raise ConfigError(f'batch_size={batch_size} must be in [1, {num_examples}] (the number of training examples).')
  if seed < 0 or start_step < 0:
    raise ConfigError(f'seed={seed} and start_step={start_step} must be non-negative.')
  return num_examples // batch_size


def replicated_sharding(sharding: jax.sharding.Sharding) -> NamedSharding:
  """A sharding that puts a whole copy on every device ``sharding`` spans."""
  if isinstance(sharding, NamedSharding):
    return NamedSharding(sharding.mesh, P())
  devices = sorted(sharding.device_set, key=lambda d: d.id)
  return NamedSharding(Mesh(np.asarray(devices), ('devices',)), P())


def _take(arrays, indices):
  return {k: jnp.take(v, indices, axis=0) for k, v in arrays.items()}


class InMemoryTrainData:
  """A split held whole on the accelerator; batches are gathered there.

  The uint8 images and int32 labels are copied to the devices once (replicated over the mesh
  when a sharding is given); each batch is a jitted ``take`` whose output is
  laid out by the batch sharding. The host only computes indices, so it
  never limits the step.
  """

  def __init__(self, split: Split):
    self.split = split
    self.num_examples = len(split)
    self.image_shape = tuple(split.images.shape[1:])
    self._placed = None  # (replicated sharding or None, {'image', 'label'} device arrays)
    self._gathers = {}  # batch sharding -> jitted take

  def steps_per_epoch(self, batch_size: int) -> int:
    """``num_examples // batch_size`` (drop-last)."""
    return self.num_examples // batch_size

  def _device_arrays(self, sharding):
    target = None if sharding is None else replicated_sharding(sharding)
    if self._placed is None or self._placed[0] != target:
      arrays = {'image': self.split.images, 'label': self.split.labels.astype(np.int32)}
      self._placed = (target, jax.device_put(arrays, target))
    return self._placed

  def batches(
    self, batch_size: int, seed: int = 0, start_step: int = 0, sharding: jax.sharding.Sharding | None = None
  ) -> Iterator[Batch]:
    """Endless batches of ``batch_size`` examples from ``start_step`` on, laid out by ``sharding``."""
    steps = check_batch_args(self.num_examples, batch_size, seed, start_step)
    index_sharding, arrays = self._device_arrays(sharding)
    if sharding not in self._gathers:
      self._gathers[sharding] = jax.jit(_take) if sharding is None else jax.jit(_take, out_shardings=sharding)
    take = self._gathers[sharding]
    return self._iterate(arrays, take, index_sharding, batch_size, seed, start_step, steps)

  def _iterate(self, arrays, take, index_sharding, batch_size, seed, step, steps):
    order_epoch, order = -1, None
    while True:
      epoch, k = divmod(step, steps)
      if epoch != order_epoch:
        order_epoch, order = epoch, epoch_permutation(seed, epoch, self.num_examples).astype(np.int32)
      indices = jax.device_put(order[k * batch_size : (k + 1) * batch_size], index_sharding)
      yield take(arrays, indices)
      step += 1


def prefetch_to_device(iterator: Iterator, size: int = 2) -> Iterator:
  """Keeps ``size`` batches in flight: device transfers overlap the consumer's work."""
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
