"""DirectPred / DirectCopy: the rules against NumPy, the predictor component in the step, optimiser rules, extras."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gsg_jax.methods import directpred
from gsg_jax.training import build_trainer
from gsg_jax.training.checkpointing import Checkpointer


def np_directpred(f, eps):
  """W_p from the authors' recipe, written with NumPy: eigh, s⁺/s_max, √ + ε, clamp at 1e-4."""
  s, u = np.linalg.eigh(f)
  s = np.clip(s, 0, None) / s.max()
  p = np.maximum(np.sqrt(s) + eps, 1e-4)
  return u @ np.diag(p) @ u.T


def random_correlation(rng, d=6, n=40):
  f = rng.normal(size=(n, d)) * np.linspace(3, 0.1, d)
  return f, f.T @ f / n


def test_correlation_update_matches_numpy():
  rng = np.random.default_rng(0)
  f1, f2 = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
  first, count = directpred.update_correlation(jnp.full((5, 5), 7.0), 0, f1, rho=0.3)
  np.testing.assert_allclose(first, f1.T @ f1 / 12, rtol=1e-5)  # The first batch sets F̂.
  assert int(count) == 1
  second, count = directpred.update_correlation(first, count, f2, rho=0.3)
  np.testing.assert_allclose(second, 0.3 * (f1.T @ f1 / 12) + 0.7 * (f2.T @ f2 / 12), rtol=1e-5)
  assert int(count) == 2


@pytest.mark.parametrize('eps', [0.1, 0.0, -0.5])
def test_directpred_rule_matches_numpy(eps):
  _, f = random_correlation(np.random.default_rng(1))
  np.testing.assert_allclose(directpred.predictor_from_correlation(f, eps), np_directpred(f, eps), atol=1e-5)


def test_directcopy_rule_and_commutation():
  _, f = random_correlation(np.random.default_rng(2))
  w = np.asarray(directpred.directcopy_predictor(f, 0.1))
  np.testing.assert_allclose(w, f / np.linalg.eigvalsh(f).max() + 0.1 * np.eye(6), atol=1e-5)
  for rule in (directpred.predictor_from_correlation, directpred.directcopy_predictor):
    w = np.asarray(rule(f, 0.1))
    np.testing.assert_allclose(w, w.T, atol=1e-6)
    commutator = np.linalg.norm(w @ f - f @ w) / (np.linalg.norm(w) * np.linalg.norm(f))
    assert commutator < 1e-5, (rule.__name__, commutator)
  # The top eigenvalue of DirectPred's W_p is √1 + ε; a negative eigenvalue of F̂ (rounding) maps to ε.
  s = np.asarray(directpred.directpred_eigenvalues(jnp.array([-0.1, 0.25, 1.0]), 0.1))
  np.testing.assert_allclose(s, [0.1, 0.6, 1.1], rtol=1e-6)


