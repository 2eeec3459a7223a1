"""Failures and interruptions, end to end through the CLI and the launch scripts.

* SIGKILL between checkpoints, and SIGKILL while a checkpoint is being
  written, each at a fixed step (the run kills itself there, see ``KILLER``):
  re-running the same command resumes from the last finalised checkpoint and
  ends with the same parameters as an uninterrupted run (rtol 1e-5).
* SIGTERM: exit status 143 with a message; the re-run resumes and matches.
* Bad workdir, corrupt image, non-finite loss: exit 1 with 'error: ...' naming
  the problem; a non-finite loss leaves no checkpoint at or after its step.
* launch/*: --dry-run prints the command; a missing config file or a
  misspelt key fails before anything is launched.

Compiled programs are cached in a shared directory so re-runs take seconds.
"""

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, TINY_FLAGS, tiny_config

pytestmark = pytest.mark.slow  # Subprocesses: the full tier only.

TIMEOUT = 300
STEPS = 8  # 512 images / batch 64, one epoch.
TINY = TINY_FLAGS
ENV = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)  # With conftest's compilation cache.


def command(workdir, *extra):
  return [
    sys.executable,
    '-m',
    'gsg_jax.main',
    '--config=configs/simsiam_gsg.py:quick',
    f'--workdir={workdir}',
    *TINY,
    *extra,
  ]


