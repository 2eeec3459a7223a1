"""The train state and the pure, data-agnostic train step.

``Trainer(network, method, views, tx, learning_rate, probe)`` holds what is
static about a run; its two functions are pure and jit-able:

    state = trainer.init(rng, input_shape)
    state, metrics = trainer.train_step(state, batch, rng)

* ``network``: a Flax module called as ``apply(variables, rows, train=...,
  num_views=V, with_predictor=..., mutable=['batch_stats'])`` that returns
  ``{'features', 'projection', 'prediction'}`` (``gsg_jax.models.SiameseNetwork``
  for images; any module with that call for other data).
* ``method``: loss, target and predictor components (``gsg_jax.methods``).
* ``views``: the view maker (``gsg_jax.data.views``): batch → view rows
  [B·V, ...], example-major.

One step:
  1. V views of every example (``views``); the network over all rows (``models.train_pass``: in one pass, or
     ``views_per_pass`` views at a time, the same function).
  2. Targets: the target component's projections (BYOL's EMA network), or the
     online projections with their gradient (SimSiam); the loss puts what it
     treats as a target under ``jax.lax.stop_gradient`` itself.
  3. Objective = method loss (+ the online probe's cross-entropy on
     ``stop_gradient(features)`` when the probe is on: its gradient reaches
     only ``params['probe']``, so the representation never sees a label).
  4. Gradient of the objective with respect to ``params``; optimiser update.
  5. Component updates after the optimiser step: target (EMA), predictor
     (DirectPred's correlation and W_p), each on its own ``extras`` entry; a
     loss with state (``extras['loss']``) returns its new state from step 3,
     computed inside the loss under its own ``stop_gradient``.

Randomness is ``fold_in(rng, step)``: the same base key and step give the
same views and GSG permutation, so a resumed run repeats exactly.
"""

import dataclasses
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gsg_jax import methods, models
from gsg_jax.evaluation.diagnostics import normalized_std


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # Trained by the optimiser: backbone, projector, predictor, probe.
  model_state: Any  # The online network's BatchNorm statistics ({} for a net without BatchNorm).
  opt_state: Any
  extras: Any  # One entry per method component: 'target' (EMA network), 'predictor' (F̂, ...), 'loss' if stateful.


@dataclasses.dataclass(frozen=True)
class Trainer:
  network: nn.Module
  method: methods.Method
  views: Any
  tx: optax.GradientTransformation
  learning_rate: optax.Schedule
  probe: Optional[nn.Module] = None  # Online linear probe, params['probe']; None: off.

  def init(self, rng: jax.Array, input_shape) -> TrainState:
    """A fresh state for inputs of ``input_shape`` (one example, as the data source yields it)."""
    row_shape = tuple(self.views.row_shape(input_shape))
    variables = models.init_variables(self.network, rng, row_shape)
    params, model_state = dict(variables['params']), dict(variables.get('batch_stats', {}))
    if self.probe is not None:
      x = jnp.zeros((2,) + row_shape, jnp.float32)
      features = jax.eval_shape(lambda: self.network.apply(variables, x, train=False)['features'])
      params['probe'] = self.probe.init(jax.random.fold_in(rng, 1), jnp.zeros(features.shape))['params']
    extras = {'target': self.method.target.init(params, model_state), 'predictor': self.method.predictor.init(params)}
    if self.method.loss_init is not None:
      x = jnp.zeros((2,) + row_shape, jnp.float32)
      projection = jax.eval_shape(lambda: self.network.apply(variables, x, train=False)['projection'])
      extras['loss'] = self.method.loss_init(projection.shape[-1])
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, self.tx.init(params), extras)

  def network_variables(self, params, model_state) -> dict:
    """The network's variables from the trained ``params`` (which may hold the probe's too)."""
    return {'params': {k: v for k, v in params.items() if k != 'probe'}, 'batch_stats': model_state}

  def probe_logits(self, params, features):
    """The online probe's class scores for backbone ``features`` (gradient stops at the features)."""
    return self.probe.apply({'params': params['probe']}, jax.lax.stop_gradient(features))

  def loss(self, params, model_state, x, target_projections, rng, labels=None, loss_state=None):
    """Objective of ``params`` on view rows ``x``.

    ``target_projections``: the target component's, or None for the online
    projections; ``loss_state``: ``extras['loss']`` of a loss with state.
    Returns (objective, (aux, new model state, outputs, new loss state));
    ``aux['loss']`` is the method's loss alone.
    """
    num_views = self.method.num_views
    out, model_state = models.train_pass(self.network, self.network_variables(params, model_state), x, num_views)
    targets = out['projection'] if target_projections is None else target_projections
    to_views = lambda a: a.reshape(x.shape[0] // num_views, num_views, -1)
    with jax.named_scope('loss'):
      loss, aux, loss_state = self.method.loss_fn(to_views(out['prediction']), to_views(targets), rng, loss_state)
    aux = {'loss': loss, **aux}
    objective = loss
    if self.probe is not None:
      with jax.named_scope('probe'):
        logits = self.probe_logits(params, out['features'])
        view_labels = jnp.repeat(labels, num_views)  # Rows are example-major: b·V + v.
        probe_loss = optax.softmax_cross_entropy_with_integer_labels(logits, view_labels).mean()
      aux['probe/loss'] = probe_loss
      aux['probe/train_top1'] = 100.0 * jnp.mean(jnp.argmax(logits, -1) == view_labels)
      objective = loss + probe_loss
    return objective, (aux, model_state, out, loss_state)

  def train_step(self, state: TrainState, batch, rng):
    """One optimisation step on a global batch. Pure: (state, batch, rng) → (state, metrics).

    ``batch``: what ``views`` reads (images: ``'image'`` uint8 [B, H, W, C]), and
    ``'label'`` int32 [B] when the online probe is on (read by the probe only).
    """
    view_rng, loss_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    with jax.named_scope('views'):  # Named scopes label the profile's op time (benchmarks/train_step.py --profile).
      x = self.views(batch, view_rng, self.method.num_views)
    target, predictor = self.method.target, self.method.predictor
    with jax.named_scope('target_network'):
      target_projections, target_entry = target.projections(
        state.extras['target'], self.network, x, self.method.num_views
      )
    labels = batch['label'] if self.probe is not None else None
    (_, (aux, model_state, out, loss_state)), grads = jax.value_and_grad(self.loss, has_aux=True)(
      state.params, state.model_state, x, target_projections, loss_rng, labels, state.extras.get('loss')
    )
    with jax.named_scope('optimizer'):
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)

    with jax.named_scope('target'):
      target_entry, target_metrics = target.update(target_entry, params, state.step)
    with jax.named_scope('predictor_update'):
      predictor_entry, params, predictor_metrics = predictor.update(
        state.extras['predictor'], params, out['projection'], state.step
      )
    extras = {**state.extras, 'target': target_entry, 'predictor': predictor_entry}
    if loss_state is not None:
      extras['loss'] = loss_state
    metrics = {
      'learning_rate': self.learning_rate(state.step),
      'projection_std': normalized_std(out['projection']),
      **aux,
      **target_metrics,
      **predictor_metrics,
    }
    return TrainState(state.step + 1, params, model_state, opt_state, extras), metrics

  def encode(self, state: TrainState, inputs) -> dict:
    """``{'features', 'projection'}`` of ``inputs`` with evaluation preprocessing (running BatchNorm statistics)."""
    x = self.views.preprocess_eval(inputs)
    variables = self.network_variables(state.params, state.model_state)
    out = self.network.apply(variables, x, train=False, with_predictor=False)
    return {'features': out['features'], 'projection': out['projection']}
