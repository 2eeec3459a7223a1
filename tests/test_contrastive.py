"""Contrastive losses (InfoNCE, DCL, DHEL, KCL) and the metrics of Koromilas et al. against NumPy/SciPy references.

The references are written row by row from the formulas (gsg_jax/methods/contrastive.py's docstring, the
authors' DHEL-KCL losses.py/utils.py/metrics.py), independently of the vectorised, masked implementation.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats
from conftest import REPO, tiny_config

from gsg_jax import methods
from gsg_jax.evaluation import diagnostics
from gsg_jax.methods import contrastive

CONTRASTIVE = ('infonce', 'dcl', 'dhel', 'kcl')
CONFIGS = {'infonce': 'simclr', 'dcl': 'dcl', 'dhel': 'dhel', 'kcl': 'kcl'}


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- NumPy references, one row at a time


def np_nt_xent(z1, z2, tau, drop_positive):
  rows = np.concatenate([unit(z1), unit(z2)])
  n = len(rows)
  losses = []
  for a in range(n):
    positive = (a + n // 2) % n
    others = [b for b in range(n) if b != a and not (drop_positive and b == positive)]
    denominator = sum(np.exp(rows[a] @ rows[b] / tau) for b in others)
    losses.append(-rows[a] @ rows[positive] / tau + np.log(denominator))
  return np.mean(losses)


def np_dhel(z1, z2, tau, include_augs=True):
  u, v = unit(z1), unit(z2)
  b = len(u)
  losses = []
  for i in range(b):
    energy = np.log(sum(np.exp(u[i] @ u[j] / tau) for j in range(b) if j != i))
    if include_augs:
      energy += np.log(sum(np.exp(v[i] @ v[j] / tau) for j in range(b) if j != i))
    losses.append(-u[i] @ v[i] / tau + energy)
  return np.mean(losses)


def np_kcl(z1, z2, t, gamma, kernel):
  """The authors' KCL: −alignment + γ·energy with their per-kernel alignment/energy functions (utils.py)."""
  u, v = unit(z1), unit(z2)
  pairs = [(i, j) for i in range(len(u)) for j in range(i + 1, len(u))]
  sq = lambda a, b: np.sum((a - b) ** 2)
  if kernel == 'gaussian':
    k_energy = k_align = lambda d2: np.exp(-t * d2)
  elif kernel == 'log':
    k_energy = lambda d2: -0.5 * np.log(t * d2 + 1)
    k_align = lambda d2: -np.log(t * d2 + 1)
  else:  # imq, c = t
    k_energy = k_align = lambda d2: t / np.sqrt(t**2 + d2)
  energy = sum(np.mean([k_energy(sq(x[i], x[j])) for i, j in pairs]) for x in (u, v))
  alignment = 2 * np.mean([k_align(sq(u[i], v[i])) for i in range(len(u))])
  return -alignment + gamma * energy


REFERENCES = {
  'infonce': (contrastive.infonce, lambda a, b: np_nt_xent(a, b, 0.5, False)),
  'dcl': (contrastive.dcl, lambda a, b: np_nt_xent(a, b, 0.5, True)),
  'dhel': (contrastive.dhel, lambda a, b: np_dhel(a, b, 0.3)),
  'dhel_one_view': (
    lambda a, b: contrastive.dhel(a, b, 0.3, include_augs=False),
    lambda a, b: np_dhel(a, b, 0.3, include_augs=False),
  ),
  'dcl_tau_0.2': (lambda a, b: contrastive.dcl(a, b, 0.2), lambda a, b: np_nt_xent(a, b, 0.2, True)),
  **{
    f'kcl_{k}': (lambda a, b, k=k: contrastive.kcl(a, b, 2.0, 16.0, k), lambda a, b, k=k: np_kcl(a, b, 2.0, 16.0, k))
    for k in contrastive.KERNELS
  },
  'kcl_gaussian_t1_gamma4': (
    lambda a, b: contrastive.kcl(a, b, 1.0, 4.0),
    lambda a, b: np_kcl(a, b, 1.0, 4.0, 'gaussian'),
  ),
}


def finite_difference_gradient(f, x, h=1e-6):
  grad = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[index] = h
    grad[index] = (f(x + step) - f(x - step)) / (2 * h)
  return grad


