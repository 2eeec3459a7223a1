"""End to end: training runs, writes its outputs, resumes exactly, and refuses bad configs clearly."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from gsg_jax import train
from gsg_jax.training import build_trainer
from gsg_jax.training.checkpointing import Checkpointer
from conftest import REPO, tiny_config


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir, config):
  trainer = build_trainer(config, steps_per_epoch=8)
  like = jax.jit(trainer.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
  ckpt = Checkpointer(workdir, 1, 1)
  state = ckpt.restore(like)
  ckpt.close()
  return int(state.step), jax.device_get(state.params), jax.device_get(state.target_params)


@pytest.mark.parametrize('method,guided,predictor', [('simsiam', True, True), ('byol', False, False)])
def test_training_writes_outputs(tmp_path, method, guided, predictor):
  config = tiny_config(method, guided, **{'method.predictor': predictor})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == 16 and np.isfinite(summary['final_loss'])
  records = read_metrics(tmp_path)
  train_records = [r for r in records if r['kind'] == 'train']
  eval_records = [r for r in records if r['kind'] == 'eval']
  assert [r['step'] for r in train_records] == [4, 8, 12, 16]
  assert [r['step'] for r in eval_records] == [0, 8, 16]  # Random init, then every epoch.
  for key in ('loss', 'learning_rate', 'projection_std', 'images_per_second', 'epoch'):
    assert key in train_records[-1]
  assert 0 <= eval_records[-1]['knn_top1'] <= 100
  if guided:
    assert 'gsg/pair_11' in train_records[-1]
  if method == 'byol':
    assert train_records[-1]['ema_momentum'] == pytest.approx(0.99)
  assert os.path.isdir(tmp_path / 'checkpoints' / '16')
  assert json.load(open(tmp_path / 'config.json'))['method']['name'] == method
  assert os.listdir(tmp_path / 'tensorboard')


def test_resume_after_preemption_matches_uninterrupted_run(tmp_path, monkeypatch):
  config = tiny_config('byol', True, **{'checkpoint_every_steps': 100, 'log_every_steps': 2})
  full = train.train_and_evaluate(config, str(tmp_path / 'full'))

  # Second run: SIGTERM arrives while step 6 is logged; the loop checkpoints and stops.
  write = train.MetricsLogger.write

  def write_then_signal(self, step, metrics, kind='train'):
    write(self, step, metrics, kind)
    if step == 6 and kind == 'train':
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(train.MetricsLogger, 'write', write_then_signal)
  with pytest.raises(train.Preempted, match='after step 6'):
    train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  monkeypatch.setattr(train.MetricsLogger, 'write', write)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))

  assert resumed['steps'] == full['steps'] == 16
  step_a, params_a, target_a = final_params(str(tmp_path / 'full'), config)
  step_b, params_b, target_b = final_params(str(tmp_path / 'resumed'), config)
  assert step_a == step_b == 16
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params_a, params_b)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), target_a, target_b)
  assert resumed['final_loss'] == pytest.approx(full['final_loss'], rel=1e-4)


@pytest.mark.parametrize('key,value,message', [
    ('method.name', 'simclr', 'method.name'),
    ('model.backbone', 'vit', 'model.backbone'),
    ('optim.base_lr', -1.0, 'optim.base_lr'),
    ('batch_size', 1, 'batch_size'),
    ('data.source', 'nowhere', 'source'),
])
def test_bad_config_values_fail_clearly(tmp_path, key, value, message):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(tiny_config(**{key: value}), str(tmp_path))


def test_unwritable_workdir_fails_before_training(tmp_path):
  target = tmp_path / 'ro'
  target.mkdir()
  target.chmod(0o500)
  if os.access(target, os.W_OK):  # Running as root: permissions are not enforced.
    target = tmp_path / 'file_not_dir'
    target.write_text('x')
  with pytest.raises(PermissionError, match='not writable'):
    train.train_and_evaluate(tiny_config(), str(target / 'run'))


def run_main(*args):
  return subprocess.run([sys.executable, '-m', 'gsg_jax.main', *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_cli_rejects_misspelt_key_and_bad_value(tmp_path):
  result = run_main('--config=configs/simsiam_gsg.py:quick', f'--workdir={tmp_path}', '--config.methd.name=byol')
  assert result.returncode != 0 and 'methd' in result.stderr
  result = run_main('--config=configs/simsiam_gsg.py:quick', f'--workdir={tmp_path}', '--config.batch_size=abc')
  assert result.returncode != 0 and 'batch_size' in result.stderr
  result = run_main('--config=configs/simsiam_gsg.py:quick', f'--workdir={tmp_path}', '--config.method.name=moco')
  assert result.returncode == 1 and 'method.name' in result.stderr
  result = run_main('--config=configs/simsiam_gsg.py:nope', f'--workdir={tmp_path}')
  assert result.returncode != 0 and 'nope' in result.stderr
