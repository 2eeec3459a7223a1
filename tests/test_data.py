"""The data layer: builtin shapes, batching contract, image folders/zips, TFDS."""

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, cifar10_zip
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from gsg_jax import data
from gsg_jax.data import synthetic
from gsg_jax.data.pipeline import InMemoryTrainData, Split, epoch_permutation


def data_config(**overrides):
  c = data.default_data_config()
  c.update(overrides)
  return c


def digests(images):
  return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


# ---------------------------------------------------------------- builtin


@pytest.fixture(scope='module')
def builtin():
  return data.load_dataset(data_config(builtin_num_train=2000, builtin_num_heldout=500))


def test_default_config_has_every_key():
  c = data.default_data_config()
  expected = {
    'source',
    'image_size',
    'builtin_num_train',
    'builtin_num_heldout',
    'builtin_seed',
    'path',
    'heldout_split',
    'heldout_fraction',
    'split_seed',
    'max_examples',
    'cache_dir',
    'eval_path',
    'tfds_name',
    'data_dir',
    'train_split',
    'in_memory_max_examples',
    'eval_max_examples',
    'stream_image_size',
    'stream_views',
    'stream_crop_scale',
    'stream_crop_ratio',
    'shuffle_buffer',
  }
  assert set(c.keys()) == expected
  assert (c.source, c.builtin_num_train, c.builtin_num_heldout, c.heldout_fraction) == ('builtin', 8192, 2048, 0.1)


def test_builtin_shapes_dtypes_and_labels(builtin):
  assert builtin.name == 'builtin' and builtin.num_classes == 10
  assert builtin.memory.images.shape == (2000, 32, 32, 3) and builtin.memory.images.dtype == np.uint8
  assert builtin.heldout.images.shape == (500, 32, 32, 3)
  assert builtin.memory.labels.dtype == np.int32
  assert builtin.train.num_examples == 2000 and builtin.train.image_shape == (32, 32, 3)
  for split in (builtin.memory, builtin.heldout):
    counts = np.bincount(split.labels, minlength=10)
    assert len(counts) == 10 and counts.max() - counts.min() <= 1  # All classes, balanced.
  assert builtin.memory.images.std() > 40  # Not blank.


def test_builtin_is_deterministic_by_seed():
  a = synthetic.generate(200, 3)
  b = synthetic.generate(200, 3)
  c = synthetic.generate(200, 4)
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert not np.array_equal(a.images, c.images)


def test_builtin_heldout_is_disjoint_from_train(builtin):
  assert not digests(builtin.memory.images) & digests(builtin.heldout.images)


def test_builtin_colour_does_not_depend_on_class(builtin):
  """Per-class mean chroma agrees within sampling error: colours are drawn independently of the shape.

  (Mean luminance does depend on the class: the shape is the brighter part and areas differ.)
  """
  colours = builtin.memory.images.astype(np.float32).mean(axis=(1, 2))
  chroma = colours - (colours @ np.array([0.299, 0.587, 0.114]))[:, None]
  labels = builtin.memory.labels
  overall = chroma.mean(axis=0)
  for c in range(10):
    members = chroma[labels == c]
    standard_error = members.std(axis=0) / np.sqrt(len(members))
    assert (np.abs(members.mean(axis=0) - overall) < 4.5 * standard_error).all(), c


def test_builtin_shapes_are_distinct():
  n = synthetic.NUM_CLASSES
  masks = (
    synthetic.coverage(np.arange(n), np.full((n, 2), 16.0), np.full(n, 12.0), np.zeros(n), np.zeros(n, bool), 32) > 0.5
  )
  area = masks.mean(axis=(1, 2))
  assert (area > 0.05).all(), area
  for i in range(n):
    for j in range(i + 1, n):
      iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
      assert iou < 0.8, (synthetic.SHAPES[i], synthetic.SHAPES[j], iou)


def test_invalid_config_names_the_key():
  with pytest.raises(ValueError, match='source'):
    data.load_dataset(data_config(source='nope'))
  with pytest.raises(ValueError, match='builtin_num_train'):
    data.load_dataset(data_config(builtin_num_train=0))


# ---------------------------------------------------------------- batches


