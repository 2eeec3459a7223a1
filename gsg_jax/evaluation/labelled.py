"""Labelled image sets that evaluation reads in order, chunk by chunk.

A ``LabelledImages`` is a split of labelled uint8 images [N, H, W, 3]:

* ``chunks(size)`` reads it once, in order, ``size`` images at a time (kNN
  memory banks, probe training features, held-out queries), so a split that
  is never held whole (a TFDS split streamed from disk) can be read;
* ``linear_train_data(protocol)`` draws shuffled training batches (a
  ``gsg_jax.data.TrainData``) for a linear protocol on augmented images: the
  images held in memory, or, for a streamed TFDS split, views cropped on the
  host from the full-resolution images with the protocol's random-resized
  crop (as the reference's loaders crop), so that the device only flips;
* ``description`` says what the data are (written into result JSONs and the
  floors cache's keys); ``class_names`` are the label names where known.

Constructors: ``in_memory`` (a ``Split``), ``tfds_stream`` (a TFDS split,
decoded on the fly), ``run_memory`` / ``run_heldout`` (a run's own data: the
whole training split, streamed when the data layer keeps only part of it in
memory), and ``open_data``, which reads what ``python -m gsg_jax.evaluate
--memory_data / --heldout_data`` name:

* ``tfds:NAME:SPLIT`` (TFDS split syntax, e.g. ``tfds:cifar10:test``);
* a folder or ``.zip`` of ``<class>/<image>`` (optionally inside one top
  folder), or of ``<split>/<class>/<image>``, when it has the split folder
  asked for (memory: ``train``; held-out: the first of ``test``, ``val``,
  ``validation``; or the split named explicitly).

Images are resized (shorter side) and centre-cropped to the run's
``config.data.image_size`` as the data layer does; evaluation preprocessing
then applies as for the run's own data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable, Iterator

import numpy as np

from gsg_jax.data.image_folder import decode_images, list_images
from gsg_jax.data.pipeline import InMemoryTrainData, Split
from gsg_jax.errors import ConfigError, DataError, MissingPathError, UnusablePathError

MEMORY_SPLITS = ('train',)
HELDOUT_SPLITS = ('test', 'val', 'validation')
# The config.data keys that decide a run's evaluation images (not its training stream): a run's data description.
# (For splits held in memory, LabelledImages.fingerprint also covers what a key added later may change.)
_EVAL_DATA_KEYS = (
  'source',
  'image_size',
  'builtin_num_train',
  'builtin_num_heldout',
  'builtin_seed',
  'path',
  'eval_path',
  'heldout_split',
  'heldout_fraction',
  'split_seed',
  'max_examples',
  'tfds_name',
  'data_dir',
  'train_split',
  'eval_max_examples',
)


@dataclasses.dataclass(frozen=True)
class LabelledImages:
  description: dict
  num_examples: int
  class_names: tuple | None
  read: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]  # size -> (uint8 images, int32 labels) chunks
  # protocol -> (TrainData over the same images, whether its batches are already cropped by the protocol).
  linear_train_data: Callable[[dict], tuple[object, bool]]
  split: Split | None = None  # The images held whole, when they are.

  def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images uint8 [≤ size, H, W, 3], labels int32 [≤ size]) in order; only the last chunk may be shorter."""
    return self.read(size)

  def fingerprint(self) -> str:
    """A digest of the labels and of a sample of the images, when held in memory ('' otherwise)."""
    if self.split is None:
      return ''
    sample = self.split.images[:: max(1, len(self.split) // 64)]
    return hashlib.sha256(self.split.labels.tobytes() + sample.tobytes()).hexdigest()[:16]


def in_memory(split: Split, description: dict, class_names=None) -> LabelledImages:
  """A split held in host memory."""
  read = lambda size: ((split.images[i : i + size], split.labels[i : i + size]) for i in range(0, len(split), size))
  return LabelledImages(
    {**description, 'num_examples': len(split)},
    len(split),
    None if class_names is None else tuple(class_names),
    read,
    lambda protocol: (InMemoryTrainData(split), False),
    split,
  )


def tfds_stream(name: str, split: str, data_dir: str, image_size: int) -> LabelledImages:
  """A TFDS split decoded in order on the fly (shorter side resized to ``image_size``, centre crop), never whole."""
  from gsg_jax.data.tfds_source import StreamingTrainData, decoded_batches, open_builder

  builder = open_builder(name, data_dir, [split])
  info = builder.info
  if 'image' not in info.features or 'label' not in info.features:
    raise DataError(f'TFDS dataset {name!r} lacks an image/label feature.')
  num_examples = int(info.splits[split].num_examples)

  read = lambda size: decoded_batches(builder, split, image_size, size)

  def linear_train_data(protocol):
    return StreamingTrainData(
      builder,
      split,
      num_examples,
      view_size=protocol['crop_size'],
      num_views=1,
      crop_scale=protocol['crop_scale'],
      crop_ratio=protocol['crop_ratio'],
    ), True

  description = {
    'kind': 'tfds',
    'name': name,
    'split': split,
    'data_dir': data_dir,
    'version': str(info.version),
    'image_size': int(image_size),
    'num_examples': num_examples,
  }
  return LabelledImages(description, num_examples, tuple(info.features['label'].names), read, linear_train_data)


def _run_description(config, role: str) -> dict:
  data = {k: v for k, v in config.data.to_dict().items() if k in _EVAL_DATA_KEYS}
  return {'kind': 'run', 'role': role, 'data': data}


def run_memory(dataset, config, stream: bool = True) -> LabelledImages:
  """The run's memory split: its whole training split, streamed from TFDS where the data layer holds only its
  first ``config.data.eval_max_examples`` (``stream=False``: the data layer's memory split as it is)."""
  if stream and config.data.source == 'tfds' and len(dataset.memory) < dataset.train.num_examples:
    return tfds_stream(config.data.tfds_name, config.data.train_split, config.data.data_dir, config.data.image_size)
  return in_memory(dataset.memory, _run_description(config, 'memory'))


def run_heldout(dataset, config) -> LabelledImages:
  """The run's held-out split."""
  return in_memory(dataset.heldout, _run_description(config, 'heldout'))


def _list_labelled(path: str, splits, require_split: bool) -> tuple[list[str], str | None]:
  """(image names, split folder used or None): the first of ``splits`` present, else ``<class>/<image>``."""
  for split in splits:
    try:
      return list_images(path, split)[0], split
    except ValueError:  # No such split folder (or no images in it): try the next.
      if require_split:
        raise
  files, classes = list_images(path)
  if classes is None:
    raise DataError(
      f'{path!r} holds images without class folders: expected <class>/<image> or '
      f'<split>/<class>/<image> with a split folder among {list(splits)}.'
    )
  return files, None


def open_folder(path: str, image_size: int, splits, class_names=None, require_split: bool = False) -> LabelledImages:
  """A folder or zip of labelled images (see the module docstring).

  ``splits``: the split folders to look for, in order; without one, the
  images must be laid out as ``[<top>/]<class>/<image>`` (unless ``require_split``).
  """
  if not os.path.exists(path):
    raise MissingPathError(f'{path!r} does not exist.')
  if not os.path.isdir(path) and not os.access(path, os.R_OK):
    raise UnusablePathError(f'{path!r} is not readable.')
  files, split = _list_labelled(path, splits, require_split)
  classes = [f.rsplit('/', 2)[-2] for f in files]
  names = tuple(sorted(set(classes))) if class_names is None else tuple(class_names)
  index = {c: i for i, c in enumerate(names)}
  unknown = sorted(set(classes) - index.keys())
  if unknown:
    raise DataError(f'{path!r} has classes that the memory data lack: {unknown[:5]}.')
  labels = np.array([index[c] for c in classes], np.int32)
  images = decode_images(path, files, image_size)
  stat = os.stat(path)
  description = {
    'kind': 'folder',
    'path': os.path.abspath(path),
    'split': split,
    'image_size': int(image_size),
    'size_bytes': stat.st_size,
    'mtime_ns': stat.st_mtime_ns,
  }
  return in_memory(Split(images, labels), description, names)


def open_data(
  spec: str, role: str, image_size: int, data_dir: str = '', split: str = '', class_names=None
) -> LabelledImages:
  """The labelled data ``spec`` names (``tfds:NAME:SPLIT``, a folder or a zip) as memory or held-out data.

  ``role``: 'memory' or 'heldout' (chooses the default split folder); ``split``:
  an explicit split folder; ``class_names``: the memory data's, to index a
  held-out set's labels by (by name; a class the memory data lack is an error).
  Raises FileNotFoundError / PermissionError / ValueError for data that cannot be read as labelled images.
  """
  if spec.startswith('tfds:'):
    parts = spec.split(':')
    if len(parts) != 3 or not all(parts[1:]):
      raise ConfigError(f'{spec!r}: expected tfds:NAME:SPLIT, e.g. tfds:cifar10:test.')
    data = tfds_stream(parts[1], parts[2], data_dir, image_size)
    if class_names is not None and data.class_names != tuple(class_names):
      missing = sorted(set(data.class_names) - set(class_names))
      if missing:
        raise DataError(f'{spec!r} has classes that the memory data lack: {missing[:5]}.')
      remap = np.array([list(class_names).index(c) for c in data.class_names], np.int32)
      read = data.read
      data = dataclasses.replace(
        data, class_names=tuple(class_names), read=lambda size: ((x, remap[y]) for x, y in read(size))
      )
    return data
  splits = (split,) if split else (MEMORY_SPLITS if role == 'memory' else HELDOUT_SPLITS)
  return open_folder(spec, image_size, splits, class_names, require_split=bool(split))
