"""Optimiser rules from the config: first match wins, schedules, frozen groups, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gsg_jax.training import optim


def params():
  return {
    'backbone': {'kernel': jnp.ones((2, 2))},
    'predictor': {'Dense_0': {'kernel': jnp.ones((2, 2))}},
    'probe': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)},
  }


def first_update(config, extra_rules=(), steps=1):
  tx, schedule = optim.build_optimizer(config, steps_per_epoch=10, extra_rules=extra_rules)
  p = params()
  state = tx.init(p)
  grads = jax.tree_util.tree_map(jnp.ones_like, p)
  for _ in range(steps):
    updates, state = tx.update(grads, state, p)
  return updates, schedule


def test_rules_set_learning_rates_and_first_match_wins():
  config = tiny_config('simsiam', **{'optim.weight_decay': 0.0, 'optim.momentum': 0.0, 'num_epochs': 2})
  config.optim.rules = (
    ('probe/.*', {'lr': 0.5}),
    ('probe/bias', {'lr': 9.0}),
    ('predictor/.*', {'schedule': 'constant'}),
  )
  updates, schedule = first_update(config, steps=1)
  peak = config.optim.base_lr * config.batch_size / 256
  np.testing.assert_allclose(updates['backbone']['kernel'], -peak, rtol=1e-6)  # Base: cosine, step 0 = peak.
  np.testing.assert_allclose(updates['probe']['bias'], -0.5, rtol=1e-6)  # First rule, not the second.
  # After 15 of 20 steps the cosine base has decayed; the constant predictor has not.
  updates, _ = first_update(config, steps=16)
  np.testing.assert_allclose(updates['predictor']['Dense_0']['kernel'], -peak, rtol=1e-6)
  np.testing.assert_allclose(updates['backbone']['kernel'], -schedule(15), rtol=1e-5)
  assert float(schedule(15)) < 0.2 * peak


def test_method_rules_come_first_and_frozen_means_no_update():
  config = tiny_config('simsiam')
  updates, _ = first_update(config, extra_rules=(('predictor/.*', {'schedule': 'frozen'}),))
  assert float(jnp.abs(updates['predictor']['Dense_0']['kernel']).max()) == 0.0
  assert float(jnp.abs(updates['backbone']['kernel']).max()) > 0


@pytest.mark.parametrize(
  'rule,message',
  [
    (('predictor/.*', {'schedul': 'constant'}), 'schedul'),
    (('predictor/.*', {'schedule': 'linear'}), 'linear'),
    (('(unclosed', {'lr': 1.0}), 'regex'),
    (('probe/.*', {'optimizer': 'adam'}), 'adam'),
    (('probe/.*',), 'expected'),
  ],
)
def test_bad_rules_fail_naming_the_rule(rule, message):
  with pytest.raises(ValueError, match=message):
    optim.check_rules((rule,))
