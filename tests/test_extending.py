"""Extending gsg_jax from outside the package: a loss with state, a target, a predictor and an evaluator.

Everything below is written here, in a test module, and registered through the
public registries; nothing in ``gsg_jax/`` knows these names. Two training
steps and an evaluation then run them end to end. The README's "Adding a
component" section explains this file.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gsg_jax import methods
from gsg_jax.evaluation import evaluator
from gsg_jax.methods.similarity import cosine_similarity

pytestmark = pytest.mark.slow  # Compiles and trains a network; the fast tier has its own end-to-end test.

# ---------------------------------------------------------------- a loss with state


def centred_loss(predictions, targets, rng, centre, *, momentum):
  """SimSiam's symmetric loss against targets with a running centre removed (as DINO centres its teacher).

  ``centre`` [D] is the loss's state (``extras['loss']``); the new centre is a moving average of the targets,
  computed under ``stop_gradient``: the state never carries a gradient.
  """
  del rng
  targets = jax.lax.stop_gradient(targets)
  centred = targets - centre
  loss = -0.5 * jnp.mean(
    cosine_similarity(predictions[:, 0], centred[:, 1]) + cosine_similarity(predictions[:, 1], centred[:, 0])
  )
  new_centre = momentum * centre + (1.0 - momentum) * jnp.mean(targets, axis=(0, 1))
  return loss, {'toy/centre_norm': jnp.linalg.norm(new_centre)}, new_centre


CENTRED = methods.Loss(
  num_views=2,
  fn=centred_loss,
  cuts_target_gradient=True,
  defaults={'momentum': 0.9},
  init=lambda dim, momentum: jnp.zeros((dim,), jnp.float32),
)

# ---------------------------------------------------------------- a target: the network as it was initialised


class InitialTarget:
  """Targets from a frozen copy of the initial backbone and projector (never updated)."""

  def init(self, params, model_state):
    return {'params': {k: params[k] for k in ('backbone', 'projector')}, 'batch_stats': dict(model_state)}

  def projections(self, entry, network, x, num_views):
    variables = {'params': entry['params'], 'batch_stats': {k: entry['batch_stats'][k] for k in entry['params']}}
    out = network.apply(variables, x, train=False, num_views=num_views, with_predictor=False)
    return out['projection'], entry

  def update(self, entry, params, step):
    return entry, {}


# ---------------------------------------------------------------- a predictor: a learned diagonal scale


class Diagonal(nn.Module):
  """p = s ⊙ z, s learned (initialised to 1)."""

  dim: int

  @nn.compact
  def __call__(self, z, *, train: bool, num_views: int = 1):
    return z * self.param('scale', nn.initializers.ones, (self.dim,))


class DiagonalPredictor:
  """Trained by the optimiser like any layer; counts its updates in its own ``extras['predictor']`` entry."""

  optimizer_rules = ()

  def module(self, model_config, dtype):
    return Diagonal(model_config.projection_dim)

  def init(self, params):
    return {'updates': jnp.zeros((), jnp.int32)}

  def update(self, entry, params, projections, step):
    return {'updates': entry['updates'] + 1}, params, {}

  def matrix(self, params):
    return jnp.diag(params['predictor']['scale'])

  def correlation(self, entry):
    return None


# ---------------------------------------------------------------- an evaluator


class MeanFeatureNorm(evaluator.Evaluator):
  """The mean ℓ2 norm of the held-out backbone features."""

  name = 'mean_feature_norm'
  columns = (evaluator.Column('toy/mean_feature_norm', 'mean feature norm', '.3f'),)

  def evaluate(self, ctx, sink):
    features = ctx.heldout_outputs['features']
    return {'toy/mean_feature_norm': float(np.mean(np.linalg.norm(features, axis=1)))}


@pytest.fixture
def registered():
  """Register the four components for one test; the registries are as before afterwards."""
  methods.register_loss('centred', CENTRED)
  methods.register_target('initial', methods.Component(lambda config, total_steps: InitialTarget()))
  methods.register_predictor('diagonal', methods.Component(lambda config: DiagonalPredictor()))
  evaluator.register_evaluator(MeanFeatureNorm())
  yield
  for registry, name in (
    (methods.LOSSES, 'centred'),
    (methods.TARGETS, 'initial'),
    (methods.PREDICTORS, 'diagonal'),
    (evaluator.EVALUATORS, 'mean_feature_norm'),
  ):
    registry.pop(name)


def test_components_registered_from_outside_train_and_evaluate(registered, tmp_path):
  from gsg_jax import report
  from gsg_jax.evaluation.run import evaluate_run
  from gsg_jax.training import train_and_evaluate

  names = ('knn', 'mean_feature_norm')
  config = tiny_config(
    'simsiam',
    num_epochs=1,
    log_every_steps=1,
    **{
      'method.loss': 'centred',
      'method.target': 'initial',
      'method.predictor': 'diagonal',
      'method.centred.momentum': 0.5,
      'data.builtin_num_train': 128,
      'data.builtin_num_heldout': 64,
      'eval.batch_size': 64,
      'eval.monitor': names,
      'eval.protocols': names,
    },
  )
  assert methods.build_method(config.method).name == 'centred+initial+diagonal'
  workdir = str(tmp_path / 'run')
  summary = train_and_evaluate(config, workdir)
  assert summary['steps'] == 2 and summary['method'] == 'centred+initial+diagonal'

  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  trained = [r for r in records if r['kind'] == 'train']
  # The loss's state moved: zero before the first step, a moving average of the targets after it.
  assert [r['step'] for r in trained] == [1, 2] and all(r['toy/centre_norm'] > 0 for r in trained)
  assert trained[1]['toy/centre_norm'] != trained[0]['toy/centre_norm']
  evals = [r for r in records if r['kind'] == 'eval']
  assert [r['step'] for r in evals] == [0, 2] and all(r['toy/mean_feature_norm'] > 0 for r in evals)

  result = evaluate_run(workdir)  # The config's protocols: the toy evaluator among them.
  assert result['protocols'] == list(names)
  assert result['metrics']['toy/mean_feature_norm'] == pytest.approx(evals[-1]['toy/mean_feature_norm'], rel=1e-4)
  table = report.markdown_table([result], ['toy'])
  assert 'mean feature norm' in table.splitlines()[0]
  assert f'{result["metrics"]["toy/mean_feature_norm"]:.3f}' in table.splitlines()[2]


def test_a_name_taken_twice_is_refused(registered):
  with pytest.raises(ValueError, match="'centred' is already registered"):
    methods.register_loss('centred', methods.Loss(2, centred_loss, True))

  class Other(evaluator.Evaluator):
    name = 'mean_feature_norm'

  with pytest.raises(ValueError, match="'mean_feature_norm' is already registered"):
    evaluator.register_evaluator(Other())
