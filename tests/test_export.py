"""gsg_jax.export: the flax and torchvision layouts, the files and sidecar, and the command's mistakes.

The torchvision layout is checked without PyTorch: against a table of
torchvision's ResNet-18 state_dict, and by a NumPy forward pass in NCHW with
torchvision's semantics (its paddings, BatchNorm in eval mode) that must
reproduce the JAX backbone's features from the exported arrays alone.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_command_cases, tiny_config
from numpy.lib.stride_tricks import sliding_window_view

from gsg_jax import export, models
from gsg_jax.models.resnet import Bottleneck, ResNet

# torchvision.models.resnet18()'s modules with a CIFAR stem (conv1 3×3), fc removed: (name, shape). Every
# BatchNorm2d(C) contributes weight, bias, running_mean, running_var [C] and num_batches_tracked [].
RESNET18_MODULES = """
conv1 64,3,3,3
bn1 64
layer1.0.conv1 64,64,3,3
layer1.0.bn1 64
layer1.0.conv2 64,64,3,3
layer1.0.bn2 64
layer1.1.conv1 64,64,3,3
layer1.1.bn1 64
layer1.1.conv2 64,64,3,3
layer1.1.bn2 64
layer2.0.conv1 128,64,3,3
layer2.0.bn1 128
layer2.0.conv2 128,128,3,3
layer2.0.bn2 128
layer2.0.downsample.0 128,64,1,1
layer2.0.downsample.1 128
layer2.1.conv1 128,128,3,3
layer2.1.bn1 128
layer2.1.conv2 128,128,3,3
layer2.1.bn2 128
layer3.0.conv1 256,128,3,3
layer3.0.bn1 256
layer3.0.conv2 256,256,3,3
layer3.0.bn2 256
layer3.0.downsample.0 256,128,1,1
layer3.0.downsample.1 256
layer3.1.conv1 256,256,3,3
layer3.1.bn1 256
layer3.1.conv2 256,256,3,3
layer3.1.bn2 256
layer4.0.conv1 512,256,3,3
layer4.0.bn1 512
layer4.0.conv2 512,512,3,3
layer4.0.bn2 512
layer4.0.downsample.0 512,256,1,1
layer4.0.downsample.1 512
layer4.1.conv1 512,512,3,3
layer4.1.bn1 512
layer4.1.conv2 512,512,3,3
layer4.1.bn2 512
"""


def resnet18_state_dict_shapes() -> dict:
  table = {}
  for line in RESNET18_MODULES.strip().splitlines():
    name, shape = line.split()
    shape = tuple(int(s) for s in shape.split(','))
    if len(shape) == 4:
      table[f'{name}.weight'] = shape
    else:
      for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
        table[f'{name}.{leaf}'] = shape
      table[f'{name}.num_batches_tracked'] = ()
  return table


def model_config(backbone='resnet18', width=64, cifar_stem=True):
  c = tiny_config('simsiam', **{'model.backbone': backbone, 'model.width': width, 'model.cifar_stem': cifar_stem})
  return c.model


def random_like(shapes, seed=0):
  """Random arrays of ``shapes`` (a pytree of ShapeDtypeStructs), without running an initialiser (slow to compile).

  Kernels are He-scaled, N(0, 2/fan_in); BatchNorm scales, offsets and running statistics random but plausible
  (an initialiser's 1, 0, 0, 1 and zero residual scales would hide a mix-up); integers 0.
  """
  rng = np.random.default_rng(seed)
  draw = {
    'scale': lambda s: rng.uniform(0.5, 1.5, s),
    'bias': lambda s: rng.normal(0, 0.2, s),
    'mean': lambda s: rng.normal(0, 0.2, s),
    'var': lambda s: rng.uniform(0.5, 2.0, s),
  }

  def leaf(path, s):
    if not jnp.issubdtype(s.dtype, jnp.floating):
      return np.zeros(s.shape, s.dtype)
    name = getattr(path[-1], 'key', None) if path else None
    if len(s.shape) >= 2:
      return rng.normal(0, np.sqrt(2 / np.prod(s.shape[:-1])), s.shape).astype(s.dtype)
    return draw.get(name, lambda s: rng.normal(0, 0.1, s))(s.shape).astype(s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def test_torchvision_names_and_shapes_match_resnet18():
  backbone = models.build_backbone(model_config())
  shapes = jax.eval_shape(lambda: backbone.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=True))
  zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  arrays = export.torchvision_arrays(zeros['params'], zeros['batch_stats'], backbone.stage_sizes, step=3)
  expected = resnet18_state_dict_shapes()
  assert len(expected) == 120  # torchvision's 122 state_dict entries less fc.weight and fc.bias.
  assert {k: v.shape for k, v in arrays.items()} == expected
  assert arrays['layer3.0.bn2.num_batches_tracked'].dtype == np.int64
  assert int(arrays['bn1.num_batches_tracked']) == 3
  assert all(v.dtype == np.float32 for k, v in arrays.items() if not k.endswith('num_batches_tracked'))


# ---------------------------------------------------------------- torchvision's forward pass in NumPy, NCHW


def conv2d(x, weight, stride, padding):
  """PyTorch's Conv2d(bias=False): x [N, C, H, W], weight [O, C, kh, kw], zero padding on every side."""
  x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  patches = sliding_window_view(x, weight.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]  # [N, C, H', W', kh, kw]
  return np.einsum('nchwij,ocij->nohw', patches, weight)


def batch_norm(x, sd, name, eps=1e-5):
  """BatchNorm2d in eval mode: the running statistics."""
  c = lambda key: sd[f'{name}.{key}'].astype(np.float64)[:, None, None]
  return (x - c('running_mean')) / np.sqrt(c('running_var') + eps) * c('weight') + c('bias')


def max_pool(x):
  """MaxPool2d(3, stride 2, padding 1)."""
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  return sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))


