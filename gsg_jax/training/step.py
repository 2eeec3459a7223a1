"""The train state and the pure train step.

``build_trainer(config, steps_per_epoch, num_classes)`` collects what is
static about a run (network, method, optimiser, augmentation, online probe)
and returns a ``Trainer`` whose two functions are pure and jit-able:

    state = trainer.init(rng, image_shape)
    state, metrics = trainer.train_step(state, batch, rng)

``batch`` is ``{'image': uint8 [B, H, W, C]}``, plus ``'label': int32 [B]``
when the online probe is on.

One step:
  1. V augmented views of every image, on the accelerator, per-example keys;
     rows laid out image-major [B·V, h, w, C] so one pass serves all views
     with per-view BatchNorm statistics.
  2. Online network → predictions p (= projections when there is no
     predictor). Targets z: the online projections (SimSiam) or the EMA
     target network's (BYOL). Each loss puts what it treats as a target under
     ``jax.lax.stop_gradient`` itself (explicit branches in the method's
     module), so a loss with gradients through both views (a contrastive
     one) needs no change here.
  3. loss = method.loss_fn(p, z, rng). With the online probe (solo-learn's
     protocol), a linear classifier on ``stop_gradient(features)`` of every
     view adds its cross-entropy: its gradient reaches only the probe's own
     parameters, so the representation never sees a label.
  4. Gradients; optimiser update. BYOL: target ← m·target + (1 − m)·online.

Randomness is ``fold_in(rng, step)``: the same base key and step give the
same augmentations and GSG permutation, so a resumed run repeats exactly.
"""

import dataclasses
from typing import Any, Callable, Optional

import flax
import flax.linen as nn
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
  probe: Optional[nn.Module] = None  # Online linear probe, params['probe']; None: off.

  def init(self, rng: jax.Array, image_shape) -> TrainState:
    """A fresh state for images of ``image_shape`` (H, W, C) as they come from the data source."""
    crop = self.augment_config.crop_size
    variables = models.init_variables(self.network, rng, (crop, crop, image_shape[-1]))
    params, batch_stats = dict(variables['params']), variables['batch_stats']
    if self.probe is not None:
      x = jnp.zeros((1, crop, crop, image_shape[-1]), jnp.float32)
      features = jax.eval_shape(lambda: self.network.apply(variables, x, method='encode'))
      params['probe'] = self.probe.init(jax.random.fold_in(rng, 1), jnp.zeros(features.shape))['params']
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

  def network_variables(self, params, batch_stats) -> dict:
    """The Siamese network's variables from the online ``params`` (which may hold the probe's too)."""
    return {'params': {k: v for k, v in params.items() if k != 'probe'}, 'batch_stats': batch_stats}

  def probe_logits(self, params, features):
    """The online probe's class scores for backbone ``features`` (gradient stops at the features)."""
    return self.probe.apply({'params': params['probe']}, jax.lax.stop_gradient(features))

  def loss(self, params, batch_stats, x, target_projections, rng, labels=None):
    """Objective of the online ``params`` on view rows ``x``.

    ``target_projections`` are the EMA network's, or None to use the online
    projections (SimSiam). The objective is the method's loss, plus the
    online probe's cross-entropy on ``labels`` when the probe is on.
    Returns (objective, (aux, new batch stats, outputs)); ``aux['loss']`` is
    the method's loss alone.
    """
    num_views = self.method.num_views
    out, updates = self.network.apply(
        self.network_variables(params, batch_stats), x, train=True, num_views=num_views,
        with_predictor=self.method.use_predictor, mutable=['batch_stats'])
    targets = out['projection'] if target_projections is None else target_projections
    to_views = lambda a: a.reshape(x.shape[0] // num_views, num_views, -1)
    loss, aux = self.method.loss_fn(to_views(out['prediction']), to_views(targets), rng)
    aux = {'loss': loss, **aux}
    objective = loss
    if self.probe is not None:
      logits = self.probe_logits(params, out['features'])
      view_labels = jnp.repeat(labels, num_views)  # Rows are image-major: b·V + v.
      probe_loss = optax.softmax_cross_entropy_with_integer_labels(logits, view_labels).mean()
      aux['probe/loss'] = probe_loss
      aux['probe/train_top1'] = 100.0 * jnp.mean(jnp.argmax(logits, -1) == view_labels)
      objective = loss + probe_loss
    return objective, (aux, updates['batch_stats'], out)

  def train_step(self, state: TrainState, batch, rng):
    """One optimisation step on a global batch. Pure: (state, batch, rng) → (state, metrics).

    ``batch['image']``: uint8 [B, H, W, C]; ``batch['label']``: int32 [B], read only by the online probe.
    """
    augment_rng, loss_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    x = self.views(batch['image'], augment_rng)
    labels = batch['label'] if self.probe is not None else None

    target_projections, target_stats = None, state.target_batch_stats
    if self.method.target == 'ema':
      target_projections, target_stats = self.target_projections(state, x)

    (_, (aux, batch_stats, out)), grads = jax.value_and_grad(self.loss, has_aux=True)(
        state.params, state.batch_stats, x, target_projections, loss_rng, labels)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    metrics = {'learning_rate': self.learning_rate(state.step),
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
    return self.network.apply(self.network_variables(state.params, state.batch_stats), x, method='encode')


def normalized_std(x):
  """SimSiam's collapse signal: mean over dimensions of the std over the batch of x/‖x‖ (≈1/√d healthy, 0 collapsed)."""
  return jnp.mean(jnp.std(l2_normalize(x), axis=0))


def build_trainer(config, steps_per_epoch: int, num_classes: Optional[int]) -> Trainer:
  """The static parts of a run described by ``config``.

  The online probe is built when ``config.online_probe.enabled`` and
  ``num_classes`` is given (the dataset's); batches must then carry labels.
  ``num_classes=None``: no probe, for unlabelled data.
  """
  method = methods.build_method(config.method)
  network = models.build_network(config.model, use_predictor=method.use_predictor)
  tx, schedule = build_optimizer(config, steps_per_epoch)
  momentum = methods.momentum_schedule(config.method.ema_momentum, config.method.ema_schedule,
                                       config.num_epochs * steps_per_epoch)
  probe = nn.Dense(num_classes) if config.online_probe.enabled and num_classes else None
  return Trainer(network, method, tx, schedule, momentum, config.augment, probe)
