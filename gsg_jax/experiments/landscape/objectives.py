r"""The landscape objectives: names, learning rates, BatchNorm.

Objectives
----------
An objective is a name ``infonce`` or ``<loss>_<scheme>_<predictor>`` with
loss ∈ {negcos, gsg} (``gsg_jax.methods.LOSSES``), predictor ∈ {none, linear,
directpred} (``PREDICTORS``) and scheme

* ``alt``: two encoders, the authors' online and target networks, trained by
  alternating steps (``model.py``: tower A on view 1, B on view 2; the
  ``online`` target; A updated on even steps, B on odd steps);
* ``simsiam``: one encoder, the ``online`` target (SimSiam's stop-gradient);
* ``ema``: one encoder, the ``ema`` target (BYOL, momentum ``ema_momentum``).

``infonce`` is SimCLR's NT-Xent at τ = 0.05 with the ``online`` target and no
predictor, on complementary masks (``infonce_independent``: on independent masks).

Learning rates
--------------
The paper's runs use plain SGD at lr = 0.005 on NT-Xent and, for the
non-contrastive arms, on 2 − 2 cos(p, sg z) = 2 (1 + D(p, sg z)) with D = −cos
(the registry's negcos per direction), whose gradient is twice D's. With
``match_lr`` every arm takes the authors' step: ``infonce`` lr; ``simsiam`` /
``ema`` 2·lr (both halves of ½[D(p₁, sg z₂) + D(p₂, sg z₁)] reach the one
encoder); ``alt`` 4·lr for the encoders (one half reaches each tower, which
steps every other batch) and 2·lr for the shared predictor (trained at every
step on both halves). GSG takes its base arm's rates.

The step core these objectives run on is ``trainer.py``.
"""

import dataclasses

from gsg_jax import methods
from gsg_jax.errors import ConfigError

SCHEMES = {'alt': 'online', 'simsiam': 'online', 'ema': 'ema'}
NONCONTRASTIVE_LOSSES = ('negcos', 'gsg')


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: str
  target: str  # TARGETS key.
  predictor: str  # PREDICTORS key.
  towers: int
  views: str  # data.VIEW_KINDS
  drop_last: bool
  encoder_lr_scale: float
  predictor_lr_scale: float

  @property
  def contrastive(self) -> bool:
    return self.views == 'complementary'


def objective(name: str) -> Objective:
  """The objective called ``name`` (module docstring)."""
  if name == 'infonce':
    return Objective(name, 'infonce', 'online', 'none', 1, 'complementary', True, 1.0, 1.0)
  if name == 'infonce_independent':  # The same on independent masks (the non-contrastive arms' views).
    return Objective(name, 'infonce', 'online', 'none', 1, 'independent', True, 1.0, 1.0)
  parts = name.split('_')
  if (
    len(parts) != 3
    or parts[0] not in NONCONTRASTIVE_LOSSES
    or parts[1] not in SCHEMES
    or parts[2] not in methods.PREDICTORS
  ):
    raise ConfigError(
      f'objective {name!r}: expected infonce or <loss>_<scheme>_<predictor> with loss in '
      f'{NONCONTRASTIVE_LOSSES}, scheme in {tuple(SCHEMES)}, predictor in {tuple(methods.PREDICTORS)}.'
    )
  loss, scheme, predictor = parts
  alt = scheme == 'alt'
  return Objective(
    name, loss, SCHEMES[scheme], predictor, 2 if alt else 1, 'independent', False, 4.0 if alt else 2.0, 2.0
  )


def uses_batch_norm(obj: Objective, setting: str) -> bool:
  if setting == 'authors':
    return obj.loss == 'infonce' or obj.predictor != 'none'
  if setting not in ('on', 'off'):
    raise ConfigError(f"batch_norm={setting!r}: expected 'authors', 'on' or 'off'.")
  return setting == 'on'


def learning_rates(obj: Objective, cfg) -> tuple[float, float]:
  """(encoder lr, predictor lr) that the optimiser applies to the registry's loss (module docstring)."""
  if not cfg.match_lr:
    return cfg.lr, cfg.lr
  return cfg.lr * obj.encoder_lr_scale, cfg.lr * obj.predictor_lr_scale
