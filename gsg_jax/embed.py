"""Embed a folder or zip of images with a trained run's encoder.

    python -m gsg_jax.embed --workdir=RUN --data=FOLDER_OR_ZIP --out=features.npz|features.parquet \
        [--step=N] [--split=NAME] [--batch_size=N]

(console script ``gsg-embed``) or, from Python, ``embed(load_encoder(RUN), FOLDER)``.

``--data`` is read by ``gsg_jax.data.image_folder.list_images``: images
directly in the folder (unlabelled), ``<class>/<image>`` (labelled by class
folder), either inside the zip's only top-level folder, or
``<split>/<class>/<image>`` with ``--split``. Each image is decoded as the
run's data layer decodes (RGB; shorter side resized to
``config.data.image_size``, centre crop) and encoded by
``gsg_jax.encoder.load_encoder`` (the run's evaluation preprocessing and the
backbone in evaluation mode), a chunk of images at a time, with a progress
line on stderr.

Output, one row per image in sorted file-name order:

* ``.npz``: ``features`` float32 [N, D], ``file_names`` [N] (relative to
  ``--data``), ``step``; labelled folders add ``labels`` int32 [N] and
  ``class_names`` [C] (label i is ``class_names[i]``).
* ``.parquet`` (needs pyarrow): columns ``file_name``, ``feature`` (a
  fixed-size list of D float32) and, labelled, ``label`` and ``class_name``;
  the schema metadata ``gsg_jax`` holds JSON with the workdir, step and class
  names.
"""

from __future__ import annotations

import importlib.util
import json
import os
import posixpath
import sys
import time
import zipfile

import numpy as np

from gsg_jax import cli, storage
from gsg_jax.encoder import Encoder
from gsg_jax.errors import ConfigError, MissingPathError, UnusablePathError
from gsg_jax.run_dir import find_run, restore_variables

OUTPUTS = ('.npz', '.parquet')
CHUNK_BYTES = 256 << 20  # Decoded images held at once: bounds memory, and decoding runs in parallel within a chunk.


def check_data(path: str) -> None:
  if not path:
    raise ConfigError('no images given (--data=FOLDER_OR_ZIP).')
  if not os.path.exists(path):
    raise MissingPathError(f'--data {path!r} does not exist.')
  if not (os.path.isdir(path) or zipfile.is_zipfile(path)):
    raise ConfigError(f'--data {path!r} is neither a folder nor a zip file.')


def check_output(out: str) -> str:
  """The output's kind ('.npz' or '.parquet'), checked before any work."""
  if not out:
    raise ConfigError('no output path given (--out=features.npz or features.parquet).')
  kind = os.path.splitext(out)[1].lower()
  if kind not in OUTPUTS:
    raise ConfigError(f'cannot write {out!r}: the output must end in {" or ".join(OUTPUTS)}.')
  if kind == '.parquet' and importlib.util.find_spec('pyarrow') is None:
    raise ConfigError('writing .parquet needs pyarrow (pip install pyarrow); or write .npz.')
  if storage.isdir(out):
    raise UnusablePathError(
      f'--out={out!r} is a folder: name a file in it, e.g. {storage.join(out, "features" + kind)}.'
    )
  storage.ensure_writable_dir(storage.dirname(out), "--out's folder")  # Before any image is embedded.
  return kind


def _read_data(read, *args):
  """``read(*args)``, an ``image_folder`` reader, whose errors (no folder, no images, not an image) are the user's."""
  try:
    return read(*args)
  except FileNotFoundError as e:
    raise MissingPathError(str(e)) from e
  except ValueError as e:
    raise ConfigError(str(e)) from e


def list_data(path: str, split: str = '') -> tuple[list[str], list[str] | None]:
  """(image names, class names or None) of the folder or zip ``path``; see the module docstring for the layouts."""
  from gsg_jax.data import image_folder  # Imports JAX (the data package): kept off the command's first checks.

  check_data(path)
  return _read_data(image_folder.list_images, path, split)


def embed(encoder, path: str, split: str = '', progress: bool = True) -> dict:
  """Features of every image of the folder or zip ``path`` (``list_data``).

  Returns ``features`` [N, D], ``file_names`` [N], and for labelled folders
  ``labels`` [N] and ``class_names``.
  """
  return embed_files(encoder, path, *list_data(path, split), progress=progress)


