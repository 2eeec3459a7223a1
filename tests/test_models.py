"""Backbones, heads and per-view BatchNorm."""

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gsg_jax import models
from gsg_jax.models import resnet
from gsg_jax.models.heads import Predictor, Projector
from gsg_jax.models.normalization import ViewBatchNorm, standardize


def model_config(**overrides):
  c = ml_collections.ConfigDict(
    dict(
      backbone='resnet18',
      width=8,
      cifar_stem=True,
      dtype='float32',
      remat=False,
      projection_dim=32,
      projector_hidden_dim=32,
      projector_layers=3,
      projector_output_bn=True,
      predictor_hidden_dim=8,
      init='torch',
    )
  )
  c.update(overrides)
  return c


def test_view_batchnorm_normalises_each_view_over_its_own_batch():
  rng = np.random.default_rng(0)
  b, v, c = 16, 4, 3
  x = (
    rng.normal(size=(b, v, 5, 5, c)) * np.arange(1, v + 1)[None, :, None, None, None]
    + np.arange(v)[None, :, None, None, None]
  )
  rows = jnp.asarray(x.reshape(b * v, 5, 5, c), jnp.float32)
  bn = ViewBatchNorm(num_views=v)
  variables = bn.init(jax.random.key(0), rows)
  y, updates = bn.apply(variables, rows, mutable=['batch_stats'])
  mean = x.mean(axis=(0, 2, 3), keepdims=True)
  var = x.var(axis=(0, 2, 3), keepdims=True)
  expected = ((x - mean) / np.sqrt(var + 1e-5)).reshape(b * v, 5, 5, c)
  np.testing.assert_allclose(y, expected, atol=1e-4)
  # Running statistics: momentum 0.9 toward the mean of the per-view statistics.
  np.testing.assert_allclose(updates['batch_stats']['mean'], 0.1 * mean.reshape(v, c).mean(0), rtol=1e-4)
  # One view == ordinary BatchNorm over all rows.
  y1 = ViewBatchNorm(num_views=1).apply(variables, rows, mutable=['batch_stats'])[0]
  flat = x.reshape(b * v, 5, 5, c)
  np.testing.assert_allclose(y1, (flat - flat.mean((0, 1, 2))) / np.sqrt(flat.var((0, 1, 2)) + 1e-5), atol=1e-4)
  with pytest.raises(ValueError, match='views'):
    ViewBatchNorm(num_views=3).apply(variables, rows[:10], mutable=['batch_stats'])


