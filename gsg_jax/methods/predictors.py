"""The predictor: a trained MLP or linear map, none (p = z), or a linear map set from statistics.

A predictor component builds the network's predictor module and owns the
state ``TrainState.extras['predictor']``:

* ``module(model_config, dtype) -> nn.Module | None`` (None: p = z);
* ``init(params) -> entry``;
* ``update(entry, params, projections, step) -> (entry, params, metrics)``:
  after the optimiser step, with the step's detached online projections of
  every view [N, d]; a set predictor may overwrite ``params['predictor']``;
* ``optimizer_rules``: rules it adds in front of ``config.optim.rules``
  (a predictor set every step is frozen in the optimiser);
* ``matrix(params) -> W_p | None``: the linear map p = W_p f, for diagnostics;
* ``correlation(entry) -> F̂ | None``: the moving correlation of its inputs it
  keeps, once it has seen a batch (None: it keeps none).

Kinds: ``mlp`` (SimSiam/BYOL's bottleneck MLP, trained), ``linear`` (a
bias-free d×d layer trained by SGD, Tian et al.'s baseline), ``none``,
``directpred`` and ``directcopy`` (``gsg_jax.methods.directpred``; trained by
SGD between settings when ``freq`` > 1).
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp

from gsg_jax.errors import ConfigError
from gsg_jax.methods import directpred
from gsg_jax.models import heads


@dataclasses.dataclass(frozen=True)
class TrainedPredictor:
  """``mlp``, ``linear`` or ``none``: no state; trained by the optimiser like every other layer."""

  kind: str
  optimizer_rules: tuple = ()

  def module(self, model_config, dtype):
    if self.kind == 'mlp':
      return heads.Predictor(model_config.predictor_hidden_dim, model_config.projection_dim, dtype)
    if self.kind == 'linear':
      return heads.LinearPredictor(model_config.projection_dim, dtype)
    return None

  def init(self, params) -> dict:
    return {}

  def update(self, entry, params, projections, step):
    return entry, params, {}

  def matrix(self, params):
    if self.kind == 'linear':
      return params['predictor']['linear']['kernel'].T
    return None

  def correlation(self, entry):
    return None


@flax.struct.dataclass
class SetPredictorState:
  """A set predictor's ``extras['predictor']``: the moving correlation F̂ [d, d] of its inputs and how many batches
  it has seen (F̂ means nothing before the first)."""

  correlation: jax.Array
  count: jax.Array


@dataclasses.dataclass(frozen=True)
class SetPredictor:
  """``directpred`` / ``directcopy``: W_p set from the moving correlation F̂ every ``freq`` steps."""

  kind: str
  rho: float
  eps: float
  freq: int

  @property
  def optimizer_rules(self) -> tuple:
    # Set after every step: an optimiser update would be overwritten, so none is computed.
    return (('predictor/.*', {'schedule': 'frozen'}),) if self.freq == 1 else ()

  def module(self, model_config, dtype):
    return heads.LinearPredictor(model_config.projection_dim, dtype)

  def init(self, params) -> SetPredictorState:
    d = params['predictor']['linear']['kernel'].shape[0]
    return SetPredictorState(jnp.zeros((d, d), jnp.float32), jnp.zeros((), jnp.int32))

  def update(self, entry, params, projections, step):
    """F̂ from this step's projections; W_p ← rule(F̂) when ``step`` (0-based) is a multiple of ``freq``."""
    correlation, count = directpred.update_correlation(
      entry.correlation, entry.count, jax.lax.stop_gradient(projections), self.rho
    )
    w, s, w_eigenvalues = directpred.set_predictor(correlation, self.kind, self.eps)
    kernel = params['predictor']['linear']['kernel']
    kernel = jnp.where(step % self.freq == 0, w.T.astype(kernel.dtype), kernel)
    params = {**params, 'predictor': {'linear': {'kernel': kernel}}}
    metrics = {
      'predictor/correlation_eig_max': s[-1],
      'predictor/correlation_eig_min': s[0],
      'predictor/wp_eig_max': jnp.max(w_eigenvalues),
      'predictor/wp_eig_min': jnp.min(w_eigenvalues),
    }
    return SetPredictorState(correlation, count), params, metrics

  def matrix(self, params):
    return params['predictor']['linear']['kernel'].T

  def correlation(self, entry):
    return jnp.asarray(entry.correlation) if int(entry.count) > 0 else None


def build_trained(kind: str):
  return lambda config: TrainedPredictor(kind)


def build_set(kind: str):
  def build(config):
    if config.freq < 1 or not 0.0 <= config.rho < 1.0:
      raise ConfigError(
        f'method.{kind}: freq must be >= 1 and rho in [0, 1); got freq={config.freq}, rho={config.rho}.'
      )
    return SetPredictor(kind, float(config.rho), float(config.eps), int(config.freq))

  return build
