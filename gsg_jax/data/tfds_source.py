"""TensorFlow Datasets: small datasets in memory, large ones streamed.

TensorFlow and TFDS are imported inside functions only. ``load_tfds`` first
checks that the dataset is prepared in ``data_dir``. If not, and TFDS's
download mirror answers within seconds, it downloads and prepares it (once);
otherwise it fails at once with instructions (TFDS would try the network for
minutes). Datasets that TFDS cannot download (ImageNet) always get the
instructions.
Training splits up to ``in_memory_max_examples`` are decoded into numpy
(``InMemoryTrainData``); larger ones are streamed (``StreamingTrainData``)
and their memory / held-out splits capped at ``eval_max_examples``.

A streamed image is decoded at full resolution on the host and each of its
``stream_views`` views is cropped from it independently, as the reference's
per-view ``RandomResizedCrop(224, scale=(0.2, 1))``: torchvision's box
sampler (``augment.crop_box``, on TF's ops) and an antialiased bilinear
resize to ``stream_image_size`` (PIL's BILINEAR, as torchvision on PIL
images), rounded to uint8. The other augmentations run on the accelerator
(``gsg_jax.data.views``).
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np

from gsg_jax.data import augment
from gsg_jax.data.pipeline import Batch, Dataset, InMemoryTrainData, Split, check_batch_args, prefetch_to_device
from gsg_jax.errors import ConfigError, DataError


def _tf_and_tfds():
  """Imports TF and TFDS, keeping TF off the accelerators (JAX owns them)."""
  import tensorflow as tf
  import tensorflow_datasets as tfds

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices.
    pass
  return tf, tfds


def _tf_crop_ops(tf):
  """The array functions ``augment.crop_box`` uses, as TensorFlow ops (see its docstring)."""
  import types

  return types.SimpleNamespace(
    asarray=lambda x, dtype: tf.cast(x, dtype),
    reshape=tf.reshape,
    round=tf.round,
    sqrt=tf.sqrt,
    exp=tf.exp,
    floor=tf.floor,
    argmax=tf.argmax,
    any=tf.reduce_any,
    where=tf.where,
    float32=tf.float32,
    int32=tf.int32,
  )


def resized_crop(image, top, left, h, w, size: int):
  """The box (top, left, h, w) of a uint8 [H, W, 3] image resized to uint8 [size, size, 3] (antialiased bilinear)."""
  tf, _ = _tf_and_tfds()
  box = image[top : top + h, left : left + w]
  resized = tf.image.resize(box, [size, size], method='bilinear', antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def random_resized_views(encoded, num_views: int, size: int, scale, ratio, seed):
  """Encoded image bytes → uint8 [num_views, size, size, 3], each view a RandomResizedCrop of the full image.

  View v's box comes from the uniforms ``stateless_uniform([num_views, 4·attempts], seed)[v]``
  (``seed``: a [2] int tensor), so the views depend only on the image and the seed.
  """
  tf, _ = _tf_and_tfds()
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  shape = tf.shape(image)
  u = tf.random.stateless_uniform([num_views, 4 * augment.CROP_ATTEMPTS], seed)
  ops = _tf_crop_ops(tf)
  views = [
    resized_crop(image, *augment.crop_box(u[v], shape[0], shape[1], scale, ratio, xp=ops), size)
    for v in range(num_views)
  ]
  return tf.ensure_shape(tf.stack(views), [num_views, size, size, 3])


def decode_and_crop(encoded, size: int):
  """Encoded image bytes → uint8 [size, size, 3]: shorter side resized to ``size``, then the central square.

  Images already ``size`` × ``size`` pass unchanged.
  """
  tf, _ = _tf_and_tfds()
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  shape = tf.shape(image)
  h, w = shape[0], shape[1]

  def resize():
    scale = size / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32))
    resized = tf.image.resize(image, [new_h, new_w], method='bicubic', antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  image = tf.cond(tf.logical_and(h == size, w == size), lambda: image, resize)
  shape = tf.shape(image)
  top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
  return tf.ensure_shape(image[top : top + size, left : left + size], [size, size, 3])


def _split_names(split: str) -> list[str]:
  """Base split names of a TFDS split expression: 'train[:10%]+test' → ['train', 'test']."""
  return [part.split('[', 1)[0].strip() for part in split.split('+')]


# TFDS fetches prepared datasets from its Google Cloud Storage mirror first: if this host does not answer, nothing
# will, and a download would only hang until TFDS's own timeouts (minutes).
DOWNLOAD_PROBE = ('storage.googleapis.com', 443)
DOWNLOAD_PROBE_TIMEOUT_S = 3.0


def network_reachable() -> bool:
  """Whether TFDS's download mirror answers within a few seconds."""
  import socket

  try:
    socket.create_connection(DOWNLOAD_PROBE, timeout=DOWNLOAD_PROBE_TIMEOUT_S).close()
    return True
  except OSError:
    return False


