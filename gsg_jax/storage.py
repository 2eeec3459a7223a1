"""One path layer for every file the library reads or writes: local folders and object stores alike.

A run directory may be a local path or a ``gs://bucket/run`` URL (the object
store that orbax's TensorStore writer supports; small files alone, e.g. an
export, may also go to any store etils.epath knows, such as ``s3://``):
on a pod every host sees the same bucket, checkpoints outlive the VMs, and a
resumed job finds its state at the same URL. Paths go through etils.epath, the
layer orbax already writes checkpoints with, so one URL means the same place
for the checkpoints and for every small file beside them.

Object stores differ from a disk in two ways this module hides:

* no append: ``AppendLog`` rewrites the whole object (rate-limited) instead;
* no rename needed for atomicity: writing one object is atomic, so
  ``write_bytes`` writes a local file through a temporary name and
  ``os.replace``, and an object in one write.

Local paths are made absolute (a run's paths stay valid if the working
directory changes); URLs are kept as given, never turned into a local
``./gs:/…`` folder.
"""

import io
import json
import os
import socket
import time
from typing import Any

from etils import epath


def is_url(path: str) -> bool:
  """Whether ``path`` names an object in a store (``scheme://…``) rather than a local file."""
  return '://' in str(path)


def resolve(path: str) -> str:
  """``path`` as the library stores it: a URL without its trailing slash, or an absolute local path."""
  path = os.fspath(path)
  if is_url(path):
    return path.rstrip('/')
  return os.path.abspath(os.path.expanduser(path))


def join(path: str, *parts: str) -> str:
  """``path``/``parts``: '/'-joined for URLs, ``os.path.join`` for local paths."""
  if is_url(path):
    return '/'.join([path.rstrip('/'), *(p.strip('/') for p in parts)])
  return os.path.join(path, *parts)


def basename(path: str) -> str:
  return os.path.basename(str(path).rstrip('/'))


def dirname(path: str) -> str:
  """The folder holding ``path`` (for a URL, up to the bucket)."""
  path = resolve(path)
  if is_url(path):
    head, _, _ = path.rpartition('/')
    return head if '://' in head and not head.endswith(':/') else path
  return os.path.dirname(path)


def exists(path: str) -> bool:
  return epath.Path(path).exists()


def isdir(path: str) -> bool:
  return epath.Path(path).is_dir()


def listdir(path: str) -> list[str]:
  """The names (not paths) in folder ``path``."""
  return sorted(p.name for p in epath.Path(path).iterdir())


def makedirs(path: str) -> None:
  """Create folder ``path`` and its parents (a no-op where the store has no folders)."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def ensure_writable_dir(path: str, what: str) -> str:
  """Create folder ``path`` if needed and check that files can be written in it, before any work; returns it
  resolved. A path that is a file, or a folder that cannot be written, is ``UnusablePathError`` naming ``what``
  (e.g. '--out')."""
  from gsg_jax.errors import UnusablePathError  # Local: errors imports nothing, but keeps this module's imports lean.

  path = resolve(path)
  if not is_url(path) and os.path.exists(path) and not os.path.isdir(path):
    raise UnusablePathError(f'{what} {path!r} is a file, not a folder.')
  try:
    makedirs(path)
    # Named by host and pid: every process of a pod may probe a shared folder at once.
    probe = join(path, f'.write_probe_{socket.gethostname()}_{os.getpid()}')
    write_text(probe, 'ok')
    remove(probe)
  except OSError as e:
    raise UnusablePathError(f'{what} {path!r} is not writable: {e.strerror or e}.') from e
  return path


def remove(path: str) -> None:
  epath.Path(path).unlink(missing_ok=True)


def read_bytes(path: str) -> bytes:
  return epath.Path(path).read_bytes()


def read_text(path: str) -> str:
  return epath.Path(path).read_text()


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def read_json_if_present(path: str) -> Any:
  """``read_json(path)``, or None where there is no such file: one read, not an existence check and a read (two
  round trips to an object store)."""
  try:
    return read_json(path)
  except (FileNotFoundError, NotADirectoryError):  # The latter: a parent is a file (a sweep folder's sweep.md).
    return None


def write_bytes(path: str, data: bytes) -> None:
  """Write ``data`` to ``path`` whole or not at all: readers never see half a file."""
  if is_url(path):
    epath.Path(path).write_bytes(data)  # One object write: atomic in the store.
    return
  partial = f'{path}.{os.getpid()}.tmp'
  try:
    with open(partial, 'wb') as f:
      f.write(data)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode())


def write_json(path: str, obj: Any, **kwargs) -> None:
  write_text(path, json.dumps(obj, **kwargs))


def load_npz(path: str) -> dict:
  """The arrays of the ``.npz`` at ``path`` (local or in a store), loaded into memory."""
  import numpy as np  # Local: keep this module light to import.

  with np.load(io.BytesIO(read_bytes(path))) as arrays:
    return dict(arrays)


def save_npz(path: str, **arrays) -> None:
  """``np.savez`` to ``path`` (local or in a store), written whole."""
  import numpy as np

  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def save_figure(fig, path: str, dpi: int) -> None:
  """A matplotlib figure as a PNG at ``path`` (local or in a store)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=dpi)
  write_bytes(path, buffer.getvalue())


class AppendLog:
  """A text file that grows by lines (``metrics.jsonl``), on a disk or in an object store.

  Local files are appended to and flushed line by line. Objects cannot be
  appended to: the log keeps its lines and rewrites the object at most every
  ``min_interval_s`` seconds (object stores limit writes to one object to about
  one a second), and on ``flush()`` / ``close()``. A resumed run reads the
  existing lines first, so nothing written before is lost.
  """

  def __init__(self, path: str, min_interval_s: float = 10.0):
    self.path, self.min_interval_s = path, min_interval_s
    self._remote = is_url(path)
    self._last_write = 0.0
    if self._remote:
      self._text = io.StringIO()
      if exists(path):
        self._text.write(read_text(path))
      self._file = None
    else:
      self._file = open(path, 'a')

  def write_line(self, line: str, urgent: bool = False) -> None:
    """Add ``line``; ``urgent`` lines reach an object store now rather than at the next interval."""
    if self._file is not None:
      self._file.write(line + '\n')
      self._file.flush()
      return
    self._text.write(line + '\n')
    if urgent or time.monotonic() - self._last_write >= self.min_interval_s:
      self.flush()

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
    else:
      write_text(self.path, self._text.getvalue())
      self._last_write = time.monotonic()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    elif self._text is not None:
      self.flush()
      self._text = None
