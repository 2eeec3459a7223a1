r"""The step core of the landscape objectives, and two landscape-only losses.

The step core and what it does not recompute
--------------------------------------------
``LandscapeTrainer`` is ``gsg_jax.training.step.Trainer`` with its loss
replaced where the landscape can do less work for the same value:

* ``infonce`` with p = z: the registry's ½[ℓ(z₁, z₂) + ℓ(z₂, z₁)] equals
  ℓ(z₁, z₂), so ℓ is evaluated once, and with three Gram blocks (uuᵀ, uvᵀ,
  vvᵀ; the rows of v read vuᵀ = (uvᵀ)ᵀ by columns) instead of eight;
* GSG on two encoders (scheme ``alt``): the guide picks the closest
  cross-image pair from tower A's projections of all four views
  (``image_guided_loss``), so the choice depends on the images, not on which
  tower produced a view (raw projections of two separately initialised towers
  differ in scale, and one tower's pairs would win more often);
* alternating steps: ``build_trainers`` returns, besides the generic trainer,
  one trainer per tower whose network freezes the other tower
  (``SymReLUNetwork.frozen_tower``), so no gradient is computed for the idle
  tower (the generic trainer computes it and ``alternate_towers`` zeroes it).
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gsg_jax import methods
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape.model import SymReLUNetwork
from gsg_jax.experiments.landscape.objectives import Objective, learning_rates, uses_batch_norm
from gsg_jax.methods import gsg
from gsg_jax.methods.similarity import cosine_similarity, l2_normalize
from gsg_jax.training.optim import build_optimizer
from gsg_jax.training.step import Trainer, TrainState

SET_PREDICTORS = ('directpred', 'directcopy')
_MASKED = -1e9  # exp(−1e9 − max) = 0 in a log-sum-exp, with a zero (finite) gradient.


def alternate_towers() -> optax.GradientTransformation:
  """Zero everything of ``tower_1`` on even steps and of ``tower_0`` on odd ones (other leaves pass)."""

  def init(params):
    return {'count': jnp.zeros((), jnp.int32)}

  def update(updates, state, params=None):
    active = state['count'] % 2

    def gate(path, u):
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      for t in (0, 1):
        if f'tower_{t}' in name:
          return jnp.where(active == t, u, jnp.zeros_like(u))
      return u

    return jax.tree_util.tree_map_with_path(gate, updates), {'count': state['count'] + 1}

  return optax.GradientTransformation(init, update)


def method_config(obj: Objective, cfg):
  c = methods.default_method_config(obj.loss, obj.target, obj.predictor)
  c.infonce.temperature = cfg.temperature
  c.ema.momentum = cfg.ema_momentum
  for kind in SET_PREDICTORS:
    c[kind].update(cfg.directpred)
  return c


# ----------------------------------------------------------------------------- landscape-only losses


def nt_xent(z1, z2, temperature: float):
  """SimCLR's NT-Xent over the 2B rows, from three Gram blocks; equals ``methods.contrastive.infonce``.

      ℓ = (1/2B) Σ_rows a [ −s(a, a⁺) + log Σ_{b ≠ a} exp s(a, b) ],   s(a, b) = ⟨a, b⟩/τ on unit rows.

  Rows of u take uuᵀ (self masked) and uvᵀ; rows of v take vvᵀ and vuᵀ = (uvᵀ)ᵀ, read by columns.
  """
  u, v = l2_normalize(z1), l2_normalize(z2)
  eye = jnp.eye(u.shape[0], dtype=bool)
  gram = lambda a, b: jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST) / temperature
  uv = gram(u, v)
  lse_u = jnp.logaddexp(jax.nn.logsumexp(jnp.where(eye, _MASKED, gram(u, u)), -1), jax.nn.logsumexp(uv, -1))
  lse_v = jnp.logaddexp(jax.nn.logsumexp(jnp.where(eye, _MASKED, gram(v, v)), -1), jax.nn.logsumexp(uv, 0))
  return jnp.mean(0.5 * (lse_u + lse_v) - jnp.diagonal(uv))


def image_guided_loss(predictions, targets, guide, rng):
  """GSG's loss (``gsg_jax.methods.gsg``) with the closest pair chosen on ``guide`` [B, 4, D], not ``targets``.

  With the permutation r and (x₁₁, x₁₂, x₂₁, x₂₂) = (a_i, b_i, c_{r(i)}, d_{r(i)}) as in ``gsg.pair_views``,
      (a*, b*) = argmin_{a, b} ‖g₁ₐ − g₂_b‖,   ℓ_i = −½ [cos(p₁ₐ*, sg z₁ā*) + cos(p₂_b*, sg z₂b̄*)],
  where g is one network's projection of every view, so the choice sees images only.
  """
  permutation = jax.random.permutation(rng, predictions.shape[0])
  p11, p12, p21, p22 = gsg.pair_views(predictions, permutation)
  z11, z12, z21, z22 = (jax.lax.stop_gradient(t) for t in gsg.pair_views(targets, permutation))
  choice, distances = gsg.closest_pair(*gsg.pair_views(jax.lax.stop_gradient(guide), permutation))
  one_hot = jax.nn.one_hot(choice, 4)
  src1 = (-cosine_similarity(p11, z12), -cosine_similarity(p12, z11))  # Image 1's source a* = 1 or 2.
  src2 = (-cosine_similarity(p21, z22), -cosine_similarity(p22, z21))  # Image 2's source b* = 1 or 2.
  branches = jnp.stack([0.5 * (src1[a] + src2[b]) for a, b in gsg.BRANCHES], axis=-1)
  loss = jnp.mean(jnp.sum(one_hot * branches, axis=-1))
  fractions = jnp.mean(one_hot, axis=0)
  aux = {f'gsg/pair_{a + 1}{b + 1}': fractions[k] for k, (a, b) in enumerate(gsg.BRANCHES)}
  aux['gsg/closest_distance'] = jnp.mean(jnp.min(distances, axis=-1))
  return loss, aux


@dataclasses.dataclass(frozen=True)
class LandscapeTrainer(Trainer):
  """The step core's Trainer with the landscape's loss (module docstring); everything else is inherited."""

  obj: Objective = None
  temperature: float = 0.05
  fast_infonce: bool = True  # False: the registry's ½[ℓ(z₁, z₂) + ℓ(z₂, z₁)] (the same value, twice the work).

  def loss(self, params, model_state, x, target_projections, rng, labels=None, loss_state=None):
    num_views = self.method.num_views
    out, updates = self.network.apply(
      self.network_variables(params, model_state), x, train=True, num_views=num_views, mutable=['batch_stats']
    )
    targets = out['projection'] if target_projections is None else target_projections
    to_views = lambda a: a.reshape(x.shape[0] // num_views, num_views, -1)
    if self.fast_infonce and self.obj.loss == 'infonce' and self.obj.predictor == 'none' and target_projections is None:
      z = to_views(out['projection'])
      loss, aux = nt_xent(z[:, 0], z[:, 1], self.temperature), {}
    elif 'guide' in out:
      loss, aux = image_guided_loss(to_views(out['prediction']), to_views(targets), to_views(out['guide']), rng)
    else:
      loss, aux, _ = self.method.loss_fn(to_views(out['prediction']), to_views(targets), rng, None)
    return loss, ({'loss': loss, **aux}, updates.get('batch_stats', {}), out, loss_state)


# ----------------------------------------------------------------------------- building the step core


def build_trainers(obj: Objective, cfg, m: int, steps_per_epoch: int, image_guide: bool = True):
  """(generic trainer, per-tower trainers or None) for ``obj``: registry method, SymReLU network, plain SGD.

  The per-tower trainers (two-encoder objectives only) share the generic trainer's optimiser, so one state
  serves all three; trainer t's network freezes the other tower.
  """
  method = methods.build_method(method_config(obj, cfg), cfg.num_epochs * steps_per_epoch)
  model_cfg = ml_collections.ConfigDict({'projection_dim': m})
  network = SymReLUNetwork(
    m,
    obj.towers,
    uses_batch_norm(obj, cfg.batch_norm),
    method.predictor.module(model_cfg, jnp.float32),
    guide=image_guide and obj.loss == 'gsg' and obj.towers == 2,
  )
  encoder_lr, predictor_lr = learning_rates(obj, cfg)
  opt = ml_collections.ConfigDict(
    {
      'optim': {
        'optimizer': 'sgd',
        'base_lr': encoder_lr * 256 / cfg.batch_size,
        'momentum': 0.0,
        'weight_decay': 0.0,
        'warmup_epochs': 0.0,
        'schedule': 'constant',
        'rules': (('predictor/.*', {'lr': predictor_lr, 'schedule': 'constant'}),),
      },
      'batch_size': cfg.batch_size,
      'num_epochs': cfg.num_epochs,
    }
  )
  tx, schedule = build_optimizer(opt, steps_per_epoch, method.optimizer_rules)
  if obj.towers == 2:
    tx = optax.chain(alternate_towers(), tx, alternate_towers())  # Gate the gradients and the updates.
  make = lambda net: LandscapeTrainer(
    net,
    method,
    data_lib.MaskViews(obj.views),
    tx,
    schedule,
    obj=obj,
    temperature=cfg.temperature,
    fast_infonce=cfg.fast_infonce,
  )
  per_tower = None
  if obj.towers == 2:
    per_tower = tuple(make(network.clone(frozen_tower=1 - t)) for t in range(2))
  return make(network), per_tower


def init_state(trainer: Trainer, rng, kernels) -> TrainState:
  """``trainer.init`` with the encoder kernels replaced by ``kernels`` [T, p, m] (then optimiser and extras)."""
  state = trainer.init(rng, (kernels.shape[1],))
  backbone = dict(state.params['backbone'])
  for t in range(kernels.shape[0]):
    backbone[f'tower_{t}'] = {**backbone[f'tower_{t}'], 'kernel': kernels[t]}
  params = {**state.params, 'backbone': backbone}
  extras = {
    'target': trainer.method.target.init(params, state.model_state),
    'predictor': trainer.method.predictor.init(params),
  }
  return state.replace(params=params, opt_state=trainer.tx.init(params), extras=extras)
