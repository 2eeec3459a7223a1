r"""The landscape objectives: structured entries, the names results are stored under, learning rates, BatchNorm.

Objectives
----------
A config lists its objectives as ``Objective`` entries (``configs/landscape.py``)::

    Objective('infonce')                                    # SimCLR's NT-Xent, complementary masks
    Objective('infonce', views='independent')               # the same on independent masks
    Objective(loss='negcos', scheme='alt', predictor='linear')

with loss ∈ {infonce, negcos, gsg} (``gsg_jax.methods.LOSSES``), predictor ∈
``gsg_jax.methods.PREDICTORS`` (``none`` for InfoNCE) and, for the
non-contrastive losses, the scheme

* ``alt``: two encoders, the authors' online and target networks, trained by
  alternating steps (``model.py``: tower A on view 1, B on view 2; the
  ``online`` target; A updated on even steps, B on odd steps);
* ``simsiam``: one encoder, the ``online`` target (SimSiam's stop-gradient);
* ``ema``: one encoder, the ``ema`` target (BYOL, momentum ``ema_momentum``).

``infonce`` is SimCLR's NT-Xent at τ = 0.05 with the ``online`` target and no
predictor, on complementary masks (the non-contrastive arms' views are
independent masks). An entry is checked when it is made: a loss, scheme,
predictor or views that the experiment cannot run is a ``ConfigError`` naming it.

Names
-----
Each entry has a ``name``, the key of its results (``DIR/runs/<study>/<name>``,
results.json, ``mask_probs_for``): ``infonce``, ``infonce_independent`` or
``<loss>_<scheme>_<predictor>`` (``negcos_alt_linear``). Names are derived, never
parsed: ``Objective.from_name`` looks a name up among every entry's name, so the
names of stored results read back as the entries that wrote them, and command
lines may list objectives by name (``--config.objectives="('infonce','gsg_alt_none')"``)
or by fields (``--config.objectives="({'loss':'gsg','scheme':'alt','predictor':'none'},)"``).

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
import functools
from collections.abc import Mapping

from gsg_jax import methods
from gsg_jax.errors import ConfigError

CONTRASTIVE_LOSS = 'infonce'
NONCONTRASTIVE_LOSSES = ('negcos', 'gsg')
SCHEMES = {'alt': 'online', 'simsiam': 'online', 'ema': 'ema'}  # Scheme → the registry's target.
VIEWS = ('complementary', 'independent')  # data.VIEW_KINDS, InfoNCE's default first.


@dataclasses.dataclass(frozen=True)
class Objective:
  """One arm of the experiment (module docstring); ``name`` is the key of its results."""

  loss: str
  scheme: str | None = None  # alt, simsiam or ema; None for infonce.
  predictor: str = 'none'
  views: str | None = None  # None: the loss's own (infonce: complementary; negcos, gsg: independent).

  def __post_init__(self):
    contrastive = self.loss == CONTRASTIVE_LOSS
    if self.views is None:
      object.__setattr__(self, 'views', VIEWS[0] if contrastive else 'independent')
    if contrastive:
      problem = (
        f'scheme={self.scheme!r}: infonce takes no scheme (one encoder, online target)'
        if self.scheme is not None
        else f'predictor={self.predictor!r}: infonce runs without a predictor (none)'
        if self.predictor != 'none'
        else f'views={self.views!r}: expected one of {VIEWS}'
        if self.views not in VIEWS
        else None
      )
    else:
      problem = (
        f'loss={self.loss!r}: expected {CONTRASTIVE_LOSS!r} or one of {NONCONTRASTIVE_LOSSES}'
        if self.loss not in NONCONTRASTIVE_LOSSES
        else f'scheme={self.scheme!r}: expected one of {tuple(SCHEMES)}'
        if self.scheme not in SCHEMES
        else f'predictor={self.predictor!r}: expected one of {tuple(methods.PREDICTORS)}'
        if self.predictor not in methods.PREDICTORS
        else f"views={self.views!r}: the non-contrastive arms run on 'independent' masks"
        if self.views != 'independent'
        else None
      )
    if problem:
      fields = ', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in dataclasses.fields(self))
      raise ConfigError(f'Objective({fields}): {problem}.')

  def __repr__(self) -> str:
    if self.loss == CONTRASTIVE_LOSS:
      return "Objective('infonce')" if self.views == VIEWS[0] else f"Objective('infonce', views={self.views!r})"
    return f'Objective({self.loss!r}, {self.scheme!r}, {self.predictor!r})'

  @property
  def name(self) -> str:
    """``infonce``, ``infonce_independent`` or ``<loss>_<scheme>_<predictor>``."""
    if self.loss == CONTRASTIVE_LOSS:
      return CONTRASTIVE_LOSS if self.views == VIEWS[0] else f'{CONTRASTIVE_LOSS}_{self.views}'
    return f'{self.loss}_{self.scheme}_{self.predictor}'

  @classmethod
  def from_name(cls, name: str) -> 'Objective':
    """The entry called ``name`` (a lookup among every entry's name, not a parser)."""
    found = _by_name().get(name)
    if found is None:
      raise ConfigError(
        f'objective {name!r}: no objective has this name. Names are infonce, infonce_independent or '
        f'<loss>_<scheme>_<predictor> with loss in {NONCONTRASTIVE_LOSSES}, scheme in {tuple(SCHEMES)}, predictor '
        f'in {tuple(methods.PREDICTORS)} (e.g. negcos_alt_none).'
      )
    return found

  def to_json(self) -> str:
    """Stored as its name (``gsg_jax.experiments.jsonable``): config.json and results.json name objectives."""
    return self.name

  @property
  def target(self) -> str:
    """The registry's target: ``online``, or ``ema`` for the ema scheme."""
    return SCHEMES[self.scheme] if self.scheme else 'online'

  @property
  def towers(self) -> int:
    return 2 if self.scheme == 'alt' else 1

  @property
  def contrastive(self) -> bool:
    """On complementary masks: one mask per pair and no mask-probability axis (``run.run_settings``)."""
    return self.views == 'complementary'

  @property
  def drop_last(self) -> bool:
    """InfoNCE drops the last partial batch (``drop_last=True`` in the authors' ``main_simclr.py``)."""
    return self.loss == CONTRASTIVE_LOSS

  @property
  def encoder_lr_scale(self) -> float:
    return 1.0 if self.loss == CONTRASTIVE_LOSS else 4.0 if self.scheme == 'alt' else 2.0

  @property
  def predictor_lr_scale(self) -> float:
    return 1.0 if self.loss == CONTRASTIVE_LOSS else 2.0


def every_objective() -> tuple[Objective, ...]:
  """Every entry the experiment can run, InfoNCE's two first."""
  return (Objective(CONTRASTIVE_LOSS), Objective(CONTRASTIVE_LOSS, views='independent')) + tuple(
    Objective(loss, scheme, predictor)
    for loss in NONCONTRASTIVE_LOSSES
    for scheme in SCHEMES
    for predictor in methods.PREDICTORS
  )


@functools.cache
def _by_name() -> dict[str, Objective]:
  return {o.name: o for o in every_objective()}


def objective(entry) -> Objective:
  """The ``Objective`` of a config entry: an ``Objective``, its name (stored results and command lines name them)
  or a mapping of its fields (a command line's ``{'loss': ..., 'scheme': ..., 'predictor': ...}``)."""
  if isinstance(entry, Objective):
    return entry
  if isinstance(entry, str):
    return Objective.from_name(entry)
  if isinstance(entry, Mapping):
    fields = {f.name for f in dataclasses.fields(Objective)}
    unknown = sorted(set(entry) - fields)
    if unknown or 'loss' not in entry:
      raise ConfigError(
        f'objective {dict(entry)!r}: ' + (f'unknown fields {unknown}' if unknown else 'no loss') + f'; the fields '
        f'are {sorted(fields)}.'
      )
    return Objective(**entry)
  raise ConfigError(f'objective {entry!r}: expected an Objective, its name or a mapping of its fields.')


def stored(name: str) -> Objective | None:
  """The entry whose results are stored under ``name``, or None for a name of no objective (the full-rank study
  stores its runs under ``fullrank``): for readers of results, which meet every study."""
  return _by_name().get(name)


def uses_batch_norm(obj: Objective, setting: str) -> bool:
  if setting == 'authors':
    return obj.loss == CONTRASTIVE_LOSS or obj.predictor != 'none'
  if setting not in ('on', 'off'):
    raise ConfigError(f"batch_norm={setting!r}: expected 'authors', 'on' or 'off'.")
  return setting == 'on'


def learning_rates(obj: Objective, cfg) -> tuple[float, float]:
  """(encoder lr, predictor lr) that the optimiser applies to the registry's loss (module docstring)."""
  if not cfg.match_lr:
    return cfg.lr, cfg.lr
  return cfg.lr * obj.encoder_lr_scale, cfg.lr * obj.predictor_lr_scale
