"""Two JAX processes on the CPU (jax.distributed + gloo collectives) train exactly like one process over 2 devices.

Each process of the pair owns 1 CPU device and feeds its half of the same
global batch through ``jax.make_array_from_process_local_data``; the
reference is one process with 2 simulated devices. Every compiled program goes
into conftest's session cache, so each is compiled once.
"""

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from test_faults import KILLER

pytestmark = pytest.mark.slow  # Subprocesses: the full tier only.

WORKER = os.path.join(REPO, 'tests', 'multiprocess_worker.py')
TIMEOUT = 400


def _env(devices):
  return dict(
    os.environ,
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'tests')]),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
  )


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  port = _free_port()
  procs, outs = [], []
  for i in range(2):
    outs.append(tmp_path / f'proc{i}.npz')
    procs.append(
      subprocess.Popen(
        [sys.executable, WORKER, str(outs[-1]), '2', str(i), str(port)],
        env=_env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
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


# ------------------------------------------------- preemption of one host of two

STEPS_PER_EPOCH, EPOCHS = 8, 8  # 512 images / batch 64; the hosts agree a stop a few steps after the signal at 8.
TRAIN_FLAGS = [
  '--config=configs/simsiam_gsg.py:quick',
  '--config.data.builtin_num_train=512',
  '--config.data.builtin_num_heldout=256',
  '--config.model.width=8',
  '--config.augment.crop_size=16',
  '--config.batch_size=64',
  f'--config.num_epochs={EPOCHS}',
  f'--config.eval_every_epochs={EPOCHS}',
  '--config.checkpoint_every_steps=1000',
  '--config.log_every_steps=4',
  '--config.model.projection_dim=32',
  '--config.model.projector_hidden_dim=32',
  '--config.model.predictor_hidden_dim=8',
  '--config.eval.batch_size=256',
]


def _train(workdir, devices, process_id=None, port=None, sigterm_at=None):
  """``gsg_jax.main`` in a subprocess; with ``sigterm_at``, the process sends itself SIGTERM at that step
  (``test_faults.KILLER``), so where the signal lands does not depend on the machine's speed."""
  if process_id is None:
    cluster = ['--config.distributed.mode=off']
  else:
    cluster = [
      '--config.distributed.mode=explicit',
      f'--config.distributed.coordinator_address=127.0.0.1:{port}',
      '--config.distributed.num_processes=2',
      f'--config.distributed.process_id={process_id}',
    ]
  env = dict(_env(devices), JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo')
  program = ['-m', 'gsg_jax.main']
  if sigterm_at is not None:
    program = ['-c', KILLER]
    env.update(GSG_TEST_KILL_STEP=str(sigterm_at), GSG_TEST_KILL_MODE='sigterm')
  return subprocess.Popen(
    [sys.executable, *program, f'--workdir={workdir}', *TRAIN_FLAGS, *cluster],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _finish(procs):
  try:
    return [p.communicate(timeout=TIMEOUT) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def _final_state(workdir):
  import jax
  from conftest import tiny_config

  from gsg_jax.training import build_trainer
  from gsg_jax.training.checkpointing import Checkpointer

  config = tiny_config('simsiam_gsg')
  template = build_trainer(config, STEPS_PER_EPOCH, num_classes=10).init(jax.random.key(0), (32, 32, 3))
  checkpointer = Checkpointer(str(workdir), 1000, 3)
  try:
    assert checkpointer.latest_step() == STEPS_PER_EPOCH * EPOCHS
    state = checkpointer.restore(template)
  finally:
    checkpointer.close()
  return {
    jax.tree_util.keystr(k): np.asarray(v)
    for k, v in jax.tree_util.tree_leaves_with_path({'params': state.params, 'stats': state.model_state})
  }


def test_sigterm_to_one_host_stops_both_at_the_same_step_then_resumes(tmp_path):
  workdir = tmp_path / 'run'
  port = _free_port()
  # One host only is signalled, as a preempted VM: process 1 at step 8.
  procs = [_train(workdir, 1, i, port, sigterm_at=8 if i == 1 else None) for i in range(2)]
  outputs = _finish(procs)
  stops = []
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 143, err[-3000:]
    stops.append(int(re.search(r'stopped after step (\d+)', err).group(1)))
  assert 8 <= stops[0] == stops[1] < STEPS_PER_EPOCH * EPOCHS, stops
  assert sorted(int(e) for e in os.listdir(workdir / 'checkpoints') if e.isdigit())[-1] == stops[0]

  port = _free_port()
  resumed = [_train(workdir, 1, i, port) for i in range(2)]
  for p, (_, err) in zip(resumed, _finish(resumed)):
    assert p.returncode == 0, err[-3000:]
  reference = tmp_path / 'reference'  # Uninterrupted, one process over 2 devices: the same global program.
  ref = _train(reference, 2)
  out, err = _finish([ref])[0]
  assert ref.returncode == 0, err[-3000:]
  got, want = _final_state(workdir), _final_state(reference)
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