def indexed_split(n):
  """Image i holds i in its pixels, so batches can be decoded back to indices."""
  images = np.zeros((n, 4, 4, 3), np.uint8)
  images[:, :, :, 0] = (np.arange(n) % 256)[:, None, None]
  images[:, :, :, 1] = (np.arange(n) // 256)[:, None, None]
  return Split(images, (1000 + np.arange(n)).astype(np.int32))  # Label i + 1000: checks labels travel along.


def indices_of(batch):
  batch = np.asarray(batch)
  return batch[:, 0, 0, 0].astype(int) + 256 * batch[:, 0, 0, 1].astype(int)


def take(iterator, k):
  """The images of the next ``k`` batches."""
  return [np.asarray(next(iterator)['image']) for _ in range(k)]


def test_batches_shape_dtype_sharding():
  train = InMemoryTrainData(indexed_split(100))
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  sharding = NamedSharding(mesh, P('data'))
  batch = next(train.batches(8 * jax.device_count(), seed=0, sharding=sharding))
  images, labels = batch['image'], batch['label']
  assert images.shape == (8 * jax.device_count(), 4, 4, 3) and images.dtype == np.uint8
  assert labels.shape == (8 * jax.device_count(),) and labels.dtype == np.int32
  assert images.sharding == labels.sharding == sharding
  np.testing.assert_array_equal(np.asarray(labels), 1000 + indices_of(images))
  plain = next(train.batches(8, seed=0))
  assert plain['image'].shape == (8, 4, 4, 3)


def test_batches_are_deterministic_and_follow_the_permutation():
  train = InMemoryTrainData(indexed_split(50))
  first = take(train.batches(8, seed=5), 10)
  second = take(train.batches(8, seed=5), 10)
  other = take(train.batches(8, seed=6), 10)
  assert all(np.array_equal(a, b) for a, b in zip(first, second))
  assert not all(np.array_equal(a, b) for a, b in zip(first, other))
  steps = train.steps_per_epoch(8)
  assert steps == 6
  for k, batch in enumerate(first):
    epoch, i = divmod(k, steps)
    np.testing.assert_array_equal(indices_of(batch), epoch_permutation(5, epoch, 50)[i * 8 : (i + 1) * 8])


def test_resume_continues_an_uninterrupted_run():
  train = InMemoryTrainData(indexed_split(50))
  full = take(train.batches(8, seed=1), 15)
  for start in (0, 4, 6, 11):
    resumed = take(train.batches(8, seed=1, start_step=start), 15 - start)
    for a, b in zip(full[start:], resumed):
      np.testing.assert_array_equal(a, b)


def test_epoch_visits_every_example_once():
  train = InMemoryTrainData(indexed_split(50))
  steps = train.steps_per_epoch(8)
  for epoch in range(2):
    seen = np.concatenate([indices_of(b) for b in take(train.batches(8, seed=2, start_step=epoch * steps), steps)])
    assert len(seen) == len(set(seen)) == 48  # Two dropped: 50 = 6·8 + 2.


def test_batch_size_checks():
  train = InMemoryTrainData(indexed_split(10))
  with pytest.raises(ValueError, match='batch_size'):
    next(train.batches(11))


def test_batches_on_four_devices_match_one_device():
  """4 simulated CPU devices: the batch is split over them, values equal the single-device run.

  (Also checks, in this fresh process, that importing the data package does not import TensorFlow.)
  """
  code = textwrap.dedent("""
      import sys
      import jax, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import gsg_jax.data
      from gsg_jax.data.pipeline import InMemoryTrainData, Split, epoch_permutation
      assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules  # Imported lazily.
      assert jax.device_count() == 4
      images = np.arange(40 * 2 * 2 * 3, dtype=np.uint32).reshape(40, 2, 2, 3).astype(np.uint8)
      train = InMemoryTrainData(Split(images, np.zeros(40, np.int32)))
      sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ('data',)), P('data'))
      it = train.batches(8, seed=3, start_step=4, sharding=sharding)
      for k in range(4, 8):
        batch = next(it)['image']
        assert batch.sharding == sharding and len(batch.addressable_shards) == 4
        assert {s.data.shape for s in batch.addressable_shards} == {(2, 2, 2, 3)}
        e, i = divmod(k, 5)
        np.testing.assert_array_equal(np.asarray(batch), images[epoch_permutation(3, e, 40)[i * 8:(i + 1) * 8]])
      print('ok')
  """)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------- image folders

CLASSES = ('cat', 'dog', 'emu')


def class_colour(c):
  return (40 + 80 * c, 255 - 60 * c, 30 * c)


def write_image(target, c, size, fmt):
  Image.new('RGB', (size, size), class_colour(c)).save(target, format=fmt)


def make_folder(root, per_class=10, size=32, splits=('train',), fmt='PNG'):
  for split in splits:
    for c, name in enumerate(CLASSES):
      os.makedirs(root / split / name, exist_ok=True)
      for i in range(per_class):
        write_image(root / split / name / f'{i:03d}.{fmt.lower()}', c, size, fmt)
  return root


def make_zip(path, per_class=10, size=32, fmt='JPEG', corrupt=None):
  with zipfile.ZipFile(path, 'w') as z:
    for c, name in enumerate(CLASSES):
      for i in range(per_class):
        buffer = io.BytesIO()
        write_image(buffer, c, size, fmt)
        z.writestr(f'train/{name}/{i:03d}.jpg', buffer.getvalue())
    if corrupt:
      z.writestr(corrupt, b'not an image')
  return path


def check_colours(split, tolerance):
  for image, label in zip(split.images, split.labels):
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_colour(label), atol=tolerance)


