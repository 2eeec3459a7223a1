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
**hyperparameters) -> (loss, aux)``. A loss with state (a queue, a centre)
declares ``init(projection_dim, **hyperparameters) -> state``; its ``fn``
then takes the state after ``rng`` and returns ``(loss, aux, state)``, and
the state lives in ``TrainState.extras['loss']``. The targets arrive with their gradient
(the online projections, or the EMA network's, which carry none): the loss
puts what it treats as a target under ``jax.lax.stop_gradient`` itself, in
explicit branches, and declares it with ``cuts_target_gradient`` (checked for
every registered loss by tests/test_methods.py). A contrastive loss, which
takes gradients through both views, declares False.

The registries are the one list of allowed values: ``config_lib.validate``
dry-builds the method from them. ``register_loss``, ``register_target`` and
``register_predictor`` add a component from outside the package (before the
config that names it is made: ``default_method_config`` adds its sub-block of
defaults); tests/test_extending.py does so.
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
  init: Callable | None = None  # (projection_dim, **hyperparameters) -> state, for a loss with state.
  check: Callable | None = None  # (**hyperparameters) -> None, raising ConfigError for a bad value.


@dataclasses.dataclass(frozen=True)
class Component:
  build: Callable  # (config.method.<name> or None, ...) -> component.
  defaults: dict = dataclasses.field(default_factory=dict)


LOSSES: dict[str, Loss] = {
  'negcos': Loss(2, simsiam.symmetric_loss, cuts_target_gradient=True),
  'gsg': Loss(4, gsg.guided_loss, cuts_target_gradient=True),
  # Contrastive losses (gradients through both views). simclr-pytorch's CIFAR-10 config: τ = 0.5;
  # Koromilas et al.'s code (DHEL-KCL losses.py): DHEL τ = 0.3 with both views' energies, KCL t = 2, γ = 16.
  **{
    name: Loss(2, fn, cuts_target_gradient=False, defaults=defaults, check=contrastive.checker(name))
    for name, fn, defaults in (
      ('infonce', contrastive.infonce_loss, {'temperature': 0.5}),
      ('dcl', contrastive.dcl_loss, {'temperature': 0.5}),
      ('dhel', contrastive.dhel_loss, {'temperature': 0.3, 'include_augs': True}),
      ('kcl', contrastive.kcl_loss, {'t': 2.0, 'gamma': 16.0, 'kernel': 'gaussian'}),
    )
  },
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
  loss_fn: Callable  # (predictions, targets, rng, state) -> (loss, aux, state), hyperparameters bound.
  target: Any  # gsg_jax.methods.targets component.
  predictor: Any  # gsg_jax.methods.predictors component.
  loss_init: Callable | None = None  # projection_dim -> the loss's state; None: a loss without state.

  @property
  def optimizer_rules(self) -> tuple:
    return tuple(self.predictor.optimizer_rules)


def _register(registry: dict, kind: str, name: str, entry) -> None:
  if name in registry and registry[name] is not entry:
    raise ValueError(f'a {kind} named {name!r} is already registered.')
  registry[name] = entry


def register_loss(name: str, loss: Loss) -> None:
  """Make ``loss`` available as ``config.method.loss=name``."""
  _register(LOSSES, 'loss', name, loss)


def register_target(name: str, target: Component) -> None:
  """Make ``target`` available as ``config.method.target=name``; ``target.build(sub_block, total_steps)`` returns
  an object with ``gsg_jax.methods.targets``' interface."""
  _register(TARGETS, 'target', name, target)


def register_predictor(name: str, predictor: Component) -> None:
  """Make ``predictor`` available as ``config.method.predictor=name``; ``predictor.build(sub_block)`` returns an
  object with ``gsg_jax.methods.predictors``' interface."""
  _register(PREDICTORS, 'predictor', name, predictor)


_GRADIENT_CUTTING = {'negcos': '', 'gsg': '+gsg'}  # The losses of SimSiam and BYOL, named after their papers.
_PAPER_NAMES = {'online': 'simsiam', 'ema': 'byol'}


def label(loss: str, target: str, predictor: str) -> str:
  """'simsiam', 'byol+gsg', 'byol+directpred', 'simsiam (no predictor)', 'infonce', 'dhel+ema+mlp', ...

  SimSiam's and BYOL's loss (``negcos``, or ``gsg``) with their target is
  named after the paper; any other combination names its loss, then a target
  other than ``online`` and a predictor other than ``none``.
  """
  if loss in _GRADIENT_CUTTING and target in _PAPER_NAMES:
    name = _PAPER_NAMES[target] + _GRADIENT_CUTTING[loss]
    if predictor == 'none':
      return name + ' (no predictor)'
    return name if predictor == 'mlp' else f'{name}+{predictor}'
  return loss + ('' if target == 'online' else f'+{target}') + ('' if predictor == 'none' else f'+{predictor}')


def _sub_block(config, name: str, defaults: dict):
  return config[name] if defaults else None


def build_method(config, total_steps: int = 1) -> Method:
  """The method that the ``config.method`` block describes (``total_steps``: for momentum schedules).

  Each component's builder checks its own sub-block, raising ConfigError for a bad value: building is the
  validation (``config_lib.validate`` dry-builds).
  """
  for key, registry in (('loss', LOSSES), ('target', TARGETS), ('predictor', PREDICTORS)):
    if config[key] not in registry:
      raise ConfigError(f'config.method.{key}={config[key]!r} is invalid: expected one of {tuple(registry)}.')
  loss = LOSSES[config.loss]
  hyperparameters = dict(config[config.loss]) if loss.defaults else {}
  if loss.check is not None:
    loss.check(**hyperparameters)
  if loss.init is None:
    loss_fn = lambda p, z, rng, state: (*loss.fn(p, z, rng, **hyperparameters), state)
    loss_init = None
  else:
    loss_fn = lambda p, z, rng, state: loss.fn(p, z, rng, state, **hyperparameters)
    loss_init = lambda dim: loss.init(dim, **hyperparameters)
  target = TARGETS[config.target]
  predictor = PREDICTORS[config.predictor]
  return Method(
    label(config.loss, config.target, config.predictor),
    config.loss,
    loss.num_views,
    loss_fn,
    target.build(_sub_block(config, config.target, target.defaults), total_steps),
    predictor.build(_sub_block(config, config.predictor, predictor.defaults)),
    loss_init,
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
  'register_loss',
  'register_predictor',
  'register_target',
]