def embed_files(encoder, path: str, files: list[str], classes: list[str] | None, progress: bool = True) -> dict:
  """``embed`` of the images ``files`` of ``path``, listed by ``list_data``."""
  from gsg_jax.data import image_folder

  size = encoder.image_size
  chunk = max(encoder.batch_size, CHUNK_BYTES // (3 * size * size))
  features, start_time = [], time.perf_counter()
  for start in range(0, len(files), chunk):
    names = files[start : start + chunk]
    features.append(encoder(_read_data(image_folder.decode_images, path, names, size)))
    if progress:
      done = start + len(names)
      rate = done / max(time.perf_counter() - start_time, 1e-9)
      tty = sys.stderr.isatty()  # A terminal gets one line rewritten in place; a log, one line per chunk.
      line = f'embedded {done}/{len(files)} images ({rate:.0f} images/s)'
      print(
        ('\r' if tty else '') + line, end='\n' if done == len(files) or not tty else '', file=sys.stderr, flush=True
      )
  result = {'features': np.concatenate(features), 'file_names': files}
  if classes is not None:
    index = {c: i for i, c in enumerate(classes)}
    result['labels'] = np.array([index[posixpath.basename(posixpath.dirname(f))] for f in files], np.int32)
    result['class_names'] = classes
  return result


def write(result: dict, out: str, workdir: str, step: int) -> None:
  """Writes ``embed``'s result to ``out`` (.npz or .parquet; a local path or an object-store URL)."""
  kind = check_output(out)
  try:
    storage.makedirs(storage.dirname(out))
    if kind == '.npz':
      _write_npz(result, out, step)
    else:
      _write_parquet(result, out, workdir, step)
  except OSError as e:
    raise UnusablePathError(f'cannot write {out!r}: {e.strerror or e}.') from e


def _write_npz(result: dict, out: str, step: int) -> None:
  arrays = {
    'features': result['features'],
    'file_names': np.array(result['file_names'], str),
    'step': np.array(step, np.int64),
  }
  if 'labels' in result:
    arrays['labels'] = result['labels']
    arrays['class_names'] = np.array(result['class_names'], str)
  storage.save_npz(out, **arrays)


def _write_parquet(result: dict, out: str, workdir: str, step: int) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  features = np.asarray(result['features'], np.float32)
  columns = {
    'file_name': pa.array(result['file_names'], pa.string()),
    'feature': pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1]),
  }
  if 'labels' in result:
    columns['label'] = pa.array(result['labels'], pa.int32())
    columns['class_name'] = pa.array([result['class_names'][i] for i in result['labels']], pa.string())
  info = {'workdir': workdir, 'step': step, 'class_names': result.get('class_names')}
  table = pa.table(columns).replace_schema_metadata({'gsg_jax': json.dumps(info)})
  buffer = pa.BufferOutputStream()
  pq.write_table(table, buffer)
  storage.write_bytes(out, buffer.getvalue().to_pybytes())


def main(argv):
  from absl import flags

  f = flags.FLAGS
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {argv[1:]}')
  check_output(f.out)
  check_data(f.data)
  if f.batch_size is not None and f.batch_size < 1:
    raise ConfigError(f'--batch_size={f.batch_size} is invalid: expected a positive integer.')
  run = find_run(f.workdir, f.step)
  files, classes = list_data(f.data, f.split)  # Before the checkpoint is read: a folder without images fails fast.
  from gsg_jax.training.outputs import quiet_library_logs

  quiet_library_logs()
  encoder = Encoder(run, restore_variables(run), f.batch_size)
  result = embed_files(encoder, f.data, files, classes)
  write(result, f.out, run.workdir, run.step)
  n, d = result['features'].shape
  labelled = f', {len(result["class_names"])} classes' if 'labels' in result else ', unlabelled'
  print(f'Wrote {f.out}: {n} images × {d} features{labelled} (step {run.step}).')


def _define_flags():
  from absl import flags

  flags.DEFINE_string('workdir', None, 'Run directory (with config.json and checkpoints/).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string('data', None, 'Folder or zip of images: <image>, <class>/<image>, or <split>/<class>/<image>.')
  flags.DEFINE_string('split', '', 'Split folder to read, <split>/<class>/<image> (default: none).')
  flags.DEFINE_string('out', None, 'Output: features.npz or features.parquet (needs pyarrow).')
  flags.DEFINE_integer('batch_size', None, "Images per forward pass (default: the run's eval.batch_size).")


def run():
  """The ``gsg-embed`` command: user mistakes as one line on stderr and exit status 1 (``gsg_jax.cli``)."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