def test_folder_loads_labels_and_stratified_heldout(tmp_path):
  root = make_folder(tmp_path / 'imgs', per_class=10, size=40)
  ds = data.load_dataset(data_config(source='folder', path=str(root), heldout_fraction=0.2))
  assert ds.num_classes == 3 and ds.name == 'imgs'
  assert ds.memory.images.shape == (24, 32, 32, 3) and ds.heldout.images.shape == (6, 32, 32, 3)
  assert list(np.bincount(ds.heldout.labels)) == [2, 2, 2]
  assert list(np.bincount(ds.memory.labels)) == [8, 8, 8]
  check_colours(ds.memory, 1)  # PNG, resized 40 → 32: class colour preserved.
  check_colours(ds.heldout, 1)
  assert isinstance(ds.train, InMemoryTrainData) and ds.train.num_examples == 24


def test_folder_heldout_split_folder_and_max_examples(tmp_path):
  root = make_folder(tmp_path / 'imgs', per_class=10, splits=('train', 'val'))
  ds = data.load_dataset(data_config(source='folder', path=str(root), heldout_split='val', max_examples=15))
  assert len(ds.heldout.labels) == 30 and len(ds.memory.labels) == 15
  assert list(np.bincount(ds.memory.labels)) == [5, 5, 5]


def test_zip_loads_and_matches_selection_seed(tmp_path):
  path = make_zip(tmp_path / 'imgs.zip', per_class=10)
  config = data_config(source='folder', path=str(path), heldout_fraction=0.1)
  ds = data.load_dataset(config)
  assert ds.num_classes == 3 and len(ds.memory.labels) == 27 and list(np.bincount(ds.heldout.labels)) == [1, 1, 1]
  check_colours(ds.memory, 4)  # JPEG: approximately.
  again = data.load_dataset(config)
  np.testing.assert_array_equal(ds.heldout.images, again.heldout.images)


def test_folder_cache_round_trip(tmp_path):
  path = make_zip(tmp_path / 'imgs.zip', per_class=5)
  config = data_config(source='folder', path=str(path), heldout_fraction=0.2, cache_dir=str(tmp_path / 'cache'))
  first = data.load_dataset(config)
  assert len(os.listdir(tmp_path / 'cache')) == 1
  second = data.load_dataset(config)
  np.testing.assert_array_equal(first.memory.images, second.memory.images)
  np.testing.assert_array_equal(first.heldout.labels, second.heldout.labels)


def test_folder_errors_name_the_problem(tmp_path):
  load = lambda path, **kw: data.load_dataset(data_config(source='folder', path=str(path), **kw))
  with pytest.raises(FileNotFoundError, match='nowhere'):
    load(tmp_path / 'nowhere')
  make_folder(tmp_path / 'a', per_class=2)
  with pytest.raises(ValueError, match="no split folder 'val'"):
    load(tmp_path / 'a', heldout_split='val')
  os.makedirs(tmp_path / 'b' / 'train' / 'cat')
  with pytest.raises(ValueError, match="split 'train' .* has no images"):
    load(tmp_path / 'b')
  bad = make_zip(tmp_path / 'bad.zip', per_class=3, corrupt='train/dog/broken.jpg')
  with pytest.raises(ValueError, match='train/dog/broken.jpg'):
    load(bad)
  with pytest.raises(ValueError, match='heldout_fraction'):
    load(tmp_path / 'a', heldout_fraction=1.5)