def run(workdir, *extra, check=True):
  result = subprocess.run(command(workdir, *extra), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


# ``gsg_jax.main`` with the run's checkpointer wrapped, so that the process signals itself at step $GSG_TEST_KILL_STEP,
# when the loop asks to checkpoint it: 'before_save' SIGKILLs once every earlier save is final on disk and before this
# one starts, 'during_save' SIGKILLs once orbax has started writing it (its temporary folder exists) and before it is
# finalised, 'sigterm' sends SIGTERM before the save and carries on. The class is patched, not an instance, so the
# hook holds wherever the loop imports it from.
KILLER = """
import os, signal, sys
from gsg_jax import main
from gsg_jax.training.checkpointing import Checkpointer

kill_step, mode = int(os.environ['GSG_TEST_KILL_STEP']), os.environ['GSG_TEST_KILL_MODE']
save = Checkpointer.save

def save_or_die(self, step, state, force=False):
  if step == kill_step and mode == 'before_save':
    self.manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
  if step == kill_step and mode == 'sigterm':
    os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line.
  started = save(self, step, state, force)
  if step == kill_step and mode == 'during_save':
    os.kill(os.getpid(), signal.SIGKILL)
  return started

Checkpointer.save = save_or_die
sys.argv[0] = 'gsg_jax.main'
main.run()
"""


def run_and_kill(workdir, step, mode, returncode=-signal.SIGKILL):
  """Runs the command under ``KILLER``: it must end with ``returncode``, not finish."""
  env = dict(ENV, GSG_TEST_KILL_STEP=str(step), GSG_TEST_KILL_MODE=mode)
  argv = [sys.executable, '-c', KILLER, *command(workdir)[3:]]
  result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == returncode, (result.returncode, result.stderr[-3000:])
  return result


def checkpoint_entries(workdir):
  return sorted(os.listdir(os.path.join(workdir, 'checkpoints')))


def logged_step(workdir) -> int:
  """The last train step written to metrics.jsonl (0 before any)."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      lines = f.readlines()
  except FileNotFoundError:
    return 0
  steps = [0]
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # A line being written.
      continue
    if record.get('kind') == 'train':
      steps.append(record['step'])
  return max(steps)


def final_params(workdir):
  """Restore the final checkpoint with Checkpointer and a Trainer.init template."""
  import jax

  from gsg_jax.training import build_trainer
  from gsg_jax.training.checkpointing import Checkpointer

  config = tiny_config('simsiam_gsg', num_epochs=1, checkpoint_every_steps=2, log_every_steps=2)
  template = build_trainer(config, STEPS, num_classes=10).init(jax.random.key(0), (32, 32, 3))
  checkpointer = Checkpointer(str(workdir), 2, 3)
  try:
    assert checkpointer.latest_step() == STEPS
    state = checkpointer.restore(template)
  finally:
    checkpointer.close()
  return {
    jax.tree_util.keystr(k): np.asarray(v)
    for k, v in jax.tree_util.tree_leaves_with_path(
      {'params': state.params, 'stats': state.model_state, 'opt': state.opt_state}
    )
  }


def assert_same(got, want):
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  run(workdir)
  return final_params(workdir)


def test_sigkill_between_checkpoints_then_resume(tmp_path, reference):
  # Killed after step 6 is trained and logged, before its checkpoint: steps 5 and 6 are lost, the checkpoint at
  # step 4 is the last one (finalised before the kill), and the re-run must redo 5 and 6 as the first run did.
  run_and_kill(tmp_path, 6, 'before_save')
  assert checkpoint_entries(tmp_path) == ['2', '4']
  assert logged_step(tmp_path) == 6
  result = run(tmp_path)
  assert 'Resumed from the checkpoint at step 4 ' in result.stdout, result.stdout[-3000:]
  assert_same(final_params(tmp_path), reference)


def test_sigkill_during_checkpoint_write_then_resume(tmp_path, reference):
  # Killed while orbax writes the checkpoint of step 6: its temporary folder stays, unfinalised, beside step 4's.
  run_and_kill(tmp_path, 6, 'during_save')
  entries = checkpoint_entries(tmp_path)
  assert entries[:2] == ['2', '4'] and len(entries) == 3 and entries[2].startswith('6.') and 'tmp' in entries[2]
  result = run(tmp_path)
  assert 'Resumed from the checkpoint at step 4 ' in result.stdout, result.stdout[-3000:]
  assert_same(final_params(tmp_path), reference)


def test_sigterm_exits_143_and_resumes(tmp_path, reference):
  # SIGTERM during step 2's checkpoint: the loop finishes step 3, checkpoints it (off the interval) and exits 143.
  err = run_and_kill(tmp_path, 2, 'sigterm', returncode=143).stderr
  assert 'SIGTERM received: stopped after step 3' in err and 'Run the same command again to resume' in err
  assert checkpoint_entries(tmp_path) == ['2', '3']
  result = run(tmp_path)
  assert 'Resumed from the checkpoint at step 3 ' in result.stdout, result.stdout[-3000:]
  assert_same(final_params(tmp_path), reference)


def test_unusable_workdir_fails_before_training(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = run(blocker / 'workdir', check=False)
  assert result.returncode == 1
  assert 'error:' in result.stderr and 'not writable' in result.stderr
  assert 'step ' not in result.stdout
  if os.geteuid() != 0:  # root ignores permission bits.
    read_only = tmp_path / 'read_only'
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
      result = run(read_only / 'workdir', check=False)
    finally:
      read_only.chmod(0o700)
    assert result.returncode == 1 and 'not writable' in result.stderr


def test_corrupt_image_is_named(tmp_path):
  from PIL import Image

  rng = np.random.default_rng(0)
  for cls in ('cat', 'dog'):
    folder = tmp_path / 'images' / 'train' / cls
    folder.mkdir(parents=True)
    for i in range(8):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f'{i}.png')
  (tmp_path / 'images' / 'train' / 'dog' / 'broken.png').write_bytes(b'this is not a png' * 10)
  result = run(
    tmp_path / 'work',
    '--config.data.source=folder',
    f'--config.data.path={tmp_path / "images"}',
    '--config.data.image_size=16',
    '--config.batch_size=8',
    '--config.eval.batch_size=8',
    check=False,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'error:' in result.stderr and 'broken.png' in result.stderr


def test_non_finite_loss_stops_with_step_and_no_later_checkpoint(tmp_path):
  result = run(tmp_path, '--config.optim.base_lr=1e30', check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'non-finite loss' in result.stderr
  bad_step = int(result.stderr.split('at step ')[1].split(';')[0])
  saved = [
    int(os.path.basename(p)) for p in glob.glob(str(tmp_path / 'checkpoints' / '*')) if os.path.basename(p).isdigit()
  ]
  assert all(s < bad_step for s in saved), (bad_step, saved)


# ----------------------------------------------------------------- launch scripts

LAUNCHERS = {
  'tpu_pod.sh': ['tpu-name', 'us-central2-b'],
  'slurm_gpu.sbatch': [],
  'single_host_gpus.sh': [],
}
EXPECTED = {
  'tpu_pod.sh': ['gcloud compute tpus tpu-vm ssh tpu-name', '--worker=all', 'gsg_jax.main', 'distributed.mode=auto'],
  'slurm_gpu.sbatch': ['srun', 'gsg_jax.main', 'distributed.mode=auto'],
  'single_host_gpus.sh': ['gsg_jax.main', 'distributed.mode=off'],
}


def launch(script, *args):
  return subprocess.run(
    ['bash', os.path.join(REPO, 'launch', script), *args],
    cwd=REPO,
    env=dict(ENV, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH']),
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.mark.parametrize('script', sorted(LAUNCHERS))
def test_launch_dry_run_prints_command(tmp_path, script):
  workdir = 'gs://bucket/run' if script == 'tpu_pod.sh' else str(tmp_path / 'run')
  result = launch(
    script, '--dry-run', 'configs/simsiam_gsg.py:quick', workdir, *LAUNCHERS[script], '--', '--config.batch_size=128'
  )
  assert result.returncode == 0, result.stderr
  for part in EXPECTED[script] + ['configs/simsiam_gsg.py:quick', 'batch_size=128']:
    assert part in result.stdout.replace('\\', ''), (part, result.stdout)
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('script', sorted(LAUNCHERS))
def test_launch_validation_fails_before_launching(tmp_path, script):
  extra = LAUNCHERS[script]
  usage = launch(script)
  assert usage.returncode == 2 and 'usage:' in usage.stderr
  missing = launch(script, '--dry-run', 'configs/no_such_config.py', str(tmp_path), *extra)
  assert missing.returncode == 1 and 'config file not found' in missing.stderr
  blocker = tmp_path / 'file'
  blocker.write_text('')
  bad_workdir = launch(script, '--dry-run', 'configs/simsiam_gsg.py:quick', str(blocker / 'run'), *extra)
  assert bad_workdir.returncode == 1 and 'not writable' in bad_workdir.stderr
  results = [missing, bad_workdir]
  if script == 'single_host_gpus.sh':  # The config checks are shared (launch/common.sh): test them once.
    bad_key = launch(
      script, '--dry-run', 'configs/simsiam_gsg.py:quick', str(tmp_path), *extra, '--', '--config.optim.no_such_key=1'
    )
    assert bad_key.returncode == 1 and 'no_such_key' in bad_key.stderr
    bad_value = launch(
      script, '--dry-run', 'configs/simsiam_gsg.py:quick', str(tmp_path), *extra, '--', '--config.batch_size=-1'
    )
    assert bad_value.returncode == 1 and 'batch_size' in bad_value.stderr
    results += [bad_key, bad_value]
  for result in results:
    assert 'gsg_jax.main' not in result.stdout