def torchvision_resnet_features(sd, x):
  """torchvision.models.ResNet.forward up to the average pool (fc = Identity), from the state_dict ``sd``."""
  sd = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in sd.items()}
  relu = lambda a: np.maximum(a, 0)
  kernel = sd['conv1.weight'].shape[-1]
  imagenet_stem = kernel == 7
  x = relu(batch_norm(conv2d(x, sd['conv1.weight'], 2 if imagenet_stem else 1, kernel // 2), sd, 'bn1'))
  if imagenet_stem:
    x = max_pool(x)
  for layer in range(1, 5):
    block = 0
    while f'layer{layer}.{block}.conv1.weight' in sd:
      p = f'layer{layer}.{block}.'
      stride = 2 if layer > 1 and block == 0 else 1
      if p + 'conv3.weight' in sd:  # Bottleneck (torchvision v1.5: the stride on the 3×3 conv2).
        out = relu(batch_norm(conv2d(x, sd[p + 'conv1.weight'], 1, 0), sd, p + 'bn1'))
        out = relu(batch_norm(conv2d(out, sd[p + 'conv2.weight'], stride, 1), sd, p + 'bn2'))
        out = batch_norm(conv2d(out, sd[p + 'conv3.weight'], 1, 0), sd, p + 'bn3')
      else:
        out = relu(batch_norm(conv2d(x, sd[p + 'conv1.weight'], stride, 1), sd, p + 'bn1'))
        out = batch_norm(conv2d(out, sd[p + 'conv2.weight'], 1, 1), sd, p + 'bn2')
      identity = x
      if p + 'downsample.0.weight' in sd:
        identity = batch_norm(conv2d(x, sd[p + 'downsample.0.weight'], stride, 0), sd, p + 'downsample.1')
      x = relu(out + identity)
      block += 1
  return x.mean(axis=(2, 3))


@pytest.mark.parametrize(
  'network',
  [
    'resnet18',
    # ResNet-50's bottleneck blocks, 7×7 stem and max-pool, one block per stage: a quarter of the compilation.
    pytest.param('bottleneck', marks=pytest.mark.slow),
  ],
)
def test_torchvision_layout_reproduces_the_features(network):
  if network == 'resnet18':
    module, size = models.build_backbone(model_config('resnet18', width=4)), 16
  else:
    module, size = ResNet((1, 1, 1, 1), Bottleneck, width=2, cifar_stem=False), 32
  x = jax.random.normal(jax.random.key(1), (3, size, size, 3))
  variables = random_like(jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=True)))
  expected = np.asarray(jax.jit(lambda v: module.apply(v, x, train=False))(variables))
  sd = export.torchvision_arrays(variables['params'], variables['batch_stats'], module.stage_sizes, step=0)
  features = torchvision_resnet_features(sd, np.asarray(x, np.float64).transpose(0, 3, 1, 2))
  assert features.shape == expected.shape and np.std(expected) > 1e-2
  np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# ---------------------------------------------------------------- a run directory to export from


def make_run(root, step=7, **overrides) -> str:
  """A run directory (config.json, one checkpoint at ``step``) holding a random train state.

  Training adds nothing to what export reads, and a random state costs no compilation.
  """
  from gsg_jax.training import build_trainer
  from gsg_jax.training.checkpointing import Checkpointer

  config = tiny_config('simsiam', **{'data.builtin_num_train': 128, 'data.builtin_num_heldout': 64, **overrides})
  trainer = build_trainer(config, 2, 10)
  state = random_like(jax.eval_shape(lambda key: trainer.init(key, (32, 32, 3)), jax.random.key(0)), seed=1)
  workdir = str(root)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  checkpointer.save(step, state, force=True)
  checkpointer.close()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  return workdir


@pytest.fixture(scope='module')
def resnet_run(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('runs') / 'r18', **{'model.backbone': 'resnet18', 'model.width': 4})


@pytest.mark.slow  # Restores and compiles a ResNet-18.
def test_export_round_trip_and_sidecar(resnet_run, tmp_path):
  from flax import traverse_util

  from gsg_jax.encoder import Encoder, load_encoder
  from gsg_jax.run_dir import find_run

  encoder = load_encoder(resnet_run)
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8)
  features = encoder(images)

  out = str(tmp_path / 'flax' / 'r18.npz')  # A folder that does not exist yet.
  info = export.export(resnet_run, out, with_heads=True)
  arrays, sidecar = export.read_export(out)
  assert sidecar == json.loads(json.dumps(info)) and sidecar['parts'] == ['backbone', 'projector', 'predictor']
  assert sidecar['layout'] == 'flax' and sidecar['step'] == 7 and sidecar['format'] == 'npz'
  assert sidecar['architecture'] == {
    'backbone': 'resnet18',
    'width': 4,
    'cifar_stem': True,
    'feature_dim': 32,
    'dtype': 'float32',
  }
  assert sidecar['config']['model']['backbone'] == 'resnet18' and sidecar['gsg_jax_version']
  assert any(k.startswith('params/projector/') for k in arrays)
  assert any(k.startswith('batch_stats/predictor/') for k in arrays)
  # The file alone makes the same encoder.
  again = Encoder(find_run(resnet_run), traverse_util.unflatten_dict(arrays, sep='/'))(images)
  np.testing.assert_allclose(again, features, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # Subprocesses.
def test_export_command_line(resnet_run, tmp_path):
  from gsg_jax.run_dir import find_run, restore_variables

  no_checkpoint = tmp_path / 'no_checkpoint'
  no_checkpoint.mkdir()
  with open(os.path.join(resnet_run, 'config.json')) as f:
    config = json.load(f)
  (no_checkpoint / 'config.json').write_text(json.dumps(config))
  convnet = tmp_path / 'convnet'
  (convnet / 'checkpoints' / '3').mkdir(parents=True)
  config['model']['backbone'] = 'convnet'
  (convnet / 'config.json').write_text(json.dumps(config))
  out = str(tmp_path / 'r18.safetensors')
  cases = {  # flags → the error line's text (None: succeeds).
    f'--workdir={resnet_run} --out={out} --layout=torchvision': None,
    f'--workdir={tmp_path}/nowhere --out={out}': 'does not exist',
    f'--workdir={no_checkpoint} --out={out}': 'no checkpoint in',
    f'--workdir={resnet_run} --step=8 --out={out}': 'no checkpoint for step 8',
    f'--workdir={resnet_run} --out={out} --format=onnx': "unknown format 'onnx'",
    f'--workdir={resnet_run} --out={tmp_path}/r18.pt': 'cannot tell the format',
    f'--workdir={resnet_run} --out={out} --layout=caffe': "unknown layout 'caffe'",
    f'--workdir={resnet_run} --out={out} --layout=torchvision --with_heads': '--with_heads needs --layout=flax',
    f'--workdir={convnet} --out={out} --layout=torchvision': "this run's is 'convnet'",
  }
  ((stdout, _),) = check_command_cases('gsg_jax.export', cases).values()
  assert 'Wrote' in stdout
  arrays, sidecar = export.read_export(out)
  variables = restore_variables(find_run(resnet_run))
  expected = export.torchvision_arrays(
    variables['params']['backbone'], variables['batch_stats']['backbone'], (2, 2, 2, 2), step=7
  )
  assert arrays.keys() == expected.keys() and len(arrays) == 120
  for name, value in expected.items():
    assert arrays[name].shape == value.shape and arrays[name].dtype == value.dtype, name
    np.testing.assert_array_equal(arrays[name], value, err_msg=name)
  assert sidecar['layout'] == 'torchvision' and sidecar['format'] == 'safetensors' and sidecar['parts'] == ['backbone']
  assert 'Identity' in sidecar['torchvision']['fc'] and 'Conv2d(3, 4, 3, 1, 1' in sidecar['torchvision']['stem']