@pytest.mark.parametrize('name', sorted(REFERENCES))
def test_value_and_gradient_match_numpy(name):
  """Float32 values as in training; gradients of both views in float64 against central differences."""
  fn, reference = REFERENCES[name]
  rng = np.random.default_rng(len(name))
  z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  np.testing.assert_allclose(
    fn(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32)), reference(z1, z2), rtol=2e-5, atol=1e-5
  )
  with jax.enable_x64(True):
    g1, g2 = jax.grad(lambda a, b: fn(a, b), argnums=(0, 1))(jnp.asarray(z1), jnp.asarray(z2))
    assert g1.dtype == jnp.float64
  fd1 = finite_difference_gradient(lambda a: reference(a, z2), z1)
  fd2 = finite_difference_gradient(lambda b: reference(z1, b), z2)
  scale = max(np.abs(fd1).max(), np.abs(fd2).max())
  np.testing.assert_allclose(g1, fd1, rtol=1e-5, atol=1e-7 * scale)
  np.testing.assert_allclose(g2, fd2, rtol=1e-5, atol=1e-7 * scale)


def test_infonce_matches_optax_ntxent():
  """optax's NT-Xent takes the 2B embeddings and a label per row; both views of image i share label i."""
  rng = np.random.default_rng(0)
  for batch, dim, tau in ((8, 16, 0.5), (5, 3, 0.1), (32, 8, 1.0)):
    z1, z2 = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    expected = jax.jit(optax.losses.ntxent)(
      jnp.asarray(np.concatenate([z1, z2]), jnp.float32), jnp.asarray(np.tile(np.arange(batch), 2)), tau
    )
    value = jax.jit(contrastive.infonce)(z1.astype(np.float32), z2.astype(np.float32), tau)
    np.testing.assert_allclose(value, expected, rtol=2e-5)


def test_minimisers_and_masking():
  """Known values, and finite gradients where rows coincide (the masked self-similarities never enter)."""
  # Two antipodal images with identical views: InfoNCE's rows each see one positive (e^{2}) and two negatives
  # (e^{-2}), τ = 0.5.
  z = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
  np.testing.assert_allclose(contrastive.infonce(z, z), -2 + np.log(np.exp(2) + 2 * np.exp(-2)), atol=1e-6)
  np.testing.assert_allclose(contrastive.dcl(z, z), -2 + np.log(2 * np.exp(-2)), atol=1e-6)
  np.testing.assert_allclose(contrastive.kcl(z, z), -2 + 16 * 2 * np.exp(-8), atol=1e-6)
  duplicated = jnp.asarray(np.repeat(np.random.default_rng(1).normal(size=(3, 4)), 2, axis=0), jnp.float32)
  for name in CONTRASTIVE:
    fn = methods.LOSSES[name].fn
    views = jnp.stack([duplicated, duplicated], axis=1)
    value, grad = jax.jit(jax.value_and_grad(lambda x, fn=fn: fn(x, x, None)[0]))(views)
    assert bool(jnp.isfinite(value)) and bool(jnp.isfinite(grad).all()), name
  with pytest.raises(ValueError, match='kernel'):
    contrastive.kcl(z, z, kernel='riesz')


