"""What an evaluator reads: ``Context``, one per evaluated encoder.

``gsg_jax.evaluation.run`` (``gsg-evaluate``) and the training monitor build
one for the run's network at a state; the floors build one each for raw
pixels and the random-init network (``with_encoder``). The held-out outputs
are computed on first use and kept, so every evaluator reads the same pass.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from gsg_jax import parallel
from gsg_jax.evaluation.features import encode_split, jit_encode, network_encoder


@dataclasses.dataclass(frozen=True)
class Context:
  """An encoder and the labelled splits it is judged on.

  ``encode``: uint8 images [batch_size, H, W, 3] → ``{'features': [B, D], ...}``
  (a network's also ``'projection'``). ``memory``, ``heldout``:
  ``gsg_jax.evaluation.labelled.LabelledImages`` (kNN bank / probe training
  set; held-out queries). ``trainer`` and ``state`` are the run's
  (``gsg_jax.training``), None for an encoder without a network (raw pixels).
  ``options``: per-evaluator options from the command line, ``{name: {...}}``.
  """

  config: Any
  encode: Callable[[np.ndarray], dict]
  memory: Any
  heldout: Any
  num_classes: int
  batch_size: int
  workdir: str = '.'
  trainer: Any = None
  state: Any = None
  image_shape: tuple = ()
  mesh: Any = None
  encode_network: Callable | None = None  # jit_encode's function, shared by the encoders of other states.
  options: dict = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def heldout_outputs(self) -> dict:
    """Every output of ``encode`` on the held-out split, and its ``'labels'``: float32 / int32 numpy arrays."""
    parts = list(encode_split(self.encode, self.heldout, self.batch_size))
    out = {name: np.concatenate([p[name] for p, _ in parts]) for name in parts[0][0]}
    out['labels'] = np.concatenate([labels for _, labels in parts])
    return out

  def memory_features(self):
    """(features float32 [n, D], labels int32 [n]) per chunk of the memory split, encoded as it is read."""
    for out, labels in encode_split(self.encode, self.memory, self.batch_size):
      yield out['features'], labels

  def option(self, evaluator: str, key: str, default=None):
    return (self.options.get(evaluator) or {}).get(key, default)

  @property
  def variables(self) -> dict:
    """The network's ``{'params', 'batch_stats'}`` at ``state``."""
    return self.trainer.network_variables(self.state.params, self.state.model_state)

  def with_encoder(self, encode, trainer=None, state=None) -> Context:
    """The same splits and settings judged through another encoder (a fresh held-out pass)."""
    return dataclasses.replace(self, encode=encode, trainer=trainer, state=state)

  def at_state(self, state) -> Context:
    """This run's network at another ``state`` (e.g. the random-init one)."""
    return self.with_encoder(network_encoder(self.encode_network, state, self.mesh), self.trainer, state)


def network_context(
  config, workdir, image_shape, memory, heldout, num_classes, trainer, options=None, mesh=None
) -> Context:
  """The context of ``trainer``'s network over ``mesh`` (default: every device), without a state:
  ``.at_state(state)`` evaluates one. Its jitted encoder is built here once, so every state reuses one compilation."""
  mesh = mesh or parallel.create_mesh()
  parallel.check_batch_size(config.eval.batch_size, mesh)
  return Context(
    config,
    None,
    memory,
    heldout,
    num_classes,
    int(config.eval.batch_size),
    workdir,
    trainer,
    image_shape=tuple(image_shape),
    mesh=mesh,
    encode_network=jit_encode(trainer, mesh),
    options=options or {},
  )