def download_and_prepare(builder) -> None:
  """``builder.download_and_prepare()``: a seam of its own, so tests replace the download."""
  builder.download_and_prepare()


def open_builder(name: str, data_dir: str, splits: list[str]):
  """``tfds.builder(name)`` after checking that it is prepared and has ``splits``; raises ValueError otherwise."""
  _, tfds = _tf_and_tfds()
  from tensorflow_datasets.core.registered import DatasetNotFoundError

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except DatasetNotFoundError as e:
    raise ConfigError(f'config.data.tfds_name={name!r}: no such TFDS dataset.') from e
  manual = bool(getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))
  if not builder.is_prepared() and not manual and network_reachable():
    # As solo-learn and lightly do on first use; where the network does not answer, the one-line error below.
    print(
      f'TFDS dataset {name!r} is not prepared in {builder.data_dir!r}: downloading and preparing it (once).', flush=True
    )
    try:
      download_and_prepare(builder)
      builder = tfds.builder(name, data_dir=data_dir or None)  # Its info as prepared on disk.
    except Exception as e:  # noqa: BLE001 (any failure of the download is reported as the error below, with why)
      print(f'Preparing {name!r} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}', flush=True)
  if not builder.is_prepared():
    where = f'--data_dir={data_dir}' if data_dir else '(default data_dir ~/tensorflow_datasets)'
    how = f'run `tfds build {name} {where}` on a machine with internet access'
    if manual:
      how = (
        f'download its files by hand (see the TFDS catalog page for {name}) into a manual dir, then run '
        f'`tfds build {name} {where} --manual_dir=<that dir>`'
      )
    raise DataError(
      f'TFDS dataset {name!r} is not prepared in {builder.data_dir!r} '
      f'(config.data.data_dir={data_dir!r}) and could not be downloaded here: {how}.'
    )
  known = set(builder.info.splits.keys())
  for split in splits:
    missing = [s for s in _split_names(split) if s not in known]
    if missing:
      raise DataError(f'TFDS dataset {name!r} has no split {missing[0]!r} (from {split!r}); splits: {sorted(known)}.')
  return builder