def test_cifar10_zip_subset():
  path = cifar10_zip()
  if path is None:
    pytest.skip('CIFAR-10 zip not found (set GSG_CIFAR_ZIP or place ../shared/data/cifar10-train-jpeg.zip).')
  ds = data.load_dataset(data_config(source='folder', path=path, max_examples=1000))
  assert ds.num_classes == 10
  assert ds.memory.images.shape == (900, 32, 32, 3) and ds.heldout.images.shape == (100, 32, 32, 3)
  assert list(np.bincount(ds.heldout.labels)) == [10] * 10
  assert list(np.bincount(ds.memory.labels)) == [90] * 10


# ---------------------------------------------------------------- TFDS


def _cifar_metadata(tmp_path) -> str:
  """A TFDS data_dir holding cifar10's metadata only (train 64, test 32 examples), for ``tfds.testing.mock_data``."""
  import tensorflow_datasets as tfds

  data_dir = str(tmp_path / 'tfds')
  builder = tfds.builder('cifar10', data_dir=data_dir)
  builder.info.set_splits(
    tfds.core.SplitDict(
      [
        tfds.core.SplitInfo(name='train', shard_lengths=[64], num_bytes=0),
        tfds.core.SplitInfo(name='test', shard_lengths=[32], num_bytes=0),
      ]
    )
  )
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)
  return data_dir


@pytest.fixture
def mock_cifar(tmp_path):
  """TFDS cifar10 metadata (train 64, test 32 examples) in a tmp data_dir, and mocked example reading."""
  import tensorflow_datasets as tfds

  data_dir = _cifar_metadata(tmp_path)
  with tfds.testing.mock_data(num_examples=64, data_dir=data_dir):
    yield data_dir


def test_tfds_in_memory(mock_cifar):
  ds = data.load_dataset(data_config(source='tfds', tfds_name='cifar10', data_dir=mock_cifar))
  assert ds.num_classes == 10 and isinstance(ds.train, InMemoryTrainData)
  assert ds.memory.images.shape == (64, 32, 32, 3) and ds.memory.images.dtype == np.uint8
  assert ds.heldout.images.shape[1:] == (32, 32, 3)
  assert ds.memory.labels.dtype == np.int32 and ds.memory.labels.max() < 10
  resized = data.load_dataset(data_config(source='tfds', data_dir=mock_cifar, image_size=24))
  assert resized.memory.images.shape == (64, 24, 24, 3) and resized.heldout.images.shape[1:] == (24, 24, 3)


def test_decode_and_crop_non_square():
  import tensorflow as tf

  from gsg_jax.data.tfds_source import decode_and_crop

  encoded = tf.io.encode_png(tf.constant(np.full((40, 60, 3), 200, np.uint8)))
  centre = decode_and_crop(encoded, 32)
  assert centre.shape == (32, 32, 3) and centre.dtype == tf.uint8
  assert int(tf.reduce_min(centre)) == int(tf.reduce_max(centre)) == 200


def test_tfds_streaming(mock_cifar):
  ds = data.load_dataset(
    data_config(source='tfds', data_dir=mock_cifar, in_memory_max_examples=10, stream_image_size=24, shuffle_buffer=16)
  )
  train = ds.train
  assert isinstance(train, data.StreamingTrainData) and train.image_shape == (2, 24, 24, 3)  # Two views per image.
  assert train.steps_per_epoch(16) == 4
  sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ('data',)), P('data'))
  full = take(train.batches(16, seed=0, sharding=sharding), 6)  # Crosses the epoch boundary.
  assert all(b.shape == (16, 2, 24, 24, 3) and b.dtype == np.uint8 for b in full)
  first = next(train.batches(16, seed=0, sharding=sharding))
  assert first['image'].sharding == first['label'].sharding == sharding
  assert first['label'].dtype == np.int32 and set(np.asarray(first['label'])) <= set(range(10))
  np.testing.assert_array_equal(take(train.batches(16, seed=0), 6)[3], full[3])  # Deterministic.
  resumed = take(train.batches(16, seed=0, start_step=3), 3)
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(full[0], full[4])  # New epoch, new order.