def test_standardize_gradient_is_autodiffs():
  """The hand-written backward pass of ``standardize`` against JAX's derivative of the same forward computation,
  through every output (x̂, mean and variance), per view of a [B, V, H, W, C] array."""
  x = jax.random.normal(jax.random.key(0), (6, 2, 3, 3, 4)) * 2.0 + 0.5
  axes, eps = (0, 2, 3), 1e-5

  def plain(x):
    mean = x.mean(axes, keepdims=True)
    var = jnp.square(x - mean).mean(axes, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps), mean, var

  weights = [jax.random.normal(jax.random.key(i), shape) for i, shape in enumerate(((6, 2, 3, 3, 4), (1, 2, 1, 1, 4)))]

  def objective(fn, x):
    xhat, mean, var = fn(x)
    return jnp.sum(jnp.sin(xhat) * weights[0]) + jnp.sum(mean * weights[1]) + jnp.sum(jnp.sqrt(var) * weights[1])

  for got, want in zip(standardize(x, axes, eps), plain(x)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  got = jax.grad(functools.partial(objective, lambda x: standardize(x, axes, eps)))(x)
  want = jax.grad(functools.partial(objective, plain))(x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert float(jnp.max(jnp.abs(want))) > 0.1  # A gradient worth comparing.


@pytest.mark.parametrize('offset', [0.0, 10.0])
def test_standardize_gradient_keeps_float32_accuracy_off_centre(offset):
  """The backward pass reads x, not x − mean (``standardize``'s docstring): against the float64 gradient of the plain
  forward computation, its float32 rounding stays that of the plain float32 derivative, also where each channel's
  mean is ten times its standard deviation."""
  x = jax.random.normal(jax.random.key(3), (64, 6, 6, 5)) * jnp.linspace(0.5, 2.0, 5)
  x = x + offset * jnp.linspace(0.5, 2.0, 5)
  weights = jax.random.normal(jax.random.key(4), x.shape)
  axes, eps = (0, 1, 2), 1e-5

  def plain(x):
    mean = x.mean(axes, keepdims=True)
    var = jnp.square(x - mean).mean(axes, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps), mean, var

  def objective(fn, x, w):
    xhat, mean, var = fn(x)
    return jnp.sum(jax.nn.relu(1.3 * xhat + 0.1) * w) + jnp.sum(mean * w[0, 0, 0]) + jnp.sum(var * w[0, 0, 1])

  with jax.enable_x64(True):
    want = jax.grad(functools.partial(objective, plain))(x.astype(jnp.float64), weights.astype(jnp.float64))
    assert want.dtype == jnp.float64
  autodiff = jax.grad(functools.partial(objective, plain))(x, weights)
  got = jax.grad(functools.partial(objective, lambda x: standardize(x, axes, eps)))(x, weights)
  scale = float(jnp.max(jnp.abs(want)))
  autodiff_error = float(jnp.max(jnp.abs(autodiff - want))) / scale
  error = float(jnp.max(jnp.abs(got - want))) / scale
  assert error < max(4 * autodiff_error, 1e-6), (error, autodiff_error)


def test_relu_add_is_relu_of_the_sum_bit_for_bit():
  """Block outputs: relu_add's value and derivative equal relu(residual + y)'s, at ties and zeros too."""
  key_r, key_y, key_w = jax.random.split(jax.random.key(0), 3)
  r = jax.nn.relu(jax.random.normal(key_r, (4096,)))  # A residual stream after ReLU: a third of it exactly 0.
  y = jax.random.normal(key_y, (4096,)) * 1e3
  y = y.at[:512].set(-r[:512]).at[512:1024].set(0.0).at[1024:1100].set(-0.0)  # r = −y, y = 0, y = −0.
  w = jax.random.normal(key_w, (4096,))
  np.testing.assert_array_equal(resnet.relu_add(r, y), jax.nn.relu(r + y))

  def grads(fn):
    return jax.grad(lambda r, y: jnp.sum(fn(r, y) * w), argnums=(0, 1))(r, y)

  for got, want in zip(grads(resnet.relu_add), grads(lambda r, y: jax.nn.relu(r + y))):
    np.testing.assert_array_equal(got, want)
  assert float(jnp.sum(grads(resnet.relu_add)[0] == 0)) > 1024  # The ties took relu's derivative at 0, not ½.


def test_resnet_weight_gradient_copies_read_one_stored_activation():
  """relu_add's purpose, checked on XLA:CPU's compiled program: every [C, H, W, B] copy (the operand layout of a
  convolution's weight gradient) reads at most one activation-sized array. With relu(residual + y) as the block
  output, XLA recomputed the residual chain inside those copies, reading up to three such arrays at a stride."""
  if jax.default_backend() != 'cpu':
    pytest.skip('a property of the CPU compiler')
  from gsg_jax import compiler

  batch = 24  # Unlike every channel count (8-64), so that a batch-minor output shape is recognisable.
  net = models.build_backbone(model_config(width=8))
  x = jnp.ones((batch, 16, 16, 3))
  variables = net.init(jax.random.key(0), x, train=True)

  def loss(params):
    out, _ = net.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.sum(out**2)

  hlo = compiler.jit(jax.grad(loss)).lower(variables['params']).compile().as_text()
  bodies = dict(re.findall(r'\n(%[\w.-]+) .*?\{\n(.*?)\n\}', hlo, re.S))
  reads = []
  for shape, called in re.findall(r'= f32\[([\d,]+)\]\{[\d,]*\} fusion\(.*?\), kind=\w+, calls=(%[\w.-]+)', hlo):
    dims = [int(d) for d in shape.split(',')]
    body = bodies[called]
    if len(dims) == 4 and dims[-1] == batch and ' transpose(' in body:
      parameters = re.findall(r'= \w+\[([\d,]*)\]\{[\d,]*\} parameter\(', body)
      reads.append(sum(1 for p in parameters if p.count(',') == 3))
  assert len(reads) >= 8, reads  # The copies were found (one per weight gradient of the later stages at least).
  assert max(reads) == 1, reads


def test_view_order_does_not_matter_within_a_batch():
  """Per-view statistics: shuffling images inside a batch permutes the outputs and nothing else."""
  net = models.build_network(model_config(backbone='convnet'), Predictor(8, 32))
  variables = models.init_variables(net, jax.random.key(0), (16, 16, 3))
  x = jax.random.normal(jax.random.key(1), (8 * 2, 16, 16, 3))
  apply = jax.jit(lambda x: net.apply(variables, x, train=True, num_views=2, mutable=['batch_stats'])[0]['prediction'])
  out = apply(x)
  perm = np.array([3, 1, 0, 2, 7, 6, 5, 4])
  x_perm = x.reshape(8, 2, 16, 16, 3)[perm].reshape(16, 16, 16, 3)
  out_perm = apply(x_perm)
  np.testing.assert_allclose(out.reshape(8, 2, -1)[perm], out_perm.reshape(8, 2, -1), atol=1e-4)


@pytest.mark.parametrize(
  'backbone,cifar_stem,size,features',
  [('resnet18', True, 32, 64), ('resnet50', False, 32, 256), ('convnet', True, 32, 64)],
)
def test_backbone_shapes(backbone, cifar_stem, size, features):
  net = models.build_network(model_config(backbone=backbone, cifar_stem=cifar_stem))
  variables = models.init_variables(net, jax.random.key(0), (size, size, 3))
  out = jax.jit(lambda x: net.apply(variables, x, train=False))(jnp.ones((4, size, size, 3)))
  assert out['features'].shape == (4, features)
  assert out['projection'].shape == out['prediction'].shape == (4, 32)


def test_resnet_details():
  net = models.build_network(model_config(), Predictor(8, 32))
  params = models.init_variables(net, jax.random.key(0), (32, 32, 3))['params']
  stem = params['backbone']['stem_conv']['kernel']
  assert stem.shape == (3, 3, 3, 8)  # CIFAR stem: 3×3, stride 1 (spatial size kept, checked below).
  blocks = [v for k, v in params['backbone'].items() if k.startswith('BasicBlock')]
  assert len(blocks) == 8
  for block in blocks:  # Zero-initialised last BN scale in every residual branch.
    assert float(jnp.abs(block['ViewBatchNorm_1']['scale']).max()) == 0.0
  # Projector: three Linear layers; its last BN has no affine parameters (only the first two BNs have any).
  assert sorted(params['projector']) == ['Dense_0', 'Dense_1', 'Dense_2', 'ViewBatchNorm_0', 'ViewBatchNorm_1']
  assert 'bias' not in params['projector']['Dense_2']
  assert 'bias' in params['predictor']['Dense_1']  # The predictor's last Linear has a bias.


def test_no_predictor_means_prediction_is_projection():
  net = models.build_network(model_config(backbone='convnet'), predictor=None)
  variables = models.init_variables(net, jax.random.key(0), (16, 16, 3))
  assert 'predictor' not in variables['params']
  out = net.apply(variables, jnp.ones((2, 16, 16, 3)), train=False)
  np.testing.assert_array_equal(out['prediction'], out['projection'])


def _backbone_grads(**overrides):
  """Gradients of a two-block ResNet (the blocks are what remat wraps) on fixed inputs."""
  from gsg_jax.models.resnet import BasicBlock, ResNet

  net = ResNet((1, 1), BasicBlock, width=4, **overrides)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  variables = jax.jit(functools.partial(net.init, train=False))(jax.random.key(0), x)
  weights = jax.random.normal(jax.random.key(2), (8,))
  loss = lambda p: (
    net.apply(
      {'params': p, 'batch_stats': variables['batch_stats']}, x, train=True, num_views=2, mutable=['batch_stats']
    )[0]
    @ weights
  ).sum()
  return variables['params'], jax.jit(jax.grad(loss))(variables['params'])


def test_remat_recomputes_the_same_gradients():
  """Same parameter tree (checkpoints move between the two) and the same gradients up to float32 reassociation."""
  _, plain = _backbone_grads(remat=False)
  _, remat = _backbone_grads(remat=True)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), plain, remat)


