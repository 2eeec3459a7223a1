"""A fake ``gs://`` object store for tests: no network, every byte under one local folder.

The ``fake_gcs`` fixture routes both layers that reach GCS to a temporary folder:

* etils.epath (every small file, and orbax's folder operations) through an
  fsspec filesystem registered for the ``gs``/``gcs`` protocols, with epath
  told not to use TensorFlow's GCS client;
* TensorStore (orbax's array writes) through a ``file`` kvstore at the same
  place, in place of its native ``gcs`` driver.

Like GCS and unlike a disk, the fake refuses to append to an object, so code
that appends to a file in a run directory fails here as it would on a bucket.
"""

import os
import sys

import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem


@pytest.fixture
def fake_gcs(monkeypatch, tmp_path):
  """The local folder behind ``gs://``: ``gs://bucket/x`` is ``<folder>/bucket/x``."""
  from etils.epath import backend, gpath
  from orbax.checkpoint._src.path import gcs_utils

  root = str(tmp_path / 'fake_gcs')
  os.makedirs(root)

  class FakeGCS(DirFileSystem):
    protocol = ('gs', 'gcs')
    cachable = False

    def __init__(self, *args, **kwargs):  # epath passes GCS options (finalize_on_close): not ours.
      super().__init__(path=root, fs=LocalFileSystem(auto_mkdir=True))

    def open(self, path, mode='rb', *args, **kwargs):
      if 'a' in mode:
        raise NotImplementedError(f'object stores cannot append (mode {mode!r}): {path}')
      return super().open(path, mode, *args, **kwargs)

  def reset_caches():
    gpath._is_tf_installed.cache_clear()
    backend.fsspec_backend._get_filesystem.cache_clear()

  previous = {p: fsspec.registry.get(p) for p in FakeGCS.protocol}
  for protocol in FakeGCS.protocol:
    fsspec.register_implementation(protocol, FakeGCS, clobber=True)
  monkeypatch.setenv('EPATH_USE_TF', 'false')
  reset_caches()
  monkeypatch.setattr(
    gcs_utils,
    'get_kvstore_for_gcs',
    lambda path: {
      'driver': 'file',
      'path': os.path.join(root, *gcs_utils.parse_gcs_path(path, add_trailing_slash=False)),
    },
  )
  monkeypatch.setattr(gcs_utils, 'is_hierarchical_namespace_enabled', lambda path: False)
  # TensorBoard would write through TensorFlow's own GCS client: off, as where TensorFlow is absent.
  monkeypatch.setitem(sys.modules, 'clu', None)
  yield root
  for protocol, implementation in previous.items():
    if implementation is None:
      sys.modules['fsspec.registry']._registry.pop(protocol, None)  # fsspec.registry is a read-only view.
    else:
      fsspec.register_implementation(protocol, implementation, clobber=True)
  monkeypatch.undo()  # The environment first: the caches are then rebuilt from it.
  reset_caches()
