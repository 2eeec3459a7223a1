"""Unlabelled image folders (listing, loading, training), load_encoder, gsg_jax.embed, and the report's t-SNE."""

import contextlib
import io
import json
import os
import sys
import types
import zipfile

import numpy as np
import pytest
from conftest import check_command_cases, tiny_config
from PIL import Image

from gsg_jax import data, errors
from gsg_jax.data import image_folder

CLASSES = ('cat', 'dog', 'emu')


def png(colour, size=16, seed=0):
  """A PNG of ``colour`` with some noise, as bytes."""
  noise = np.random.default_rng(seed).integers(-20, 21, (size, size, 3))
  image = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def write_flat(root, count, size=16):
  os.makedirs(root, exist_ok=True)
  for i in range(count):
    (root / f'img_{i:03d}.png').write_bytes(png((20 * (i % 12), 100, 200 - 10 * (i % 7)), size, seed=i))
  return root


def write_labelled(root, per_class, prefix='train', size=16):
  for c, name in enumerate(CLASSES):
    folder = root / prefix / name if prefix else root / name
    os.makedirs(folder, exist_ok=True)
    for i in range(per_class):
      (folder / f'{i:02d}.png').write_bytes(png((40 + 80 * c, 255 - 60 * c, 30 * c), size, seed=100 * c + i))
  return root


def data_config(**overrides):
  c = data.default_data_config()
  c.update({'source': 'folder', 'image_size': 16, **overrides})
  return c


def test_list_images_layouts(tmp_path):
  flat = write_flat(tmp_path / 'flat', 3)
  assert image_folder.list_images(str(flat)) == (['img_000.png', 'img_001.png', 'img_002.png'], None)
  with zipfile.ZipFile(tmp_path / 'flat.zip', 'w') as z:  # A zip of a folder: the folder is skipped.
    z.writestr('photos/b.png', png((1, 2, 3)))
    z.writestr('photos/a.png', png((1, 2, 3)))
  assert image_folder.list_images(str(tmp_path / 'flat.zip')) == (['photos/a.png', 'photos/b.png'], None)
  classes = write_labelled(tmp_path / 'classes', 2, prefix='')
  files, names = image_folder.list_images(str(classes))
  assert names == list(CLASSES) and files[:2] == ['cat/00.png', 'cat/01.png'] and len(files) == 6
  split = write_labelled(tmp_path / 'split', 1, prefix='val')
  assert image_folder.list_images(str(split), 'val') == (
    ['val/cat/00.png', 'val/dog/00.png', 'val/emu/00.png'],
    list(CLASSES),
  )
  assert image_folder.list_images(str(split))[1] == list(CLASSES)  # The only top folder is a wrapper.
  os.makedirs(tmp_path / 'empty' / 'a' / 'b')
  with pytest.raises(ValueError, match='no images in'):
    image_folder.list_images(str(tmp_path / 'empty'))


def test_unlabelled_folder_dataset(tmp_path):
  flat = str(write_flat(tmp_path / 'flat', 10))
  ds = data.load_dataset(data_config(path=flat, max_examples=8))
  assert ds.num_classes == 0 and ds.name == 'flat' and ds.train.num_examples == 8
  assert np.all(ds.train.split.labels == image_folder.UNLABELLED)
  assert len(ds.memory) == len(ds.heldout) == 0 and ds.heldout.images.shape[1:] == (16, 16, 3)
  evaluation = str(write_labelled(tmp_path / 'labelled', 4))
  ds = data.load_dataset(
    data_config(path=flat, eval_path=evaluation, heldout_fraction=0.25, cache_dir=str(tmp_path / 'cache'))
  )
  assert ds.num_classes == 0 and ds.train.num_examples == 10
  assert list(np.bincount(ds.memory.labels)) == [3, 3, 3] and list(np.bincount(ds.heldout.labels)) == [1, 1, 1]
  again = data.load_dataset(
    data_config(path=flat, eval_path=evaluation, heldout_fraction=0.25, cache_dir=str(tmp_path / 'cache'))
  )  # From the cache: two files.
  assert len(os.listdir(tmp_path / 'cache')) == 2
  np.testing.assert_array_equal(again.memory.images, ds.memory.images)
  with pytest.raises(ValueError, match='eval_path is for an unlabelled'):
    data.load_dataset(data_config(path=evaluation, eval_path=evaluation))
  with pytest.raises(FileNotFoundError, match='nowhere.*config.data.eval_path'):
    data.load_dataset(data_config(path=flat, eval_path=str(tmp_path / 'nowhere')))


