"""The data layer: sources that return raw uint8 images and labels.

``load_dataset(config.data)`` picks a source by ``config.data.source``:

* ``'builtin'`` – ten synthetic shape classes rendered with numpy (``synthetic``);
* ``'folder'``  – an image folder or zip, ``root/<split>/<class>/<image>`` or unlabelled ``root/<image>``
  (``image_folder``);
* ``'tfds'``    – a TensorFlow Datasets dataset (``tfds_source``).

Each returns a ``Dataset``: ``train`` (a ``TrainData`` that yields global
{image, label} batches, deterministic in ``(seed, step)``), and the labelled splits
``memory`` and ``heldout`` for evaluation. Augmentation is not done here.
"""

import ml_collections

from gsg_jax.data.image_folder import load_folder
from gsg_jax.data.pipeline import Dataset, InMemoryTrainData, Split, TrainData, epoch_permutation, prefetch_to_device
from gsg_jax.data.synthetic import load_builtin
from gsg_jax.data.tfds_source import StreamingTrainData, load_tfds
from gsg_jax.errors import ConfigError

SOURCES = {'builtin': load_builtin, 'folder': load_folder, 'tfds': load_tfds}

__all__ = [
  'Dataset',
  'InMemoryTrainData',
  'SOURCES',
  'Split',
  'StreamingTrainData',
  'TrainData',
  'default_data_config',
  'epoch_permutation',
  'load_dataset',
  'prefetch_to_device',
]


def default_data_config() -> ml_collections.ConfigDict:
  """``config.data`` with every key and its default."""
  c = ml_collections.ConfigDict()
  c.source = 'builtin'  # 'builtin' | 'folder' | 'tfds'.
  c.image_size = 32  # Side of the uint8 images held in memory (folder/tfds resize to it).
  c.builtin_num_train = 8192  # builtin: training (and memory) images.
  c.builtin_num_heldout = 2048  # builtin: held-out images.
  c.builtin_seed = 0  # builtin: generator seed.
  c.path = ''  # folder: root directory or .zip with <split>/<class>/<image>.
  c.heldout_split = ''  # folder: held-out split folder ('' = hold out heldout_fraction); tfds: '' = 'test'.
  c.heldout_fraction = 0.1  # folder: fraction of each class held out when there is no heldout_split.
  c.split_seed = 0  # folder: seed of the held-out and max_examples selections.
  c.max_examples = 0  # folder: stratified subsample of the training split (0 = all).
  c.cache_dir = ''  # folder: where decoded arrays are cached as .npz ('' = no cache).
  c.eval_path = ''  # folder: labelled folder/zip for the kNN monitor when path is unlabelled.
  c.tfds_name = 'cifar10'  # tfds: dataset name (cifar10, cifar100, stl10, imagenet2012, ...).
  c.data_dir = ''  # tfds: data_dir ('' = TFDS default, ~/tensorflow_datasets).
  c.train_split = 'train'  # folder/tfds: training split.
  c.in_memory_max_examples = 200_000  # tfds: larger training splits are streamed from the host.
  c.eval_max_examples = 50_000  # Cap on streamed datasets' memory/held-out splits (and folder heldout_split).
  c.stream_image_size = 224  # tfds streaming: side of each view cropped on the host (= augment.crop_size).
  c.stream_views = 2  # tfds streaming: views cropped per image on the host (the method's).
  c.stream_crop_scale = (0.2, 1.0)  # tfds streaming: RandomResizedCrop scale and aspect range of every host
  c.stream_crop_ratio = (3 / 4, 4 / 3)  # view (= augment.crop_scale, crop_ratio; make_config links them).
  c.shuffle_buffer = 10_000  # tfds streaming: tf.data shuffle buffer.
  return c


def load_dataset(config) -> Dataset:
  """The ``Dataset`` that ``config`` (the ``config.data`` sub-config) describes."""
  if config.source not in SOURCES:
    raise ConfigError(f'config.data.source={config.source!r} is invalid: expected one of {tuple(SOURCES)}.')
  if config.eval_max_examples <= 0:
    raise ConfigError(f'config.data.eval_max_examples={config.eval_max_examples!r} is invalid: expected positive.')
  return SOURCES[config.source](config)