def decoded_batches(builder, split: str, image_size: int, batch_size: int):
  """(uint8 images [≤ batch_size, image_size, image_size, 3], int32 labels) of a TFDS split in order, each image
  resized and centre-cropped to ``image_size``: decoded on the fly, never held whole."""
  tf, tfds = _tf_and_tfds()
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})
  ds = ds.map(
    lambda ex: (decode_and_crop(ex['image'], image_size), tf.cast(ex['label'], tf.int32)),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  return ds.batch(batch_size).prefetch(2).as_numpy_iterator()


def load_split(builder, split: str, image_size: int, batch_size: int = 1024) -> Split:
  """A TFDS split decoded whole into numpy, images resized and centre-cropped to ``image_size``."""
  images, labels = [], []
  for x, y in decoded_batches(builder, split, image_size, batch_size):
    images.append(x)
    labels.append(y)
  if not images:
    raise DataError(f'TFDS split {split!r} of {builder.name!r} is empty.')
  return Split(np.concatenate(images), np.concatenate(labels))


class StreamingTrainData:
  """Training batches decoded on the host by tf.data from a TFDS split.

  Each process reads its own ``1 / process_count`` of the split and yields
  its share of every global batch, assembled with
  ``jax.make_array_from_process_local_data``. Epoch ``e`` reads the files in
  an order seeded by ``(seed, e)``, shuffles examples in a buffer with the
  same seed, and crops ``num_views`` views of ``view_size``² from each image
  (``random_resized_views``) keyed by ``(seed, e, position in epoch)``:
  batches are ``{'image': uint8 [B, num_views, view_size, view_size, 3], 'label'}``.
  ``start_step`` skips examples before decoding them; ``prefetch`` global
  batches are kept in flight to the devices. TF's ordering is
  deterministic for a fixed file layout, so batch ``k`` depends only on
  ``(seed, k)``; the examples of a batch differ from ``InMemoryTrainData``'s.
  """

  def __init__(
    self,
    builder,
    split: str,
    num_examples: int,
    view_size: int,
    num_views: int = 2,
    crop_scale=(0.2, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    shuffle_buffer: int = 10_000,
    prefetch: int = 2,
  ):
    self.builder, self.split = builder, split
    self.num_examples = num_examples
    self.image_shape = (num_views, view_size, view_size, 3)
    self.crop_scale, self.crop_ratio = tuple(map(float, crop_scale)), tuple(map(float, crop_ratio))
    self.shuffle_buffer, self.prefetch = shuffle_buffer, prefetch

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches per epoch: every process yields the same number of local batches."""
    processes = jax.process_count()
    return (self.num_examples // processes) // max(1, batch_size // processes)

  def _epoch(self, shard: str, local_batch: int, seed: int, epoch: int, skip: int, steps: int):
    tf, tfds = _tf_and_tfds()
    epoch_seed = int(np.random.default_rng([seed, epoch]).integers(2**31 - 1))
    read_config = tfds.ReadConfig(shuffle_seed=epoch_seed)
    ds = self.builder.as_dataset(
      split=shard, shuffle_files=True, read_config=read_config, decoders={'image': tfds.decode.SkipDecoding()}
    )
    ds = ds.shuffle(self.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.enumerate().skip(skip * local_batch)
    num_views, size = self.image_shape[:2]

    def decode(position, example):
      seed_pair = tf.stack([tf.constant(epoch_seed, tf.int64), position])
      views = random_resized_views(example['image'], num_views, size, self.crop_scale, self.crop_ratio, seed_pair)
      return {'image': views, 'label': tf.cast(example['label'], tf.int32)}

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(local_batch, drop_remainder=True).take(steps - skip).prefetch(tf.data.AUTOTUNE)

  def batches(
    self, batch_size: int, seed: int = 0, start_step: int = 0, sharding: jax.sharding.Sharding | None = None
  ) -> Iterator[Batch]:
    """Endless global batches ``{'image', 'label'}`` of ``batch_size`` examples from ``start_step`` on."""
    _, tfds = _tf_and_tfds()
    processes = jax.process_count()
    if batch_size % processes:
      raise ConfigError(f'batch_size={batch_size} is not divisible by the {processes} processes.')
    check_batch_args(self.num_examples // processes * processes, batch_size, seed, start_step)
    steps, local_batch = self.steps_per_epoch(batch_size), batch_size // processes
    shard = tfds.even_splits(self.split, n=processes, drop_remainder=True)[jax.process_index()]
    return prefetch_to_device(
      self._iterate(shard, batch_size, local_batch, seed, start_step, steps, sharding), self.prefetch
    )

  def _iterate(self, shard, batch_size, local_batch, seed, start_step, steps, sharding):
    global_shapes = {'image': (batch_size,) + self.image_shape, 'label': (batch_size,)}
    epoch, skip = divmod(start_step, steps)
    while True:
      for local in self._epoch(shard, local_batch, seed, epoch, skip, steps).as_numpy_iterator():
        if sharding is None:
          yield jax.device_put(local)
        else:
          yield {k: jax.make_array_from_process_local_data(sharding, v, global_shapes[k]) for k, v in local.items()}
      epoch, skip = epoch + 1, 0


def _capped(info, split: str, cap: int) -> str:
  """``split`` limited to its first ``cap`` examples (plain split names only; TFDS shuffled them when preparing)."""
  if split in set(info.splits.keys()) and info.splits[split].num_examples > cap:
    return f'{split}[:{cap}]'
  return split


def load_tfds(config) -> Dataset:
  """The TFDS dataset ``config.tfds_name`` from ``config.data_dir``; see the module docstring."""
  heldout_split = config.heldout_split or 'test'
  for key in ('in_memory_max_examples', 'image_size', 'stream_image_size', 'stream_views', 'shuffle_buffer'):
    if config[key] <= 0:
      raise ConfigError(f'config.data.{key}={config[key]!r} is invalid: expected a positive integer.')
  builder = open_builder(config.tfds_name, config.data_dir, [config.train_split, heldout_split])
  info = builder.info
  if 'image' not in info.features or 'label' not in info.features:
    raise ConfigError(f'TFDS dataset {config.tfds_name!r} lacks an image/label feature: {info.features}.')
  num_classes = info.features['label'].num_classes
  num_train = info.splits[config.train_split].num_examples
  cap = config.eval_max_examples
  heldout = load_split(builder, _capped(info, heldout_split, cap), config.image_size)
  if num_train <= config.in_memory_max_examples:
    train_split = load_split(builder, config.train_split, config.image_size)
    train, memory = InMemoryTrainData(train_split), train_split
  else:
    train = StreamingTrainData(
      builder,
      config.train_split,
      num_train,
      config.stream_image_size,
      config.stream_views,
      config.stream_crop_scale,
      config.stream_crop_ratio,
      config.shuffle_buffer,
    )
    memory = load_split(builder, _capped(info, config.train_split, cap), config.image_size)
  return Dataset(config.tfds_name, num_classes, train, memory=memory, heldout=heldout)