def test_embed_output_checks(monkeypatch):
  from gsg_jax import embed

  assert embed.check_output('f.npz') == '.npz' and embed.check_output('f.PARQUET') == '.parquet'
  with pytest.raises(errors.ConfigError, match='must end in .npz or .parquet'):
    embed.check_output('f.csv')
  find_spec = embed.importlib.util.find_spec
  monkeypatch.setattr(embed.importlib.util, 'find_spec', lambda name: None if name == 'pyarrow' else find_spec(name))
  with pytest.raises(errors.ConfigError, match=r'needs pyarrow \(pip install pyarrow\); or write .npz'):
    embed.check_output('f.parquet')


# ---------------------------------------------------------------- training on an unlabelled folder


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp('images')
  return str(write_flat(root / 'flat', 96)), str(write_labelled(root / 'labelled', 8))


def train(workdir, **overrides):
  """Trains a tiny run (3 steps) on the flat folder; returns what it printed."""
  from gsg_jax.training import train_and_evaluate

  config = tiny_config(
    'simsiam', **{'data.source': 'folder', 'data.image_size': 16, 'batch_size': 32, 'num_epochs': 1, **overrides}
  )
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    train_and_evaluate(config, workdir)
  return printed.getvalue()


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope='module')
def run(folders, tmp_path_factory):
  """A run trained on the flat folder with the labelled folder as data.eval_path."""
  workdir = str(tmp_path_factory.mktemp('runs') / 'with_eval')
  printed = train(workdir, **{'data.path': folders[0], 'data.eval_path': folders[1], 'data.heldout_fraction': 0.25})
  return workdir, printed