# The mock ImageNet image: 300 × 480, red = column and green = row, each scaled to 0..255, so the pixels of a
# view say where in the image it was cropped from.
BIG_H, BIG_W = 300, 480


@pytest.fixture
def mock_big_images(tmp_path):
  """TFDS cifar10 metadata (train 64, test 32) read as 64 copies of the coordinate image, PNG-encoded."""
  import tensorflow as tf
  import tensorflow_datasets as tfds

  rows, cols = np.mgrid[:BIG_H, :BIG_W]
  image = np.stack(
    [np.round(cols * 255 / (BIG_W - 1)), np.round(rows * 255 / (BIG_H - 1)), np.zeros_like(rows)], -1
  ).astype(np.uint8)
  encoded = tf.io.encode_png(image).numpy()

  def as_dataset(self, *args, **kwargs):
    return tf.data.Dataset.from_tensor_slices({'image': [encoded] * 64, 'label': np.arange(64) % 10})

  data_dir = _cifar_metadata(tmp_path)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset, data_dir=data_dir):
    yield data_dir


def test_streamed_views_are_cropped_independently_from_the_full_image(mock_big_images):
  ds = data.load_dataset(
    data_config(
      source='tfds',
      data_dir=mock_big_images,
      in_memory_max_examples=10,
      stream_views=4,
      stream_image_size=32,
      shuffle_buffer=16,
    )
  )
  assert ds.train.image_shape == (4, 32, 32, 3)
  views = np.concatenate(take(ds.train.batches(32, seed=0), 2)).astype(np.float64)  # [64 images, 4 views, ...]
  x, y = views[..., 0] * (BIG_W - 1) / 255, views[..., 1] * (BIG_H - 1) / 255
  left, right, top, bottom = x.min((2, 3)), x.max((2, 3)), y.min((2, 3)), y.max((2, 3))  # [64, 4] each
  area = (right - left) * (bottom - top)
  # The views of every image differ in position and in scale.
  assert (np.ptp(left, 1) + np.ptp(top, 1) > 0).all() and (np.ptp(area, 1) > 0).all()
  # Together they come near every edge of the image (an output pixel's centre sits up to half its footprint,
  # 7.5 px here, inside the box, and a box touches the edge by chance).
  assert left.min() < 15 and right.max() > BIG_W - 16 and top.min() < 15 and bottom.max() > BIG_H - 16
  # Resized to 256 and cropped to one 256 square, every view of an image would lie within 300 columns of it;
  # cropped from the full image, the views of most images spread wider.
  assert np.mean(right.max(1) - left.min(1) > 330) > 0.5


def test_host_crop_box_and_resize_match_the_device_ones():
  """The host (TF) crop is ``augment.crop_box`` on TF's ops, resized as the device's (PIL's bilinear) up to rounding."""
  import tensorflow as tf

  from gsg_jax.data import augment, tfds_source

  ops, scale, ratio = tfds_source._tf_crop_ops(tf), (0.2, 1.0), (3 / 4, 4 / 3)
  u = np.random.default_rng(0).uniform(size=(60, 4 * augment.CROP_ATTEMPTS)).astype(np.float32)
  sizes = np.repeat(np.array([[300, 480], [64, 30], [1, 100]], np.int32), 20, axis=0)  # [1, 100]: no box fits.
  host_box = tf.autograph.experimental.do_not_convert(
    lambda a: tf.stack(augment.crop_box(a[0], a[1][0], a[1][1], scale, ratio, xp=ops))
  )
  host = tf.map_fn(host_box, (tf.constant(u), tf.constant(sizes)), fn_output_signature=tf.int32).numpy()
  device = jax.jit(jax.vmap(lambda r, hw: jnp.stack(augment.crop_box(r, hw[0], hw[1], scale, ratio))))(u, sizes)
  np.testing.assert_array_equal(host, device)
  assert (host[40:] == [0, 49, 1, 1]).all()  # torchvision's fallback: the centred 1 × round(1 · 4/3) box.
  image = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  for top, left, h, w in [(3, 5, 20, 30), (7, 2, 9, 13)]:  # Down- and upsampled.
    ours = tfds_source.resized_crop(tf.constant(image), top, left, h, w, 16).numpy().astype(np.float64)
    # PIL's bilinear resize of the box on float images, which ``augment.resized_crop`` matches (test_augment).
    reference = np.stack(
      [
        np.asarray(
          Image.fromarray(image[..., c].astype(np.float32))
          .crop((left, top, left + w, top + h))
          .resize((16, 16), Image.BILINEAR)
        )
        for c in range(3)
      ],
      -1,
    )
    assert np.abs(ours - reference).max() <= 0.5 + 1e-3  # The same weights, then rounded to uint8.


