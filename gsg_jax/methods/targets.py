"""Where the targets come from: the online network itself, or an EMA copy of it (BYOL).

A target component is a small frozen object with three pure functions; its
state is ``TrainState.extras['target']``:

* ``init(params, model_state) -> entry``;
* ``projections(entry, network, x, num_views) -> (targets or None, entry)``:
  the target projections of the view rows ``x``; None means "the online
  projections", which the loss then receives with their gradient (the loss
  decides what to cut, see ``gsg_jax.methods``);
* ``update(entry, params, step) -> (entry, metrics)``: after the optimiser step.

``ema`` keeps ξ, the parameters (and BatchNorm statistics) of the backbone
and projector, and after every optimiser step on the online θ sets

    ξ ← m · ξ + (1 − m) · θ,

with m fixed (the GSG reference: 0.99) or BYOL's cosine schedule from m₀ up
to 1 over the K training steps: m(k) = 1 − (1 − m₀)·(cos(πk/K) + 1)/2.
The target network runs with training-mode BatchNorm, as BYOL's does, and
keeps its own running statistics; it is never differentiated (its
parameters are not an argument of the gradient).
"""

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from gsg_jax import models
from gsg_jax.errors import ConfigError

SCHEDULES = ('constant', 'cosine')
_EMA_PARTS = ('backbone', 'projector')


def ema_update(target, online, momentum):
  """ξ ← m ξ + (1 − m) θ on matching pytrees (``online`` may hold extra subtrees, e.g. the predictor)."""
  online = {k: online[k] for k in target}
  return jax.tree_util.tree_map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def momentum_schedule(base: float, schedule: str, total_steps: int) -> Callable:
  """Momentum as a function of the step: 'constant' or 'cosine' (BYOL, from ``base`` up to 1)."""
  if schedule == 'constant':
    return lambda step: jnp.asarray(base, jnp.float32)
  if schedule == 'cosine':

    def cosine(step):
      progress = jnp.minimum(step / max(total_steps, 1), 1.0)
      return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0

    return cosine
  raise ConfigError(f'config.method.ema.schedule={schedule!r} is invalid: expected one of {SCHEDULES}.')


@dataclasses.dataclass(frozen=True)
class OnlineTarget:
  """SimSiam: the targets are the online projections (the loss stops their gradient)."""

  def init(self, params, model_state) -> dict:
    return {}

  def projections(self, entry, network, x, num_views):
    return None, entry

  def update(self, entry, params, step):
    return entry, {}


@flax.struct.dataclass
class EMATargetState:
  """BYOL's ``extras['target']``: ξ, the target network's parameters and BatchNorm statistics (backbone and
  projector); its ``variables`` are what ``network.apply`` takes."""

  params: Any
  batch_stats: Any

  @property
  def variables(self) -> dict:
    return {'params': self.params, 'batch_stats': self.batch_stats}


@dataclasses.dataclass(frozen=True)
class EMATarget:
  """BYOL: a moving average of the online backbone and projector."""

  momentum: Callable[[jax.Array], jax.Array]

  def init(self, params, model_state) -> EMATargetState:
    return EMATargetState(
      {k: params[k] for k in _EMA_PARTS}, {k: model_state[k] for k in _EMA_PARTS if k in model_state}
    )

  def projections(self, entry, network, x, num_views):
    out, batch_stats = models.train_pass(network, entry.variables, x, num_views, with_predictor=False)
    return out['projection'], entry.replace(batch_stats=batch_stats)

  def update(self, entry, params, step):
    momentum = self.momentum(step)
    return entry.replace(params=ema_update(entry.params, params, momentum)), {'ema_momentum': momentum}


def build_online(config, total_steps: int) -> OnlineTarget:
  return OnlineTarget()


def build_ema(config, total_steps: int) -> EMATarget:
  if not 0.0 <= config.momentum < 1.0:
    raise ConfigError(f'config.method.ema.momentum={config.momentum!r} is invalid: expected in [0, 1).')
  return EMATarget(momentum_schedule(config.momentum, config.schedule, total_steps))
