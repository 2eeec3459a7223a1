"""Self-supervised methods as three components: a loss, a target and a predictor.

A method is chosen by ``config.method``::

    method.loss      = 'negcos' | 'gsg' | 'infonce' | 'dcl' | 'dhel' | 'kcl'   (LOSSES)
    method.target    = 'online' | 'ema'                          (TARGETS)
    method.predictor = 'mlp' | 'linear' | 'none' | 'directpred' | 'directcopy'   (PREDICTORS)

and each component's hyperparameters sit in a sub-block named after it
(``method.ema.momentum``, ``method.directpred.eps``, ...), with the defaults
that the registry entries below declare. SimSiam is negcos/online/mlp, BYOL
negcos/ema/mlp, their GSG versions use the ``gsg`` loss; SimCLR is
infonce/online/none (the contrastive losses of ``contrastive.py``: infonce,
dcl, dhel, kcl); every predictor composes with every target and loss.

A loss is a pure ``fn(predictions [B, V, D], targets [B, V, D], rng,
**hyperparameters) -> (loss, aux)``. The targets arrive with their gradient
(the online projections, or the EMA network's, which carry none): the loss
puts what it treats as a target under ``jax.lax.stop_gradient`` itself, in
explicit branches, and declares it with ``cuts_target_gradient`` (checked for
every registered loss by tests/test_methods.py). A contrastive loss, which
takes gradients through both views, declares False.

The registries are the one list of allowed values: ``config_lib.validate``
and ``build_method`` both read them.
"""

import dataclasses
from typing import Any, Callable

from gsg_jax.errors import ConfigError
from gsg_jax.methods import contrastive, gsg, predictors, simsiam, targets
from gsg_jax.methods.targets import ema_update, momentum_schedule


@dataclasses.dataclass(frozen=True)
class Loss:
  num_views: int
  fn: Callable
  cuts_target_gradient: bool
  defaults: dict = dataclasses.field(default_factory=dict)  # Hyperparameters: config.method.<name>.


@dataclasses.dataclass(frozen=True)
class Component:
  build: Callable  # (config.method.<name> or None, ...) -> component.
  defaults: dict = dataclasses.field(default_factory=dict)


LOSSES: dict[str, Loss] = {
  'negcos': Loss(2, simsiam.symmetric_loss, cuts_target_gradient=True),
  'gsg': Loss(4, gsg.guided_loss, cuts_target_gradient=True),
  # Contrastive losses (gradients through both views). simclr-pytorch's CIFAR-10 config: τ = 0.5;
  # Koromilas et al.'s code (DHEL-KCL losses.py): DHEL τ = 0.3 with both views' energies, KCL t = 2, γ = 16.
  'infonce': Loss(2, contrastive.infonce_loss, cuts_target_gradient=False, defaults={'temperature': 0.5}),
  'dcl': Loss(2, contrastive.dcl_loss, cuts_target_gradient=False, defaults={'temperature': 0.5}),
  'dhel': Loss(
    2, contrastive.dhel_loss, cuts_target_gradient=False, defaults={'temperature': 0.3, 'include_augs': True}
  ),
  'kcl': Loss(
    2, contrastive.kcl_loss, cuts_target_gradient=False, defaults={'t': 2.0, 'gamma': 16.0, 'kernel': 'gaussian'}
  ),
}
TARGETS: dict[str, Component] = {
  'online': Component(targets.build_online),
  # GSG reference: fixed 0.99; BYOL's paper: 'cosine' from 0.996 up to 1.
  'ema': Component(targets.build_ema, {'momentum': 0.99, 'schedule': 'constant'}),
}
_SET_DEFAULTS = {'rho': 0.3, 'eps': 0.1, 'freq': 1}  # Tian et al.'s code: dyn_lambda 0.3, dyn_eps 0.1, freq 1.
PREDICTORS: dict[str, Component] = {
  'mlp': Component(predictors.build_trained('mlp')),
  'linear': Component(predictors.build_trained('linear')),
  'none': Component(predictors.build_trained('none')),
  'directpred': Component(predictors.build_set('directpred'), dict(_SET_DEFAULTS)),
  'directcopy': Component(predictors.build_set('directcopy'), dict(_SET_DEFAULTS)),
}


@dataclasses.dataclass(frozen=True)
class Method:
  name: str  # A label for logs and reports, e.g. 'byol+gsg+directpred'.
  loss: str
  num_views: int
  loss_fn: Callable  # (predictions, targets, rng) -> (loss, aux), hyperparameters bound.
  target: Any  # gsg_jax.methods.targets component.
  predictor: Any  # gsg_jax.methods.predictors component.

  @property
  def optimizer_rules(self) -> tuple:
    return tuple(self.predictor.optimizer_rules)


def label(loss: str, target: str, predictor: str) -> str:
  """'simsiam', 'byol+gsg', 'byol+directpred', 'simsiam (no predictor)', 'infonce', 'dhel+ema+mlp', ...

  A loss that takes gradients through both views (a contrastive one) names the
  method itself; a non-default target ('ema') and predictor follow it.
  """
  if loss in LOSSES and not LOSSES[loss].cuts_target_gradient:
    return loss + ('+ema' if target == 'ema' else '') + ('' if predictor == 'none' else f'+{predictor}')
  name = {'online': 'simsiam', 'ema': 'byol'}[target] + ('+gsg' if loss == 'gsg' else '')
  if predictor == 'none':
    return name + ' (no predictor)'
  return name if predictor == 'mlp' else f'{name}+{predictor}'


def _sub_block(config, name: str, defaults: dict):
  return config[name] if defaults else None


def build_method(config, total_steps: int = 1) -> Method:
  """The method that the ``config.method`` block describes (``total_steps``: for momentum schedules)."""
  for key, registry in (('loss', LOSSES), ('target', TARGETS), ('predictor', PREDICTORS)):
    if config[key] not in registry:
      raise ConfigError(f'config.method.{key}={config[key]!r} is invalid: expected one of {tuple(registry)}.')
  loss = LOSSES[config.loss]
  hyperparameters = dict(config[config.loss]) if loss.defaults else {}
  loss_fn = lambda p, z, rng: loss.fn(p, z, rng, **hyperparameters)
  target = TARGETS[config.target]
  predictor = PREDICTORS[config.predictor]
  return Method(
    label(config.loss, config.target, config.predictor),
    config.loss,
    loss.num_views,
    loss_fn,
    target.build(_sub_block(config, config.target, target.defaults), total_steps),
    predictor.build(_sub_block(config, config.predictor, predictor.defaults)),
  )


def default_method_config(loss: str, target: str, predictor: str):
  """``config.method``: the three choices and a sub-block of defaults for every component that has some."""
  import ml_collections

  c = ml_collections.ConfigDict()
  c.loss, c.target, c.predictor = loss, target, predictor
  for registry in (LOSSES, TARGETS, PREDICTORS):
    for name, entry in registry.items():
      if entry.defaults:
        c[name] = ml_collections.ConfigDict(entry.defaults)
  return c


__all__ = [
  'LOSSES',
  'Loss',
  'Method',
  'PREDICTORS',
  'TARGETS',
  'build_method',
  'default_method_config',
  'ema_update',
  'label',
  'momentum_schedule',
]
