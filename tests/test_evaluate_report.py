"""gsg_jax.evaluate and gsg_jax.report on two tiny trained runs."""

import json
import os
import zipfile

import numpy as np
import pytest
from conftest import tiny_config

pytestmark = pytest.mark.slow  # Trains two runs end to end.

_SMALL = {
  'num_epochs': 1,
  'data.builtin_num_train': 256,
  'data.builtin_num_heldout': 128,
  'eval.batch_size': 128,
  'eval.monitor': ('knn', 'online_probe', 'floors'),
  'eval.protocols': ('knn', 'fast_linear', 'diagnostics', 'predictor', 'floors'),
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  from gsg_jax.training import train_and_evaluate

  root = tmp_path_factory.mktemp('runs')
  a, b = str(root / 'simsiam_gsg'), str(root / 'byol_nopred')
  train_and_evaluate(tiny_config('simsiam_gsg', **_SMALL), a)
  train_and_evaluate(tiny_config('byol', **{'method.predictor': 'none', **_SMALL}), b)
  return a, b


@pytest.fixture(scope='module')
def evaluated(runs):
  from gsg_jax.evaluation.run import evaluate_run

  # The ImageNet protocol, shrunk by overrides to one epoch at the run's resolution.
  evaluate_run(
    runs[0],
    protocols=('linear',),
    linear_protocol='imagenet',
    linear_overrides={'epochs': 1, 'batch_size': 128, 'crop_size': 16, 'eval_resize': 0},
  )
  # A later evaluation of the same step keeps the earlier protocols' metrics in the JSON.
  return evaluate_run(runs[0])  # The config's protocols.


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
  assert set(on_disk['protocols']) == {'knn', 'fast_linear', 'diagnostics', 'predictor', 'floors', 'linear'}
  protocol = on_disk['settings']['linear']  # Named, with its hyperparameters and the overrides used.
  assert (protocol['name'], protocol['optimizer'], protocol['trust_coefficient'], protocol['epochs']) == (
    'imagenet',
    'lars',
    0.001,
    1,
  )
  assert protocol['overrides'] == {'epochs': 1, 'batch_size': 128, 'crop_size': 16, 'eval_resize': 0}
  assert on_disk['settings']['fast_linear']['name'] == 'fast'
  # The report's t-SNE input: a fixed subset of the held-out features, stored so the report need not re-encode.
  from gsg_jax import report
  from gsg_jax.evaluation.run import EMBEDDING_FEATURES_MAX

  with np.load(os.path.join(runs[0], 'eval', 'embedding_latest.npz')) as d:
    rows = min(result['num_heldout'], EMBEDDING_FEATURES_MAX)
    assert d['features'].shape == (rows, result['feature_dim']) and d['feature_labels'].shape == (rows,)
    assert d['labels'].shape == (result['num_heldout'],)
  features, labels = report.heldout_features(runs[0], step=4, max_points=rows)
  assert features.shape == (rows, result['feature_dim']) and np.std(features) > 0


def test_knn_bank_temperature_and_floors(runs, evaluated):
  result, m = evaluated, evaluated['metrics']
  # The config's k and T (tiny preset: k = 20; T = 0.2, the default), T = 0.1 beside them; the whole split as bank.
  assert result['settings']['knn'] == {'k': 20, 'temperature': 0.2, 'ks': [20, 200], 'extra_temperatures': [0.1]}
  assert m['knn_top1'] == m['knn_top1@20'] and 0 <= m['knn_top1@20_t0.1'] <= m['knn_top5@20_t0.1'] <= 100
  assert m['knn_memory_examples'] == result['num_memory'] == 256 and m['fast_linear_train_examples'] == 256
  assert result['data']['memory']['kind'] == 'run' and result['data']['heldout']['num_examples'] == 128
  floors = {
    kind: {k: m[f'floors/{kind}/{k}'] for k in ('knn_top1', 'fast_linear_top1')}
    for kind in ('raw_pixels', 'random_init')
  }
  assert result['beats_raw_pixels'] == (
    m['knn_top1'] > floors['raw_pixels']['knn_top1'] and m['linear_top1'] > floors['raw_pixels']['fast_linear_top1']
  )
  # The monitor logged the same floors, and its step-0 kNN (the training's own random init) is the
  # random-init floor that evaluate derives from the seed.
  with open(os.path.join(runs[0], 'metrics.jsonl')) as f:
    evals = [r for r in map(json.loads, f) if r['kind'] == 'eval']
  assert evals[0]['step'] == 0 and evals[0]['knn_top1'] == pytest.approx(floors['random_init']['knn_top1'])
  for record in evals:
    assert record['knn_memory_examples'] == 256
    for kind in ('raw_pixels', 'random_init'):
      assert record[f'floors/{kind}/knn_top1'] == pytest.approx(floors[kind]['knn_top1'])
  # Computed once: the raw-pixel floor is shared by both runs, each architecture has its random-init floor.
  names = sorted(os.listdir(result['settings']['floors']['cache_dir']))
  assert len(names) == 3 and sum(n.startswith('floors-raw_pixels-') for n in names) == 1


def _image_folder(root, splits, rng):
  """``root/<split>/<class>/<i>.png`` (``<class>/<i>.png`` for split ''), colour-coded classes, 20×24 px."""
  from PIL import Image

  for split, count in splits:
    for name, colour in (('red', (220, 30, 30)), ('green', (30, 220, 30)), ('blue', (30, 30, 220))):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(count):
        pixels = np.clip(np.array(colour) + rng.integers(-40, 41, (20, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f'{i}.png')


def test_evaluate_on_other_labelled_data(runs, evaluated, tmp_path):
  from gsg_jax.evaluation.run import evaluate_run

  rng = np.random.default_rng(0)
  _image_folder(tmp_path / 'splits', (('train', 6), ('test', 3)), rng)  # <split>/<class>/<image>
  _image_folder(tmp_path / 'classes', (('', 2),), rng)  # <class>/<image>, zipped below
  held = tmp_path / 'held.zip'
  with zipfile.ZipFile(held, 'w') as z:
    for path in sorted((tmp_path / 'classes').rglob('*.png')):
      z.write(path, path.relative_to(tmp_path / 'classes').as_posix())
  with open(os.path.join(runs[0], 'eval', 'latest.json')) as f:
    own = f.read()
  # Floors off to keep the test short: they take the same code path as on the run's own data.
  result = evaluate_run(
    runs[0],
    protocols=('knn', 'fast_linear'),
    fast_linear_epochs=2,
    memory_data=str(tmp_path / 'splits'),
    heldout_data=str(held),
  )
  memory, heldout = result['data']['memory'], result['data']['heldout']
  assert (memory['kind'], memory['path'], memory['split'], memory['num_examples']) == (
    'folder',
    str(tmp_path / 'splits'),
    'train',
    18,
  )
  assert (heldout['kind'], heldout['path'], heldout['split'], heldout['num_examples']) == ('folder', str(held), None, 6)
  assert result['metrics']['knn_memory_examples'] == 18 and 0 <= result['metrics']['knn_top1'] <= 100
  assert result['metrics']['fast_linear_train_examples'] == 18
  assert not any(k.startswith('floors/') for k in result['metrics']) and 'beats_raw_pixels' not in result
  # Written beside the run's own evaluation, which stays the run's.
  assert os.path.dirname(result['eval_dir']) == os.path.join(runs[0], 'eval')
  with open(os.path.join(result['eval_dir'], 'latest.json')) as f:
    assert json.load(f)['data'] == result['data']
  with open(os.path.join(runs[0], 'eval', 'latest.json')) as f:
    assert f.read() == own
  # As held-out data, the same folder's test split: the default split folder (test, val or validation).
  from gsg_jax.evaluation import labelled

  test = labelled.open_data(str(tmp_path / 'splits'), 'heldout', 32, class_names=('blue', 'green', 'red'))
  assert (test.description['split'], test.num_examples, test.class_names) == ('test', 9, ('blue', 'green', 'red'))


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
  for row, workdir in zip(rows, runs):  # The training wall time, from summary.json.
    with open(os.path.join(workdir, 'summary.json')) as f:
      assert f'| {json.load(f)["train_seconds"] / 60:.1f} min |' in row
  width, height = report.FIGURE_SIZE_PX
  for name in ('loss_knn.png', 'spectra.png', 'embedding.png'):
    path = os.path.join(out, name)
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width), name
    assert np.std(pixels[..., :3]) > 0, name


def test_evaluate_empty_workdir(tmp_path):
  from gsg_jax.evaluation.run import evaluate_run

  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate_run(str(tmp_path))


def test_evaluate_no_checkpoint(runs, tmp_path):
  import shutil

  from gsg_jax.evaluation.run import evaluate_run

  workdir = tmp_path / 'no_ckpt'
  workdir.mkdir()
  shutil.copy(os.path.join(runs[0], 'config.json'), workdir / 'config.json')
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*no_ckpt'):
    evaluate_run(str(workdir))


def test_the_standard_probe_prints_its_progress(capsys):
  from gsg_jax.evaluation import linear

  log = linear.progress(epochs=3)
  for epoch in range(3):
    log(epoch, {'loss': 2.0 - epoch, 'train_top1': 10.0 * epoch, 'lr': 0.1})
  lines = capsys.readouterr().out.splitlines()
  assert [line.split('  ')[0] for line in lines] == [f'linear probe: epoch {n}/3' for n in (1, 2, 3)]
  assert 'train top-1 20.0%' in lines[-1] and lines[-1].endswith('ETA 0m00s')