@functools.lru_cache(maxsize=None)  # One compiled step per setting for the whole module (states are not donated).
def _trainer_and_batch(freq, predictor='directpred'):
  config = tiny_config('byol_directpred', **{'method.predictor': predictor, f'method.{predictor}.freq': freq})
  trainer = build_trainer(config, steps_per_epoch=8, num_classes=10)
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
    'label': rng.integers(0, 10, (16,), dtype=np.int32),
  }
  state = jax.jit(trainer.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
  return trainer, jax.jit(trainer.train_step), state, batch


def kernel(state):
  return np.asarray(state.params['predictor']['linear']['kernel'])


def test_set_every_step_the_predictor_is_the_rule_of_the_moving_correlation():
  trainer, step, state, batch = _trainer_and_batch(freq=1)
  for _ in range(3):
    state, metrics = step(state, batch, jax.random.key(1))
  correlation = np.asarray(state.extras['predictor'].correlation)
  assert int(state.extras['predictor'].count) == 3
  w = kernel(state).T
  np.testing.assert_allclose(w, np_directpred(correlation.astype(np.float64), 0.1), atol=2e-4)
  commutator = np.linalg.norm(w @ correlation - correlation @ w) / (np.linalg.norm(w) * np.linalg.norm(correlation))
  assert commutator < 1e-4
  assert float(metrics['predictor/wp_eig_max']) == pytest.approx(1.1, abs=1e-4)


def test_freq_above_one_trains_between_settings():
  """freq = 3: set after steps 0 and 3 (0-based), trained by SGD after steps 1 and 2."""
  trainer, step, state, batch = _trainer_and_batch(freq=3)
  kernels = []
  for _ in range(4):
    state, _ = step(state, batch, jax.random.key(1))
    kernels.append(kernel(state))
  w0 = kernels[0].T
  np.testing.assert_allclose(w0, w0.T, atol=1e-5)  # Just set: symmetric.
  assert not np.allclose(kernels[1], kernels[0]) and not np.allclose(kernels[2], kernels[1])  # SGD moved it.
  np.testing.assert_allclose(
    kernels[3].T, np_directpred(np.asarray(state.extras['predictor'].correlation, np.float64), 0.1), atol=2e-4
  )


def test_frozen_predictor_gets_no_optimizer_update_and_trained_ones_do():
  """freq = 1 adds the rule 'predictor/.*' → frozen: the optimiser leaves W_p alone (the rule then sets it)."""
  largest = lambda tree: max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(tree))
  for predictor, trained in (('directpred', False), ('linear', True)):
    trainer = build_trainer(tiny_config('byol_directpred', **{'method.predictor': predictor}), 8, num_classes=10)
    state = jax.jit(trainer.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
    grads = jax.tree_util.tree_map(jnp.ones_like, state.params)
    updates, _ = trainer.tx.update(grads, state.opt_state, state.params)
    assert (largest(updates['predictor']) > 0) == trained, predictor
    assert largest(updates['backbone']) > 0 and largest(updates['probe']) > 0


def test_checkpoint_with_extras_restores_exactly_and_resumes(tmp_path):
  trainer, step, state, batch = _trainer_and_batch(freq=1)
  for _ in range(2):
    state, _ = step(state, batch, jax.random.key(1))
  checkpointer = Checkpointer(str(tmp_path), 1, 1)
  checkpointer.save(2, state, force=True)
  checkpointer.close()
  uninterrupted, _ = step(state, batch, jax.random.key(1))
  fresh = jax.jit(trainer.init, static_argnums=1)(jax.random.key(5), (32, 32, 3))
  checkpointer = Checkpointer(str(tmp_path), 1, 1)
  restored = checkpointer.restore(fresh)
  checkpointer.close()
  same = lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  jax.tree_util.tree_map(same, restored, state)
  resumed, _ = step(restored, batch, jax.random.key(1))
  jax.tree_util.tree_map(same, resumed.extras, uninterrupted.extras)
  jax.tree_util.tree_map(same, resumed.params, uninterrupted.params)


def test_evaluate_reads_the_set_predictor_and_its_moving_correlation():
  from gsg_jax.evaluation.predictor import predictor_diagnostics

  trainer, step, state, batch = _trainer_and_batch(freq=1)
  for _ in range(2):
    state, _ = step(state, batch, jax.random.key(1))
  held_out = jax.random.normal(jax.random.key(3), (64, kernel(state).shape[0]))  # Not used: F̂ is stored.
  report = predictor_diagnostics(trainer, state, held_out)
  assert report['predictor/correlation_source'] == 'moving F̂ of training batches'
  assert report['predictor/off_diagonal_ratio'] < 1e-3  # W_p is diagonal in F̂'s eigenbasis.
  assert report['predictor/wp_eigenvalues'][0] == pytest.approx(1.1, abs=1e-3)
  eigenvalues = report['predictor/correlation_eigenvalues']
  assert eigenvalues == sorted(eigenvalues, reverse=True)