@pytest.mark.parametrize('name', CONTRASTIVE)
def test_registered_without_cutting_the_target_gradient(name):
  """Registry contract; the adapter ½[ℓ(p₁, z₂) + ℓ(p₂, z₁)] is ℓ(z₁, z₂) when p = z (online, no predictor)."""
  entry = methods.LOSSES[name]
  assert entry.cuts_target_gradient is False and entry.num_views == 2
  config = methods.default_method_config(name, 'online', 'none')
  assert dict(config[name]) == entry.defaults
  method = methods.build_method(config)
  assert method.name == name
  rng = np.random.default_rng(2)
  z = jnp.asarray(rng.normal(size=(8, 2, 6)), jnp.float32)
  pure = getattr(contrastive, name)
  value, aux = method.loss_fn(z, z, None, None)[:2]
  np.testing.assert_allclose(value, pure(z[:, 0], z[:, 1]), rtol=1e-6)
  np.testing.assert_allclose(
    aux['contrastive/positive_cos'], np.mean(np.sum(unit(z[:, 0]) * unit(z[:, 1]), -1)), rtol=1e-5
  )
  # Gradients reach both views' rows, through predictions and targets alike.
  grad_shared = jax.grad(lambda x: method.loss_fn(x, x, None, None)[0])(z)
  np.testing.assert_allclose(grad_shared, jax.grad(lambda x: pure(x[:, 0], x[:, 1]))(z), rtol=1e-5, atol=1e-7)
  p = jnp.asarray(rng.normal(size=(8, 2, 6)), jnp.float32)
  assert float(jnp.abs(jax.grad(lambda t: method.loss_fn(p, t, None, None)[0])(z)).min()) > 0
  # With an EMA target the targets are constants: ℓ(p₁, z₂) and ℓ(p₂, z₁) both push the predictions.
  value, _, _ = method.loss_fn(p, z, None, None)
  np.testing.assert_allclose(value, 0.5 * (pure(p[:, 0], z[:, 1]) + pure(p[:, 1], z[:, 0])), rtol=1e-6)
  assert methods.label(name, 'ema', 'mlp') == f'{name}+ema+mlp'
  assert methods.label('negcos', 'online', 'mlp') == 'simsiam'  # Existing labels unchanged.


def test_invalid_hyperparameters_are_rejected_before_training():
  from gsg_jax import config_lib

  config = config_lib.named_config('kcl', 'quick')
  config.method.kcl.kernel = 'riesz'
  with pytest.raises(ValueError, match='method.kcl.kernel'):
    config_lib.validate(config)
  config = config_lib.named_config('dhel', 'quick')
  config.method.dhel.temperature = 0.0
  with pytest.raises(ValueError, match='method.dhel.temperature'):
    config_lib.validate(config)


def test_configs_and_presets():
  from gsg_jax import config_lib
  from gsg_jax.training.optim import learning_rate_schedule

  for loss, name in CONFIGS.items():
    quick = config_lib.named_config(name, 'quick')
    config_lib.validate(quick)
    assert (quick.method.loss, quick.method.target, quick.method.predictor) == (loss, 'online', 'none')
    assert quick.data.source == 'builtin' and quick.model.backbone == 'convnet' and quick.optim.base_lr == 1.0
    assert quick.num_epochs == config_lib.make_config(preset='quick').num_epochs  # Equal epochs with SimSiam's.
    for preset, source in ((None, 'tfds'), ('cifar10_zip', 'folder')):
      c = config_lib.named_config(name, preset)
      config_lib.validate(c)
      assert (c.data.source, c.model.backbone, c.batch_size, c.num_epochs) == (source, 'resnet18', 256, 200)
      assert (c.model.projector_layers, c.model.projector_hidden_dim, c.model.projection_dim) == (2, 512, 128)
      assert c.model.projector_output_bn and c.optim.optimizer == 'sgd' and c.optim.weight_decay == 1e-6
      schedule = learning_rate_schedule(c, steps_per_epoch=100)
      np.testing.assert_allclose([schedule(0), schedule(200), schedule(20000)], [0.0, 1.0, 0.0], atol=1e-6)
  assert config_lib.named_config('dhel').method.dhel.temperature == 0.3
  assert config_lib.named_config('simclr').method.infonce.temperature == 0.5


@pytest.mark.parametrize('name', sorted(CONFIGS.values()))
def test_quick_config_trains(name):
  """configs/<name>.py:quick, shrunk: a few train steps change the parameters and keep the loss finite."""
  from gsg_jax.training import build_trainer

  config = tiny_config(
    name, batch_size=16, **{'model.width': 4, 'model.projection_dim': 16, 'model.projector_hidden_dim': 16}
  )
  trainer = build_trainer(config, steps_per_epoch=4, num_classes=10)
  state = trainer.init(jax.random.key(0), (32, 32, 3))
  step = jax.jit(trainer.train_step)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), 'label': rng.integers(0, 10, 16)}
  new, metrics = step(state, batch, jax.random.key(1))
  new, metrics = step(new, batch, jax.random.key(1))
  assert int(new.step) == 2 and np.isfinite(float(metrics['loss']))
  assert 'contrastive/positive_cos' in metrics
  before, after = state.params['projector'], new.params['projector']
  assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


