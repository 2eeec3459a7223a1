"""Self-supervised methods: what to compare, and how.

A ``Method`` is everything the train step needs to know about the objective:

* ``num_views``: augmented views per image (2 for SimSiam/BYOL, 4 with GSG);
* ``target``: where the stop-gradient targets come from: ``'online'`` (the
  online projections, SimSiam) or ``'ema'`` (a moving-average target network,
  BYOL);
* ``use_predictor``: whether the online branch has a predictor (else p = z);
* ``loss_fn(predictions [B, V, D], targets [B, V, D], rng) -> (loss, aux)``:
  a pure function of the views' outputs. ``targets`` arrive as the network
  made them (the online projections carry gradient): the loss routes the
  stop-gradient itself, with explicit ``jax.lax.stop_gradient`` branches.

A new objective (DirectPred's predictor, a contrastive loss such as InfoNCE)
is one new module with a loss of that signature, registered in ``LOSSES``.
"""

import dataclasses
from typing import Callable

from gsg_jax.methods import byol, gsg, simsiam
from gsg_jax.methods.byol import ema_update, momentum_schedule

METHODS = ('simsiam', 'byol')
LOSSES: dict[str, tuple[int, Callable]] = {
    # pairing → (views per image, loss)
    'symmetric': (2, simsiam.symmetric_loss),
    'guided': (4, gsg.guided_loss),
}


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  num_views: int
  target: str
  use_predictor: bool
  loss_fn: Callable


def build_method(config) -> Method:
  """The method described by the ``config.method`` block."""
  if config.name not in METHODS:
    raise ValueError(f'method.name={config.name!r}: expected one of {METHODS}.')
  pairing = 'guided' if config.guided else 'symmetric'
  num_views, loss_fn = LOSSES[pairing]
  target = 'ema' if config.name == 'byol' else 'online'
  label = config.name + ('+gsg' if config.guided else '') + ('' if config.predictor else ' (no predictor)')
  return Method(label, num_views, target, bool(config.predictor), loss_fn)


__all__ = ['Method', 'build_method', 'ema_update', 'momentum_schedule', 'METHODS', 'LOSSES']