def test_bfloat16_with_remat_keeps_float32_params_and_finite_grads():
  params, grads = _backbone_grads(dtype=jnp.bfloat16, remat=True)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))


def test_projector_without_output_bn_ends_with_a_biased_linear():
  """BYOL / DirectPred's projector: Linear-BN-ReLU-Linear, the last with a bias and no BN after it."""
  net = models.build_network(model_config(backbone='convnet', projector_layers=2, projector_output_bn=False))
  variables = models.init_variables(net, jax.random.key(0), (16, 16, 3))
  projector = variables['params']['projector']
  assert sorted(projector) == ['Dense_0', 'Dense_1', 'ViewBatchNorm_0'] and 'bias' in projector['Dense_1']


@pytest.mark.parametrize('scheme', ['torch', 'flax'])
def test_initialisation_standard_deviations(scheme):
  """Heads: PyTorch's nn.Linear default (weights, biases U(±1/√fan_in): std 1/√(3·fan_in)) or Flax's
  (lecun_normal, std 1/√fan_in; zero biases)."""
  other = 'flax' if scheme == 'torch' else 'torch'
  net = models.build_network(model_config(backbone='convnet', init=scheme), Predictor(8, 32, init_scheme=other))
  assert net.projector.init_scheme == net.predictor.init_scheme == scheme  # The network sets both heads' scheme.
  projector = Projector(1024, 1024, num_layers=2, output_bn=False, init_scheme=scheme)
  predictor = Predictor(256, 1024, init_scheme=scheme)
  projector, predictor = jax.jit(
    lambda key: (
      projector.init(key, jnp.zeros((2, 64)), train=False)['params'],
      predictor.init(key, jnp.zeros((2, 1024)), train=False)['params'],
    )
  )(jax.random.key(0))
  gain = 1 / np.sqrt(3) if scheme == 'torch' else 1.0
  # 2.6·10⁵ to 10⁶ weights: the relative standard error of a sample std is ≤ √((kurtosis − 1)/4n) ≤ 0.13 %
  # (kurtosis 1.8 uniform, < 3 truncated normal), so 1.5 % is over 10 standard errors.
  for kernel in (projector['Dense_1']['kernel'], predictor['Dense_0']['kernel'], predictor['Dense_1']['kernel']):
    np.testing.assert_allclose(np.std(kernel), gain / np.sqrt(kernel.shape[0]), rtol=0.015)
  for layer, fan_in in ((projector['Dense_1'], 1024), (predictor['Dense_1'], 256)):
    bias = np.asarray(layer['bias'])
    if scheme == 'torch':  # 1,024 draws: relative standard error √(0.8/4096) ≈ 1.4 %, so 10 % is 7 of them.
      assert np.abs(bias).max() <= 1 / np.sqrt(fan_in)
      np.testing.assert_allclose(np.std(bias), 1 / np.sqrt(3 * fan_in), rtol=0.1)
    else:
      assert not bias.any()


def test_resnet_convolutions_are_initialised_and_padded_as_pytorch():
  """torchvision's Kaiming normal (fan_out) initialisation, under either head scheme; and a stride-2 3×3
  convolution samples input pixels 0, 2, 4, … at its centre (PyTorch's padding 1; XLA's 'SAME' would pad the
  bottom/right only and centre it on 1, 3, 5, …)."""
  from gsg_jax.models.resnet import torch_conv

  kernel = torch_conv(64, (3, 3)).init(jax.random.key(0), jnp.zeros((1, 4, 4, 32)))['params']['kernel']
  # 3·3·32·64 weights: relative standard error of the std √(2/4n) ≈ 0.5 %, so 3 % is 6 of them.
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2 / (9 * 64)), rtol=0.03)
  x = jnp.arange(64.0).reshape(1, 8, 8, 1)
  centre = jnp.zeros((3, 3, 1, 1)).at[1, 1].set(1.0)
  y = torch_conv(1, (3, 3), 2).apply({'params': {'kernel': centre}}, x)
  np.testing.assert_array_equal(y[0, :, :, 0], x[0, ::2, ::2, 0])