@pytest.mark.slow  # Trains twice.
def test_training_on_an_unlabelled_folder(folders, run, tmp_path):
  workdir, printed = run
  assert 'Unlabelled training images: the online probe is off; the kNN monitor uses data.eval_path.' in printed
  rows = read_metrics(workdir)
  evals = [r for r in rows if r['kind'] == 'eval']
  assert [r['step'] for r in evals] == [0, 3] and all(0 <= r['knn_top1'] <= 100 for r in evals)
  assert not any('online_probe_top1' in r or 'probe/loss' in r for r in rows)

  alone = str(tmp_path / 'alone')
  printed = train(alone, **{'data.path': folders[0]})
  assert 'the online probe is off, and so is the kNN monitor (no data.eval_path)' in printed
  rows = read_metrics(alone)
  assert rows and not any(r['kind'] == 'eval' for r in rows)
  with open(os.path.join(alone, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['steps'] == 3 and summary['knn_top1'] is None and np.isfinite(summary['final_loss'])


@pytest.mark.slow  # Uses the trained run.
def test_load_encoder_embed_and_tsne(folders, run, tmp_path):
  import pyarrow.parquet as pq

  import gsg_jax
  from gsg_jax import embed, report
  from gsg_jax.encoder import load_encoder

  workdir, _ = run
  encoder = gsg_jax.load_encoder(workdir)
  assert (encoder.step, encoder.feature_dim, encoder.image_size) == (3, 64, 16)
  assert encoder.config.data.path == folders[0] and encoder.batch_size == encoder.config.eval.batch_size
  with pytest.raises(errors.MissingPathError, match=r'no checkpoint for step 2 .* available steps: \[3\]'):
    load_encoder(workdir, step=2)
  with pytest.raises(errors.MissingPathError, match='does not exist'):
    load_encoder(str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match=r'uint8 images \[N, H, W, 3\]'):
    encoder(np.zeros((2, 16, 16, 3), np.float32))
  assert encoder(np.zeros((0, 16, 16, 3), np.uint8)).shape == (0, 64)

  flat = embed.embed(encoder, folders[0], progress=False)
  files = sorted(os.listdir(folders[0]))
  assert flat['file_names'] == files and 'labels' not in flat
  expected = encoder(image_folder.decode_images(folders[0], files, 16))
  np.testing.assert_allclose(flat['features'], expected, rtol=1e-5, atol=1e-6)
  assert np.std(flat['features'], axis=0).mean() > 0  # Not a constant map.
  broken = write_flat(tmp_path / 'broken', 2)
  (broken / 'img_001.png').write_bytes(b'not an image')
  with pytest.raises(errors.ConfigError, match='cannot decode image .*img_001.png'):
    embed.embed(encoder, str(broken), progress=False)

  labelled = embed.embed(encoder, folders[1], split='train', progress=False)
  assert labelled['class_names'] == list(CLASSES) and list(np.bincount(labelled['labels'])) == [8, 8, 8]
  embed.write(labelled, str(tmp_path / 'out' / 'features.npz'), workdir, encoder.step)
  with np.load(tmp_path / 'out' / 'features.npz') as d:
    np.testing.assert_array_equal(d['features'], labelled['features'])
    assert list(d['class_names']) == list(CLASSES) and d['labels'].dtype == np.int32 and int(d['step']) == 3
    assert d['file_names'][0] == 'train/cat/00.png'
  embed.write(flat, str(tmp_path / 'flat.parquet'), workdir, encoder.step)
  table = pq.read_table(tmp_path / 'flat.parquet')
  assert table.column_names == ['file_name', 'feature']
  np.testing.assert_array_equal(np.stack(table.column('feature').to_numpy(zero_copy_only=False)), flat['features'])
  assert json.loads(table.schema.metadata[b'gsg_jax'])['step'] == 3

  # The report's t-SNE: the run's held-out split (data.eval_path's) through the encoder, when evaluation stored none.
  os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
  np.savez(os.path.join(workdir, 'eval', 'embedding_latest.npz'), embedding=np.zeros((6, 2)), labels=np.zeros(6))
  features, classes = report.heldout_features(workdir, step=3)
  heldout = data.load_dataset(encoder.config.data).heldout
  np.testing.assert_allclose(features, encoder(heldout.images), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(classes, heldout.labels)


@pytest.mark.slow  # Subprocesses.
def test_embed_command_line(folders, run, tmp_path):
  workdir, _ = run
  os.makedirs(tmp_path / 'no_images' / 'a' / 'b')
  out = tmp_path / 'features.npz'
  cases = {  # flags → the error line's text (None: succeeds).
    f'--workdir={workdir} --data={folders[0]} --out={out} --batch_size=40': None,
    f'--workdir={tmp_path}/nowhere --data={folders[0]} --out={out}': 'does not exist',
    f'--workdir={workdir} --step=9 --data={folders[0]} --out={out}': 'no checkpoint for step 9',
    f'--workdir={workdir} --data={tmp_path}/nowhere --out={out}': "--data '",
    f'--workdir={workdir} --data={tmp_path}/no_images --out={out}': 'no images in',
    f'--workdir={workdir} --data={folders[0]} --out={tmp_path}/features.csv': 'must end in .npz or .parquet',
  }
  ((stdout, stderr),) = check_command_cases('gsg_jax.embed', cases).values()
  assert 'Wrote' in stdout and 'embedded 96/96 images' in stderr, stderr[-2000:]
  with np.load(out) as d:
    assert d['features'].shape == (96, 64) and 'labels' not in d.files


# ---------------------------------------------------------------- the report's nonlinear embeddings


def test_tsne_keeps_clusters_and_umap_is_used_when_installed(tmp_path, monkeypatch):
  from gsg_jax import report

  rng = np.random.default_rng(0)
  centres = rng.normal(0, 5, (3, 8))
  classes = np.repeat(np.arange(3), 20)
  features = (centres[classes] + rng.normal(0, 1, (60, 8))).astype(np.float32)
  points = report.nonlinear_2d(features)
  assert points.shape == (60, 2) and points.dtype == np.float32
  distances = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(60) * 1e9
  assert np.mean(classes[distances.argmin(1)] == classes) > 0.9  # Nearest neighbours stay within their cluster.

  os.makedirs(tmp_path / 'eval')
  np.savez(tmp_path / 'eval' / 'embedding_latest.npz', embedding=np.zeros((60, 2)), labels=classes, features=features)
  stored, labels = report.heldout_features(str(tmp_path), step=0, max_points=50)
  assert stored.shape == (50, 8) and set(labels) == {0, 1, 2}

  calls = []

  class FakeUMAP:  # Stands in for umap-learn, which is optional: the report's call is what is checked.
    def __init__(self, n_components, random_state):
      calls.append((n_components, random_state))

    def fit_transform(self, x):
      return x[:, :2]

  monkeypatch.setitem(sys.modules, 'umap', types.SimpleNamespace(UMAP=FakeUMAP))
  path = str(tmp_path / 'umap.png')
  report.plot_nonlinear_embeddings([(stored, labels), (stored[:2], labels[:2])], ['a', 'b'], path, 'umap')
  assert calls == [(2, 0)]  # The second panel has too few points to embed.
  import matplotlib.image as mpimg

  assert mpimg.imread(path).shape[:2] == report.FIGURE_SIZE_PX[::-1]