@pytest.mark.slow
def test_logits_stay_sharded_by_rows():
  """On 8 simulated devices the compiled step holds [B/8, B] similarity blocks, never a replicated [B, B]."""
  script = (
    'import re, jax, jax.numpy as jnp, numpy as np\n'
    'from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n'
    'from gsg_jax import methods\n'
    'rows = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))\n'
    'for name in ("infonce", "dcl", "dhel", "kcl"):\n'
    '  fn = methods.build_method(methods.default_method_config(name, "online", "none")).loss_fn\n'
    '  g = jax.jit(jax.value_and_grad(lambda x: fn(x, x, None, None)[0]), in_shardings=rows)\n'
    '  text = g.lower(jax.ShapeDtypeStruct((512, 2, 24), jnp.float32, sharding=rows)).compile().as_text()\n'
    '  dots = set(re.findall(r"= f32\\[(\\d+),(\\d+)\\]\\S* dot\\(", text))\n'
    '  print(name, *sorted(f"{a}x{b}" for a, b in dots))\n'
  )
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  out = subprocess.run(
    [sys.executable, '-c', script], env=env, check=True, capture_output=True, text=True, timeout=300
  ).stdout
  lines = out.strip().splitlines()
  assert [line.split()[0] for line in lines] == ['infonce', 'dcl', 'dhel', 'kcl'], out
  for line in lines:
    shapes = {tuple(int(v) for v in s.split('x')) for s in line.split()[1:]}
    assert (64, 512) in shapes, line  # Each device's rows of a similarity block.
    assert all(a * b < 512 * 512 for a, b in shapes), line  # No full [B, B] block anywhere.


# ---------------------------------------------------------------- rank, RankMe, Wasserstein uniformity


def test_numerical_rank_matches_numpy():
  rng = np.random.default_rng(3)
  for n, d, r in ((200, 12, 5), (300, 20, 20), (10, 16, 3)):
    x = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) + 3.0
    expected = np.linalg.matrix_rank(np.cov(x.T), tol=1e-5)  # Koromilas et al.'s rank.
    assert diagnostics.numerical_rank(x.astype(np.float32), chunk_size=64) == expected == min(r, n - 1)
  assert diagnostics.numerical_rank(np.ones((50, 8), np.float32)) == 0


def test_rankme_matches_scipy():
  rng = np.random.default_rng(4)
  for x in (
    rng.normal(size=(300, 16)),
    rng.normal(size=(100, 4)) @ rng.normal(size=(4, 32)) + 1.0,
    rng.normal(size=(12, 40)) * np.linspace(0.1, 3, 40),
  ):
    s = scipy.linalg.svd(x, compute_uv=False)
    expected = np.exp(-np.sum((s / s.sum() + 1e-7) * np.log(s / s.sum() + 1e-7)))  # Garrido et al., eq. 1.
    authors = np.exp(scipy.stats.entropy(s / np.linalg.norm(s, 1) + 1e-7))  # Their code renormalises p.
    value = diagnostics.rankme(x.astype(np.float32), chunk_size=64)
    assert value == pytest.approx(expected, rel=1e-4) and value == pytest.approx(authors, rel=1e-4)
  assert diagnostics.rankme(np.tile(rng.normal(size=(1, 8)), (20, 1)).astype(np.float32)) == pytest.approx(1, abs=1e-3)


def test_inner_product_samples_follow_the_authors_density():
  """Koromilas et al.'s DotProdDist pdf with their d = dim − 1, integrated numerically, against our samples.

  Small dimensions tell an off-by-one in the dimension apart (dim = 3 is uniform on [−1, 1]); at dim = 128
  the second moment E[t²] = 1/dim does (a million samples: 0.14% noise against 0.8% for dim ± 1).
  """
  from scipy.special import gamma

  grid = np.linspace(-1, 1, 200_001)
  for dim in (3, 4, 6):
    d = dim - 1
    pdf = np.sqrt(1 - grid**2) ** (d - 2) * gamma((d + 1) / 2) / (gamma(d / 2) * np.sqrt(np.pi))
    cumulative = scipy.integrate.cumulative_trapezoid(pdf, grid, initial=0)
    assert cumulative[-1] == pytest.approx(1, abs=1e-4)
    cdf = lambda x, cumulative=cumulative: np.interp(x, grid, cumulative)
    assert scipy.stats.kstest(diagnostics.inner_product_samples(dim, 20000, seed=1), cdf).pvalue > 0.01, dim
    for wrong in (dim - 1, dim + 1):
      assert scipy.stats.kstest(diagnostics.inner_product_samples(wrong, 20000, seed=1), cdf).pvalue < 1e-4, wrong
  samples = diagnostics.inner_product_samples(128, 1_000_000, seed=2)
  assert np.mean(samples**2) == pytest.approx(1 / 128, rel=3e-3)
  # And against simulated pairs of uniform points on the sphere of R^16.
  g = np.random.default_rng(5).normal(size=(2, 4000, 16))
  simulated = np.sum(unit(g[0]) * unit(g[1]), -1)
  assert scipy.stats.wasserstein_distance(diagnostics.inner_product_samples(16, 4000), simulated) < 0.025


