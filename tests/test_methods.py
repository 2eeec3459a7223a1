"""Losses of SimSiam/BYOL and GSG against NumPy references; GSG's pair guide and gradient routing; EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsg_jax import methods
from gsg_jax.methods import gsg, simsiam


def np_cos(a, b):
  a = a / np.linalg.norm(a, axis=-1, keepdims=True)
  b = b / np.linalg.norm(b, axis=-1, keepdims=True)
  return np.sum(a * b, -1)


def np_gsg_loss(p, z, perm):
  """Row-by-row reference, written independently of the vectorised branches."""
  losses = []
  for i in range(p.shape[0]):
    views = {
      (1, 1): (p[i, 0], z[i, 0]),
      (1, 2): (p[i, 1], z[i, 1]),
      (2, 1): (p[perm[i], 2], z[perm[i], 2]),
      (2, 2): (p[perm[i], 3], z[perm[i], 3]),
    }
    pairs = [(a, b) for a in (1, 2) for b in (1, 2)]
    dist = [np.linalg.norm(views[(1, a)][1] - views[(2, b)][1]) for a, b in pairs]
    a, b = pairs[int(np.argmin(dist))]
    other = {1: 2, 2: 1}
    l1 = np_cos(views[(1, a)][0], views[(1, other[a])][1])
    l2 = np_cos(views[(2, b)][0], views[(2, other[b])][1])
    losses.append(-0.5 * (l1 + l2))
  return np.mean(losses)


def test_symmetric_loss_matches_numpy():
  rng = np.random.default_rng(0)
  p, z = rng.normal(size=(8, 2, 16)), rng.normal(size=(8, 2, 16))
  loss, _ = simsiam.symmetric_loss(jnp.asarray(p), jnp.asarray(z))
  expected = -0.5 * np.mean(np_cos(p[:, 0], z[:, 1]) + np_cos(p[:, 1], z[:, 0]))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # Perfect prediction reaches the minimum −1.
  loss, _ = simsiam.symmetric_loss(jnp.asarray(z[:, ::-1]), jnp.asarray(z))
  np.testing.assert_allclose(loss, -1.0, rtol=1e-6)


def test_guided_loss_matches_numpy():
  rng = np.random.default_rng(1)
  p, z = rng.normal(size=(16, 4, 8)), rng.normal(size=(16, 4, 8))
  key = jax.random.key(3)
  loss, aux = gsg.guided_loss(jnp.asarray(p), jnp.asarray(z), key)
  perm = np.asarray(jax.random.permutation(key, 16))
  np.testing.assert_allclose(loss, np_gsg_loss(p, z, perm), rtol=1e-5)
  np.testing.assert_allclose(sum(float(aux[f'gsg/pair_{a}{b}']) for a in (1, 2) for b in (1, 2)), 1.0, rtol=1e-6)


@pytest.mark.parametrize('branch', range(4))
def test_guide_picks_closest_pair_and_routes_gradient(branch):
  """Hand-built batch: the closest cross-image pair is known; only its two predictions get gradient."""
  a, b = gsg.BRANCHES[branch]
  d = 6
  base = np.eye(d)
  z = [base[0] * 5.0, base[1] * 5.0, base[2] * 5.0, base[3] * 5.0]  # z11, z12, z21, z22, all far apart.
  z[2 + b] = z[a] + 0.1 * base[5]  # Make (z1a, z2b) the closest pair.
  z = [jnp.asarray(v[None]) for v in z]
  choice, _ = gsg.closest_pair(*z)
  assert int(choice[0]) == branch
  p = [jnp.asarray(np.random.default_rng(i).normal(size=(1, d))) for i in range(4)]

  grads = jax.grad(lambda p: gsg.guided_loss_from_pairs(p, z)[0])(p)
  norms = [float(jnp.linalg.norm(g)) for g in grads]
  sources = {a, 2 + b}  # Indices of p1a and p2b in (p11, p12, p21, p22).
  for i in range(4):
    if i in sources:
      assert norms[i] > 1e-4, (branch, norms)
    else:
      assert norms[i] == 0.0, (branch, norms)
  # No gradient through the targets, whatever the selection.
  grads_z = jax.grad(lambda z: gsg.guided_loss_from_pairs(p, z)[0])(z)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in grads_z)


def test_guide_uses_raw_not_normalized_distance():
  # z21 points the same way as z11 but is far in norm; z22 is near in Euclidean distance.
  z11 = jnp.array([[1.0, 0.0]])
  z12 = jnp.array([[-9.0, 9.0]])
  z21 = jnp.array([[10.0, 0.0]])
  z22 = jnp.array([[0.8, 0.6]])
  choice, _ = gsg.closest_pair(z11, z12, z21, z22)
  assert int(choice[0]) == 1  # (z11, z22), although cos(z11, z21) = 1.


def test_ema_update_and_schedules():
  target = {'backbone': {'w': jnp.ones(3)}, 'projector': {'w': jnp.zeros(2)}}
  online = {'backbone': {'w': jnp.zeros(3)}, 'projector': {'w': jnp.ones(2)}, 'predictor': {'w': jnp.ones(1)}}
  new = methods.ema_update(target, online, 0.9)
  np.testing.assert_allclose(new['backbone']['w'], 0.9)
  np.testing.assert_allclose(new['projector']['w'], 0.1)
  assert set(new) == {'backbone', 'projector'}
  cosine = methods.momentum_schedule(0.996, 'cosine', 100)
  np.testing.assert_allclose([cosine(0), cosine(50), cosine(100)], [0.996, 0.998, 1.0], rtol=1e-6)
  np.testing.assert_allclose(methods.momentum_schedule(0.99, 'constant', 100)(37), 0.99)
  with pytest.raises(ValueError, match='ema.schedule'):
    methods.momentum_schedule(0.99, 'linear', 100)


def test_build_method_from_the_registries():
  from gsg_jax.methods import predictors, targets

  m = methods.build_method(methods.default_method_config('gsg', 'ema', 'none'), total_steps=10)
  assert (m.name, m.num_views) == ('byol+gsg (no predictor)', 4)
  assert isinstance(m.target, targets.EMATarget) and m.predictor.module(None, None) is None
  m = methods.build_method(methods.default_method_config('negcos', 'online', 'directpred'))
  assert (m.name, m.num_views) == ('simsiam+directpred', 2)
  assert isinstance(m.predictor, predictors.SetPredictor) and m.predictor.freq == 1
  assert m.optimizer_rules == (('predictor/.*', {'schedule': 'frozen'}),)  # Set every step: not trained.
  config = methods.default_method_config('negcos', 'online', 'directcopy')
  config.directcopy.freq = 5
  assert methods.build_method(config).optimizer_rules == ()  # Trained by SGD between settings.
  for key, bad in (('loss', 'simclr'), ('target', 'momentum'), ('predictor', 'True')):
    config = methods.default_method_config('negcos', 'online', 'mlp')
    config[key] = bad
    with pytest.raises(ValueError, match=f'method.{key}'):
      methods.build_method(config)
  # One list of allowed values: every registered component has its defaults in the config block.
  config = methods.default_method_config('negcos', 'online', 'mlp')
  for registry in (methods.LOSSES, methods.TARGETS, methods.PREDICTORS):
    for name, entry in registry.items():
      assert (name in config) == bool(entry.defaults)


def test_loss_gradient_is_finite_for_a_zero_prediction():
  """A predictor whose hidden units are all inactive outputs its bias, possibly exactly 0."""
  p = jnp.zeros((2, 2, 4)).at[1].set(1.0)
  z = jnp.ones((2, 2, 4))
  grads = jax.grad(lambda p: simsiam.symmetric_loss(p, z)[0])(p)
  assert bool(jnp.isfinite(grads).all())


@pytest.mark.parametrize('name', sorted(methods.LOSSES))
def test_every_loss_keeps_its_declared_stop_gradient_contract(name):
  """The train step passes targets with their gradient; each loss declares whether it cuts it, and does.

  Cutting: the gradient into the targets is exactly 0 and, with no predictor
  (predictions and targets the same array), the gradient is the predictions'
  alone. Not cutting (contrastive losses): the targets get a gradient.
  """
  loss = methods.LOSSES[name]
  config = methods.default_method_config(name, 'online', 'none')
  loss_fn = methods.build_method(config).loss_fn
  rng = jax.random.key(0)
  p = jax.random.normal(jax.random.key(1), (8, loss.num_views, 16))
  z = jax.random.normal(jax.random.key(2), (8, loss.num_views, 16))
  grad_z = jax.grad(lambda z: loss_fn(p, z, rng, None)[0])(z)
  shared = jax.grad(lambda x: loss_fn(x, x, rng, None)[0])(p)
  predictions_only = jax.grad(lambda x: loss_fn(x, p, rng, None)[0])(p)
  assert float(jnp.abs(predictions_only).max()) > 0
  if loss.cuts_target_gradient:
    assert float(jnp.abs(grad_z).max()) == 0.0
    np.testing.assert_allclose(shared, predictions_only, rtol=1e-6, atol=1e-7)
  else:
    assert float(jnp.abs(grad_z).max()) > 0
