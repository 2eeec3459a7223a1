"""The train state and the pure train step.

``build_trainer(config, steps_per_epoch)`` collects what is static about a
run (network, method, optimiser, augmentation) and returns a ``Trainer``
whose two functions are pure and jit-able:

    state = trainer.init(rng, image_shape)
    state, metrics = trainer.train_step(state, images_u8, rng)

One step:
  1. V augmented views of every image, on the accelerator, per-example keys;
     rows laid out image-major [B·V, h, w, C] so one pass serves all views
     with per-view BatchNorm statistics.
  2. Online network → predictions p (= projections when there is no
     predictor). Targets z: the online projections (SimSiam) or the EMA
     target network's (BYOL), always under ``jax.lax.stop_gradient``.
  3. loss = method.loss_fn(p, z, rng); gradients; optimiser update.
  4. BYOL: target ← m·target + (1 − m)·online.

Randomness is ``fold_in(rng, step)``: the same base key and step give the
same augmentations and GSG permutation, so a resumed run repeats exactly.
"""

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from gsg_jax import methods, models
from gsg_jax.data import augment
from gsg_jax.methods.similarity import l2_normalize
from gsg_jax.training.optim import build_optimizer


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  target_params: Any        # BYOL's EMA network ({'backbone', 'projector'}); {} for SimSiam.
  target_batch_stats: Any


@dataclasses.dataclass(frozen=True)
class Trainer:
  network: models.SiameseNetwork
  method: methods.Method
  tx: optax.GradientTransformation
  learning_rate: optax.Schedule
  ema_momentum: Callable[[jax.Array], jax.Array]
  augment_config: Any

  def init(self, rng: jax.Array, image_shape) -> TrainState:
    """A fresh state for images of ``image_shape`` (H, W, C) as they come from the data source."""
    crop = self.augment_config.crop_size
    variables = models.init_variables(self.network, rng, (crop, crop, image_shape[-1]))
    params, batch_stats = variables['params'], variables['batch_stats']
    target_params, target_stats = {}, {}
    if self.method.target == 'ema':
      # The target starts as a copy of the online backbone and projector.
      target_params = {k: params[k] for k in ('backbone', 'projector')}
      target_stats = {k: batch_stats[k] for k in ('backbone', 'projector')}
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, self.tx.init(params),
                      target_params, target_stats)

  def views(self, images, rng):
    """uint8 [B, H, W, C] → float [B·V, h, w, C], image-major."""
    v = augment.augment_batch(rng, images, self.method.num_views, self.augment_config)
    return v.reshape((-1,) + v.shape[2:])

  def target_projections(self, state: TrainState, x):
    """BYOL's target network on view rows ``x`` (training-mode BatchNorm); returns (projections, new stats)."""
    out, updates = self.network.apply(
        {'params': state.target_params, 'batch_stats': state.target_batch_stats}, x, train=True,
        num_views=self.method.num_views, with_predictor=False, mutable=['batch_stats'])
    return out['projection'], updates['batch_stats']

  def loss(self, params, batch_stats, x, target_projections, rng):
    """Loss of the online ``params`` on view rows ``x``.

    ``target_projections`` are the EMA network's, or None to use the online
    projections (SimSiam). Returns (loss, (aux, new batch stats, outputs)).
    """
    num_views = self.method.num_views
    out, updates = self.network.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True, num_views=num_views,
        with_predictor=self.method.use_predictor, mutable=['batch_stats'])
    targets = out['projection'] if target_projections is None else target_projections
    to_views = lambda a: a.reshape(x.shape[0] // num_views, num_views, -1)
    loss, aux = self.method.loss_fn(to_views(out['prediction']), jax.lax.stop_gradient(to_views(targets)), rng)
    return loss, (aux, updates['batch_stats'], out)

  def train_step(self, state: TrainState, images, rng):
    """One optimisation step on a global batch of uint8 images. Pure: (state, images, rng) → (state, metrics)."""
    augment_rng, loss_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    x = self.views(images, augment_rng)

    target_projections, target_stats = None, state.target_batch_stats
    if self.method.target == 'ema':
      target_projections, target_stats = self.target_projections(state, x)

    (loss, (aux, batch_stats, out)), grads = jax.value_and_grad(self.loss, has_aux=True)(
        state.params, state.batch_stats, x, target_projections, loss_rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    metrics = {'loss': loss, 'learning_rate': self.learning_rate(state.step),
               'projection_std': normalized_std(out['projection']), **aux}
    target_params = state.target_params
    if self.method.target == 'ema':
      momentum = self.ema_momentum(state.step)
      target_params = methods.ema_update(state.target_params, params, momentum)
      metrics['ema_momentum'] = momentum
    new_state = TrainState(state.step + 1, params, batch_stats, opt_state, target_params, target_stats)
    return new_state, metrics

  def encode(self, state: TrainState, images_u8):
    """Backbone features of uint8 images with evaluation preprocessing (running BN statistics)."""
    x = augment.preprocess_eval(images_u8, self.augment_config)
    return self.network.apply({'params': state.params, 'batch_stats': state.batch_stats}, x, method='encode')


def normalized_std(x):
  """SimSiam's collapse signal: mean over dimensions of the std over the batch of x/‖x‖ (≈1/√d healthy, 0 collapsed)."""
  return jnp.mean(jnp.std(l2_normalize(x), axis=0))


def build_trainer(config, steps_per_epoch: int) -> Trainer:
  """The static parts of a run described by ``config``."""
  method = methods.build_method(config.method)
  network = models.build_network(config.model, use_predictor=method.use_predictor)
  tx, schedule = build_optimizer(config, steps_per_epoch)
  momentum = methods.momentum_schedule(config.method.ema_momentum, config.method.ema_schedule,
                                       config.num_epochs * steps_per_epoch)
  return Trainer(network, method, tx, schedule, momentum, config.augment)
