"""Two JAX processes on the CPU (jax.distributed + gloo collectives) train exactly like one process over 2 devices.

Each process of the pair owns 1 CPU device and feeds its half of the same
global batch through ``jax.make_array_from_process_local_data``; the
reference is one process with 2 simulated devices. Compiled programs are
cached in a shared directory so repeated test runs are quick.
"""

import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # Subprocesses: the full tier only.

WORKER = os.path.join(REPO, 'tests', 'multiprocess_worker.py')
TIMEOUT = 400


def _env(devices):
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu',
              PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'tests')]),
              JAX_COMPILATION_CACHE_DIR=os.path.join(tempfile.gettempdir(), 'gsg_jax_test_jax_cache'),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  port = _free_port()
  procs, outs = [], []
  for i in range(2):
    outs.append(tmp_path / f'proc{i}.npz')
    procs.append(subprocess.Popen([sys.executable, WORKER, str(outs[-1]), '2', str(i), str(port)], env=_env(1),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]

  reference = tmp_path / 'reference.npz'
  subprocess.run([sys.executable, WORKER, str(reference), '1', '0', '0'], env=_env(2), check=True, timeout=TIMEOUT)
  ref = np.load(reference)
  assert int(ref['devices']) == 2 and int(ref['processes']) == 1
  for out in outs:
    got = np.load(out)
    assert int(got['devices']) == 2 and int(got['processes']) == 2
    np.testing.assert_allclose(got['losses'], ref['losses'], rtol=1e-5, atol=1e-6)
    assert set(got.files) == set(ref.files)
    for key in ref.files:
      if key not in ('losses', 'devices', 'processes'):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
