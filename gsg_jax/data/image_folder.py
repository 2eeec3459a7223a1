"""Image folders: ``root/<split>/<class>/<image>``, or unlabelled ``root/<image>``; a directory or a ``.zip``.

Zips are read in place (no extraction); a zip whose only top-level entry is
a folder holding the split folders is accepted too. Class indices follow the
sorted class-folder names of the training split. Images are decoded with PIL
to uint8 RGB; images whose size differs from ``image_size`` are resized
(shorter side, bicubic) and centre-cropped to ``image_size`` × ``image_size``.

Held-out data: the ``heldout_split`` folder when the config names one;
otherwise ``round(heldout_fraction · n)`` images of every class of the
training split (at least one if the class has two), chosen with
``split_seed``. ``max_examples`` subsamples the training split
first, stratified by class. The memory split is the training images.
Decoded arrays are cached as ``.npz`` in ``cache_dir`` when it is set.

Unlabelled folders: when ``root`` has no ``train_split`` folder but holds
images directly (or its only top-level folder does, as in a zip of a
folder), every image is a training image with label ``UNLABELLED`` (−1) and
the dataset has ``num_classes = 0``, so training runs without the online
probe. Its evaluation splits come from the labelled folder or zip
``config.eval_path`` (memory: that folder's training split less its held-out
images, chosen as above), or are empty when ``eval_path`` is not set, which
turns the kNN monitor off. ``max_examples`` subsamples the unlabelled images
at random (seed ``split_seed``).

``list_images(path, split)`` lists a folder for embedding: flat (unlabelled),
``<class>/<image>``, or ``<split>/<class>/<image>`` when ``split`` is given.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import zipfile

import ml_collections
import numpy as np
from PIL import Image

from gsg_jax.data.pipeline import Dataset, InMemoryTrainData, Split
from gsg_jax.errors import ConfigError, DataError, MissingPathError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.ppm', '.webp', '.tif', '.tiff')
UNLABELLED = -1  # The label of every image of an unlabelled folder.
_PARALLEL_MIN_IMAGES = 4000  # Below this, a process pool costs more than it saves.
_CHUNK = 1000


def _list_entries(path: str) -> tuple[list[str], set[str]]:
  """(files, folders) under a directory or in a zip, as relative POSIX paths."""
  if not os.path.exists(path):
    raise MissingPathError(f'image folder or zip not found: {path!r} (config.data.path).')
  if os.path.isdir(path):
    files, folders = [], set()
    for directory, subdirs, names in os.walk(path):
      rel = os.path.relpath(directory, path).replace(os.sep, '/')
      rel = '' if rel == '.' else rel + '/'
      files += [rel + n for n in names]
      folders |= {rel + d for d in subdirs}
    return files, folders
  if not zipfile.is_zipfile(path):
    raise ConfigError(f'{path!r} is neither a directory nor a zip file (config.data.path).')
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
  files = [n for n in names if not n.endswith('/')]
  folders = {n.rstrip('/') for n in names if n.endswith('/')}
  folders |= {n.rsplit('/', k)[0] for n in files for k in range(1, n.count('/') + 1)}
  return files, folders


def _list_split(path: str, entries: tuple[list[str], set[str]], split: str) -> tuple[list[str], list[str]]:
  """(files sorted, class names) of ``split``: ``[<top>/]<split>/<class>/<image>``.

  ``<top>/`` is accepted when it is the only top-level folder.
  """
  names, folders = entries
  tops = sorted(f for f in folders if '/' not in f)
  if split in folders:
    prefix = split + '/'
  elif len(tops) == 1 and f'{tops[0]}/{split}' in folders:
    prefix = f'{tops[0]}/{split}/'
  else:
    raise DataError(f'no split folder {split!r} in {path!r}; top-level folders: {tops}.')
  depth = prefix.count('/') + 1
  files = sorted(
    n
    for n in names
    if n.startswith(prefix)
    and n.count('/') == depth
    and n.lower().endswith(IMAGE_EXTENSIONS)
    and not os.path.basename(n).startswith('.')
  )
  if not files:
    raise DataError(
      f'split {split!r} of {path!r} has no images in class folders '
      f'({prefix}<class>/<image>, extensions {IMAGE_EXTENSIONS}).'
    )
  classes = sorted({f[len(prefix) :].split('/', 1)[0] for f in files})
  return files, classes


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


def _images_below(names: list[str], prefix: str, depth: int) -> list[str]:
  """Sorted images ``depth`` folders below ``prefix`` (0: directly in it)."""
  level = prefix.count('/') + depth
  return sorted(n for n in names if n.startswith(prefix) and n.count('/') == level and _is_image(n))


def _flat_images(entries: tuple[list[str], set[str]]) -> list[str]:
  """The images directly in the root or, when the root holds only one folder and no files, directly in it."""
  names, folders = entries
  files = _images_below(names, '', 0)
  tops = [f for f in folders if '/' not in f]
  if not files and len(tops) == 1 and not any('/' not in n for n in names):
    files = _images_below(names, tops[0] + '/', 0)
  return files


def list_images(path: str, split: str = '') -> tuple[list[str], list[str] | None]:
  """(sorted image names relative to ``path``, class names or None) of a folder or zip, for embedding.

  With ``split``: ``[<top>/]<split>/<class>/<image>`` as for training. Without: the images
  directly in the folder (or in the zip's only top-level folder), unlabelled (None); else
  ``[<top>/]<class>/<image>``, labelled by class folder (a folder with one class folder reads
  as unlabelled).
  """
  entries = _list_entries(path)
  if split:
    return _list_split(path, entries, split)
  files = _flat_images(entries)
  if files:
    return files, None
  names, folders = entries
  tops = sorted(f for f in folders if '/' not in f)
  prefix = tops[0] + '/' if len(tops) == 1 and not any('/' not in n for n in names) else ''
  files = _images_below(names, prefix, 1)
  if not files:
    raise DataError(
      f'no images in {path!r}: expected <image>, <class>/<image>, or <split>/<class>/<image> '
      f'with --split (extensions {IMAGE_EXTENSIONS}).'
    )
  return files, sorted({_class_of(f) for f in files})


def _class_of(name: str) -> str:
  return name.rsplit('/', 2)[-2]


def _stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
  """All indices, ordered so that every prefix is close to stratified by class.

  Each example gets its class-relative rank (rank within a shuffled class,
  divided by the class size); sorting by it interleaves the classes in
  proportion to their sizes.
  """
  rng = np.random.default_rng(seed)
  key = np.empty(len(labels))
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    key[rows] = (rng.permutation(len(rows)) + rng.random(len(rows))) / len(rows)
  return np.argsort(key, kind='stable')


def _heldout_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """``round(fraction · n_c)`` random examples of each class c, at least one when ``n_c >= 2``."""
  rng = np.random.default_rng([seed, 1])
  mask = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    count = int(round(fraction * len(rows))) or int(len(rows) >= 2)
    mask[rng.permutation(rows)[:count]] = True
  return mask


def _to_size(image: Image.Image, size: int) -> np.ndarray:
  image = image.convert('RGB')
  w, h = image.size
  if (w, h) != (size, size):
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    image = image.crop((left, top, left + size, top + size))
  return np.asarray(image, np.uint8)


def _decode(path: str, names: list[str], size: int, archive: zipfile.ZipFile | None = None) -> np.ndarray:
  """Decodes ``names`` (relative to the folder or the open zip ``archive`` of ``path``) to uint8 [N, size, size, 3]."""
  out = np.empty((len(names), size, size, 3), np.uint8)
  for i, name in enumerate(names):
    where = f'{name!r} in {path!r}' if archive else repr(os.path.join(path, name))
    try:
      with Image.open(io.BytesIO(archive.read(name)) if archive else os.path.join(path, name)) as image:
        out[i] = _to_size(image, size)
    except Exception as e:  # PIL raises many types for bad files.
      raise DataError(f'cannot decode image {where}: {type(e).__name__}: {e}') from e
  return out


_worker_archive = None  # The zip each pool worker opens once (reading its directory takes ~0.5 s for 50k files).


def _open_in_worker(path: str) -> None:
  global _worker_archive
  _worker_archive = zipfile.ZipFile(path) if os.path.isfile(path) else None


def _decode_in_worker(path: str, names: list[str], size: int) -> np.ndarray:
  return _decode(path, names, size, _worker_archive)


def decode_images(path: str, names: list[str], size: int) -> np.ndarray:
  """Decodes ``names`` from the folder or zip ``path``; in worker processes when there are many."""
  workers = min(os.cpu_count() or 1, len(names) // _CHUNK)
  if len(names) < _PARALLEL_MIN_IMAGES or workers < 2:
    with contextlib.ExitStack() as stack:
      archive = stack.enter_context(zipfile.ZipFile(path)) if os.path.isfile(path) else None
      return _decode(path, names, size, archive)
  chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]
  context = multiprocessing.get_context('spawn')  # Not fork: the parent runs JAX/TF threads.
  with concurrent.futures.ProcessPoolExecutor(
    workers, mp_context=context, initializer=_open_in_worker, initargs=(path,)
  ) as pool:
    parts = list(pool.map(_decode_in_worker, [path] * len(chunks), chunks, [size] * len(chunks)))
  return np.concatenate(parts)


def _cache_file(config, path: str, names: list[str], **extra) -> str | None:
  if not config.cache_dir:
    return None
  if os.path.isdir(path):
    stats = [os.stat(os.path.join(path, n)) for n in names]
    fingerprint = [len(names), sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]
  else:
    stat = os.stat(path)
    fingerprint = [stat.st_size, stat.st_mtime_ns]
  key = dict(
    path=os.path.abspath(path),
    fingerprint=fingerprint,
    image_size=config.image_size,
    max_examples=config.max_examples,
    heldout_split=config.heldout_split,
    heldout_fraction=config.heldout_fraction,
    split_seed=config.split_seed,
    train_split=config.train_split,
    eval_max_examples=config.eval_max_examples,
    **extra,
  )
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(config.cache_dir, f'folder-{os.path.basename(os.path.normpath(path))}-{digest}.npz')


def _labels(files: list[str], classes: list[str], path: str, split: str) -> np.ndarray:
  index = {c: i for i, c in enumerate(classes)}
  unknown = sorted({_class_of(f) for f in files} - index.keys())
  if unknown:
    raise DataError(f'split {split!r} of {path!r} has classes not in the training split: {unknown}.')
  return np.array([index[_class_of(f)] for f in files], np.int32)


def _select(config, path: str, entries) -> tuple[list[str], np.ndarray, list[str], np.ndarray, list[str]]:
  """Chooses the files: (train files, labels, held-out files, labels, class names)."""
  files, classes = _list_split(path, entries, config.train_split)
  labels = _labels(files, classes, path, config.train_split)
  if config.max_examples and config.max_examples < len(files):
    keep = np.sort(_stratified_order(labels, config.split_seed)[: config.max_examples])
    files, labels = [files[i] for i in keep], labels[keep]
  if config.heldout_split:
    held_files, _ = _list_split(path, entries, config.heldout_split)
    held_labels = _labels(held_files, classes, path, config.heldout_split)
    if len(held_files) > config.eval_max_examples:
      keep = np.sort(_stratified_order(held_labels, config.split_seed)[: config.eval_max_examples])
      held_files, held_labels = [held_files[i] for i in keep], held_labels[keep]
  else:
    mask = _heldout_mask(labels, config.heldout_fraction, config.split_seed)
    held_files, held_labels = [f for f, m in zip(files, mask) if m], labels[mask]
    files, labels = [f for f, m in zip(files, mask) if not m], labels[~mask]
  if not files or not held_files:
    raise DataError(
      f'{path!r}: {len(files)} training and {len(held_files)} held-out images after splitting; '
      'both must be non-empty (check config.data.max_examples / heldout_fraction).'
    )
  return files, labels, held_files, held_labels, classes


def load_folder(config) -> Dataset:
  """The image folder or zip ``config.path`` as an in-memory ``Dataset``."""
  path = config.path
  if not path:
    raise ConfigError("config.data.path is empty: set it to an image folder or zip (source='folder').")
  if not 0.0 <= config.heldout_fraction < 1.0 or (not config.heldout_split and config.heldout_fraction == 0):
    raise ConfigError(
      f'config.data.heldout_fraction={config.heldout_fraction!r} is invalid: expected in (0, 1) '
      'when config.data.heldout_split is empty.'
    )
  if config.max_examples < 0:
    raise ConfigError(f'config.data.max_examples={config.max_examples!r} is invalid: expected >= 0 (0 = all).')
  if config.image_size <= 0:
    raise ConfigError(f'config.data.image_size={config.image_size!r} is invalid: expected a positive integer.')
  entries = _list_entries(path)
  flat = [] if config.train_split in entries[1] else _flat_images(entries)
  if flat:
    return _load_unlabelled(config, path, flat)
  if config.get('eval_path'):
    raise ConfigError(
      f'config.data.eval_path is for an unlabelled config.data.path (images directly in it); '
      f'{path!r} is labelled: leave eval_path empty.'
    )
  files, labels, held_files, held_labels, classes = _select(config, path, entries)
  cache = _cache_file(config, path, files + held_files)
  if cache and os.path.exists(cache):
    with np.load(cache) as arrays:
      train_images, held_images = arrays['train'], arrays['heldout']
  else:
    images = decode_images(path, files + held_files, config.image_size)
    train_images, held_images = images[: len(files)], images[len(files) :]
    if cache:
      os.makedirs(config.cache_dir, exist_ok=True)
      partial = f'{cache}.{os.getpid()}.tmp.npz'
      np.savez(partial, train=train_images, heldout=held_images)
      os.replace(partial, cache)
  train = Split(train_images, labels)
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  return Dataset(name, len(classes), InMemoryTrainData(train), memory=train, heldout=Split(held_images, held_labels))


def _decode_cached(config, path: str, names: list[str], **key) -> np.ndarray:
  """``decode_images``, through the ``cache_dir`` cache when it is set."""
  cache = _cache_file(config, path, names, **key)
  if cache and os.path.exists(cache):
    with np.load(cache) as arrays:
      return arrays['images']
  images = decode_images(path, names, config.image_size)
  if cache:
    os.makedirs(config.cache_dir, exist_ok=True)
    partial = f'{cache}.{os.getpid()}.tmp.npz'
    np.savez(partial, images=images)
    os.replace(partial, cache)
  return images


def _load_unlabelled(config, path: str, files: list[str]) -> Dataset:
  """An unlabelled folder: all images train; evaluation splits from ``config.eval_path`` or empty."""
  if config.max_examples and config.max_examples < len(files):
    keep = np.sort(np.random.default_rng(config.split_seed).permutation(len(files))[: config.max_examples])
    files = [files[i] for i in keep]
  images = _decode_cached(config, path, files, unlabelled=True)
  train = Split(images, np.full(len(files), UNLABELLED, np.int32))
  eval_path = config.get('eval_path', '')
  if eval_path:
    if not os.path.exists(eval_path):
      raise MissingPathError(f'labelled folder or zip not found: {eval_path!r} (config.data.eval_path).')
    eval_config = ml_collections.ConfigDict(config.to_dict())
    eval_config.max_examples = 0  # max_examples subsamples the training images, not the evaluation folder.
    memory_files, memory_labels, held_files, held_labels, _ = _select(eval_config, eval_path, _list_entries(eval_path))
    eval_images = _decode_cached(eval_config, eval_path, memory_files + held_files)
    memory = Split(eval_images[: len(memory_files)], memory_labels)
    heldout = Split(eval_images[len(memory_files) :], held_labels)
  else:
    memory = heldout = Split(np.zeros((0,) + images.shape[1:], np.uint8), np.zeros((0,), np.int32))
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  return Dataset(name, 0, InMemoryTrainData(train), memory=memory, heldout=heldout)
