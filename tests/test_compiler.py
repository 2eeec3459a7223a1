"""gsg_jax.compiler: which XLA options the programs get, and that the train step is compiled with them."""

import glob
import os
import types

import jax
import numpy as np
from conftest import tiny_config

from gsg_jax import compiler, parallel
from gsg_jax.training import build_trainer


def _dumped_ynn_fusion_types(dump_dir):
  """The YNNPACK fusion types in the debug options XLA dumped for the programs it compiled into ``dump_dir``."""
  types_seen = set()
  for path in glob.glob(os.path.join(dump_dir, '*.debug_options')):
    with open(path) as f:
      types_seen |= {line.split(':')[1].strip() for line in f if line.startswith(compiler.YNN_FUSION_TYPES)}
  return types_seen


def test_cpu_devices_get_the_options(monkeypatch):
  monkeypatch.delenv(compiler.ENV_SWITCH, raising=False)
  monkeypatch.setenv('XLA_FLAGS', '')
  assert compiler.options() == compiler.CPU_OPTIONS
  assert compiler.options(jax.devices('cpu')) == compiler.CPU_OPTIONS


def test_jaxlib_defaults_where_asked_or_not_a_cpu(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv(compiler.ENV_SWITCH, '0')
  assert compiler.options() is None
  monkeypatch.delenv(compiler.ENV_SWITCH)
  monkeypatch.setenv('XLA_FLAGS', f'--{compiler.YNN_FUSION_TYPES}=-individual_dot')  # The user's choice wins.
  assert compiler.options() is None
  monkeypatch.setenv('XLA_FLAGS', '')
  gpu = types.SimpleNamespace(platform='gpu')
  assert compiler.options([gpu]) is None
  assert compiler.options([jax.devices('cpu')[0], gpu]) is None


def test_a_jaxlib_that_rejects_the_options_falls_back_with_a_warning(monkeypatch, caplog):
  monkeypatch.delenv(compiler.ENV_SWITCH, raising=False)
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setattr(compiler, 'CPU_OPTIONS', {compiler.YNN_FUSION_TYPES: 'LIBRARY_FUSION_TYPE_NO_SUCH_TYPE'})
  with caplog.at_level('WARNING'):
    assert compiler.options() is None
  assert 'rejects the CPU compiler options' in caplog.text
  fallback = compiler.jit(lambda x: 2 * x)
  assert float(fallback(1.0)) == 2.0


def test_the_train_step_is_compiled_with_convolutions_out_of_ynnpack(monkeypatch, tmp_path):
  """The options reach XLA as meant: the repeated field holds exactly the dot and reduce fusions (its default
  also holds individual convolutions), read back from XLA's own dump of the train step's debug options."""
  monkeypatch.delenv(compiler.ENV_SWITCH, raising=False)
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setattr(compiler, 'CPU_OPTIONS', {**compiler.CPU_OPTIONS, 'xla_dump_to': str(tmp_path)})
  config = tiny_config('simsiam', batch_size=8)
  mesh = parallel.create_mesh(jax.devices('cpu')[:1])
  trainer = build_trainer(config, steps_per_epoch=10, num_classes=None)
  init, step = parallel.jit_trainer(trainer, mesh)
  for path in glob.glob(os.path.join(tmp_path, '*')):  # options()' own probe compiled a program with them.
    os.remove(path)
  state = init(jax.random.key(0), (32, 32, 3))
  assert _dumped_ynn_fusion_types(tmp_path) == set()  # init is plain jax.jit: jaxlib's defaults.
  images = np.zeros((8, 32, 32, 3), np.uint8)
  step.lower(state, {'image': images}, jax.random.key(1)).compile()
  assert _dumped_ynn_fusion_types(tmp_path) == {'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT', 'LIBRARY_FUSION_TYPE_REDUCE'}
