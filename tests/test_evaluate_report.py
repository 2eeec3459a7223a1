"""gsg_jax.evaluate and gsg_jax.report on two tiny trained runs."""

import json
import os

import numpy as np
import pytest

from conftest import tiny_config

pytestmark = pytest.mark.slow  # Trains two runs end to end.

_SMALL = {'num_epochs': 1, 'data.builtin_num_train': 256, 'data.builtin_num_heldout': 128,
          'eval.batch_size': 128}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  from gsg_jax import train
  root = tmp_path_factory.mktemp('runs')
  a, b = str(root / 'simsiam_gsg'), str(root / 'byol_nopred')
  train.train_and_evaluate(tiny_config('simsiam_gsg', **_SMALL), a)
  train.train_and_evaluate(tiny_config('byol', **{'method.predictor': 'none', **_SMALL}), b)
  return a, b


@pytest.fixture(scope='module')
def evaluated(runs):
  from gsg_jax.evaluate import evaluate_run
  evaluate_run(runs[0], protocols=('linear',), linear_epochs=1, linear_batch_size=128)
  # A later evaluation of the same step keeps the earlier protocols' metrics in the JSON.
  return evaluate_run(runs[0], protocols=('knn', 'fast_linear', 'diagnostics'), fast_linear_epochs=5)


def test_evaluate_json(runs, evaluated):
  result = evaluated
  for key in ('method', 'dataset', 'backbone', 'epochs', 'batch_size', 'step', 'metrics'):
    assert key in result
  assert result['method'] == 'simsiam+gsg' and result['backbone'] == 'convnet' and result['batch_size'] == 64
  assert result['step'] == 4 and result['epochs'] == pytest.approx(1.0)
  m = result['metrics']
  for k in (20, 200):
    assert 0 <= m[f'knn_top1@{k}'] <= m[f'knn_top5@{k}'] <= 100
  assert 0 <= m['fast_linear_top1'] <= m['fast_linear_top5'] <= 100
  assert 0 <= m['linear_top1'] <= m['linear_top5'] <= 100  # Kept from the earlier call at this step.
  for name, dim in (('features', result['feature_dim']), ('projections', result['projection_dim'])):
    assert 1 <= m[f'{name}/effective_rank'] <= dim + 1e-3
    assert m[f'{name}/normalized_std'] >= 0
    sigma = m[f'{name}/singular_values']
    assert isinstance(sigma, list) and len(sigma) == min(dim, result['num_heldout'])
    assert all(x >= y for x, y in zip(sigma, sigma[1:]))
    assert 0 <= m[f'{name}/alignment'] <= 4
    assert m[f'{name}/uniformity'] <= 1e-6
  assert isinstance(m['collapsed'], bool)
  for k in ('alignment_all', 'alignment_top_k'):
    assert 0 <= m[f'predictor/{k}'] <= 1 + 1e-5
  assert 0 <= m['predictor/off_diagonal_ratio'] <= 1 + 1e-5
  with open(os.path.join(runs[0], 'eval', 'step_4.json')) as f:
    on_disk = json.load(f)
  with open(os.path.join(runs[0], 'eval', 'latest.json')) as f:
    assert json.load(f) == on_disk
  assert on_disk['metrics']['knn_top1@20'] == m['knn_top1@20']
  assert 0 <= on_disk['metrics']['linear_top1'] <= on_disk['metrics']['linear_top5'] <= 100
  assert set(on_disk['protocols']) == {'knn', 'fast_linear', 'diagnostics', 'linear'}


def test_report(runs, evaluated, tmp_path):
  import matplotlib.image as mpimg
  from gsg_jax import report
  out = str(tmp_path / 'report')
  text = report.make_report(list(runs), out)  # Run b has no eval yet: make_report evaluates it.
  assert os.path.exists(os.path.join(runs[1], 'eval', 'latest.json'))
  with open(os.path.join(out, 'report.md')) as f:
    assert f.read() == text
  rows = [line for line in text.splitlines() if line.startswith('| ') and 'convnet' in line]
  assert len(rows) == 2
  assert 'simsiam+gsg' in rows[0] and 'byol' in rows[1]
  width, height = report.FIGURE_SIZE_PX
  for name in ('loss_knn.png', 'spectra.png', 'embedding.png'):
    path = os.path.join(out, name)
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width), name
    assert np.std(pixels[..., :3]) > 0, name


def test_evaluate_empty_workdir(tmp_path):
  from gsg_jax.evaluate import evaluate_run
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate_run(str(tmp_path))


def test_evaluate_no_checkpoint(runs, tmp_path):
  import shutil
  from gsg_jax.evaluate import evaluate_run
  workdir = tmp_path / 'no_ckpt'
  workdir.mkdir()
  shutil.copy(os.path.join(runs[0], 'config.json'), workdir / 'config.json')
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*no_ckpt'):
    evaluate_run(str(workdir))