def test_image_views_of_host_cropped_views_skip_only_the_crop():
  from gsg_jax.data import augment
  from gsg_jax.data.views import ImageViews
  from gsg_jax.errors import ConfigError

  cfg = augment.default_augment_config()
  cfg.update(dict(crop_size=8, jitter_prob=0.0, grayscale_prob=0.0, flip_prob=0.0))  # Every random op off.
  views = np.random.default_rng(0).integers(0, 256, (3, 4, 8, 8, 3), dtype=np.uint8)  # [B, V, crop, crop, 3]
  rows = jax.jit(lambda images, key: ImageViews(cfg)({'image': images}, key, 2))(views, jax.random.key(0))
  expected = (views[:, :2] / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)  # The first two views, normalised.
  np.testing.assert_allclose(rows, expected.reshape(6, 8, 8, 3), atol=1e-5)
  with pytest.raises(ConfigError, match='stream_views=6'):
    ImageViews(cfg)({'image': jnp.asarray(views)}, jax.random.key(0), 6)


def test_tfds_not_prepared_without_network_is_one_error(tmp_path, monkeypatch):
  from gsg_jax.data import tfds_source

  downloads = []
  monkeypatch.setattr(tfds_source, 'network_reachable', lambda: False)
  monkeypatch.setattr(tfds_source, 'download_and_prepare', downloads.append)
  with pytest.raises(ValueError, match=r"(?s)'cifar10'.*not prepared.*could not be downloaded.*tfds build cifar10"):
    data.load_dataset(data_config(source='tfds', tfds_name='cifar10', data_dir=str(tmp_path / 'empty')))
  assert downloads == []  # No download is tried where the mirror does not answer.
  monkeypatch.setattr(tfds_source, 'network_reachable', lambda: True)
  with pytest.raises(ValueError, match='manual'):  # ImageNet: never downloaded, even with a network.
    data.load_dataset(data_config(source='tfds', tfds_name='imagenet2012', data_dir=str(tmp_path / 'empty')))
  assert downloads == []


def test_tfds_downloads_and_prepares_on_first_use(tmp_path, monkeypatch, capsys):
  """With the network answering, a dataset that is not prepared is downloaded (mocked here) and then read."""
  import tensorflow_datasets as tfds

  from gsg_jax.data import tfds_source

  data_dir = str(tmp_path / 'tfds')
  prepared = []

  def fake_download(builder):  # Writes what a real download_and_prepare leaves: the dataset's metadata.
    prepared.append(builder.name)
    _cifar_metadata(tmp_path)

  monkeypatch.setattr(tfds_source, 'network_reachable', lambda: True)
  monkeypatch.setattr(tfds_source, 'download_and_prepare', fake_download)
  with tfds.testing.mock_data(num_examples=64, data_dir=data_dir):
    ds = data.load_dataset(data_config(source='tfds', tfds_name='cifar10', data_dir=data_dir))
  assert prepared == ['cifar10'] and ds.train.num_examples == 64
  assert 'downloading and preparing it' in capsys.readouterr().out

  def failing_download(builder):
    raise ConnectionError('connection reset by peer')

  monkeypatch.setattr(tfds_source, 'download_and_prepare', failing_download)
  with pytest.raises(ValueError, match='could not be downloaded here'):
    data.load_dataset(data_config(source='tfds', tfds_name='cifar10', data_dir=str(tmp_path / 'other')))
  assert 'connection reset by peer' in capsys.readouterr().out


def test_tfds_unknown_dataset(tmp_path):
  with pytest.raises(ValueError, match='no_such_dataset'):
    data.load_dataset(data_config(source='tfds', tfds_name='no_such_dataset', data_dir=str(tmp_path)))