def test_wasserstein_uniformity_matches_scipy():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(300, 10)) * np.linspace(0.2, 2.0, 10) + 0.5
  z = unit(x)
  cosines = (z @ z.T)[np.triu_indices(300, k=1)]
  reference = scipy.stats.wasserstein_distance(cosines, diagnostics.inner_product_samples(10, 20000, seed=7))
  assert diagnostics.wasserstein_uniformity(x, num_samples=20000, seed=7) == pytest.approx(reference, rel=1e-9)
  u, v = rng.normal(size=57), rng.normal(size=31) * 2
  assert diagnostics.wasserstein_1d(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)
  # Uniform points score near 0; a collapsed set near E|1 − t| = 1; the sample of rows above max_points.
  uniform = diagnostics.wasserstein_uniformity(rng.normal(size=(1000, 16)))
  collapsed = diagnostics.wasserstein_uniformity(np.ones((100, 16)) + 1e-3 * rng.normal(size=(100, 16)))
  assert uniform < 0.01 and collapsed == pytest.approx(1.0, abs=0.01)
  big = rng.normal(size=(600, 8))
  sub = big[np.sort(np.random.default_rng(0).choice(600, 200, replace=False))]
  assert diagnostics.wasserstein_uniformity(big, max_points=200) == diagnostics.wasserstein_uniformity(sub)


def test_rank_report_keys():
  rng = np.random.default_rng(8)
  report = diagnostics.rank_report(rng.normal(size=(64, 12)), rng.normal(size=(64, 6)))
  assert set(report) == {
    'features/rank',
    'features/rankme',
    'projections/rank',
    'projections/rankme',
    'projections/wasserstein_uniformity',
  }
  assert report['features/rank'] == 12 and report['projections/rank'] == 6
  assert 1 <= report['projections/rankme'] <= 6 and report['projections/wasserstein_uniformity'] < 0.1


# ---------------------------------------------------------------- learning

# The kNN top-1 gain over the run's own random-init encoder after the whole quick run (6 epochs, 192 steps) that
# each loss must reach: 4-11 points below the worst seed measured (another processor behaves like another seed;
# benchmarks/results/quick/contrastive_learning_margins.json), and above a run that learns nothing (KCL, lr 0.1:
# +0.5). KCL is the exception: on an AVX-512 CPU its seed 0, this test's, gained +2.8 where seeds 1 and 2 gained
# +10.5 and +9.7 (quick/kcl_margins_avx512.json; +7.3 to +11.3 on an AVX2 CPU), so its margin sits between that
# worst run and one that learns nothing.
LEARNING_MARGINS = {'simclr': 6.0, 'dcl': 6.0, 'dhel': 4.0, 'kcl': 1.5}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(LEARNING_MARGINS))
def test_quick_config_learns_above_random_init(tmp_path, name):
  from gsg_jax import config_lib
  from gsg_jax.training import train_and_evaluate

  config = config_lib.named_config(name, 'quick')
  config.eval_every_epochs = 6
  config.distributed.mode = 'off'
  summary = train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    knn = {r['step']: r['knn_top1'] for r in map(json.loads, f) if r['kind'] == 'eval'}
  assert summary['steps'] == 192 and set(knn) == {0, 192}
  assert knn[192] > knn[0] + LEARNING_MARGINS[name], knn
  assert summary['projection_std'] > 0.02  # Spread out (1/√256 ≈ 0.0625), not collapsed.
