"""Shared test fixtures: tiny configs that train in seconds on a CPU."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from fake_gcs import fake_gcs  # noqa: F401 (a fixture: a fake gs:// object store)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One persistent XLA compilation cache for the session, inherited by the CLI runs that tests start as
# subprocesses and by pytest-xdist's workers (they start after the controller has set it): the same tiny train
# step is compiled once instead of once per process (CPU compiles dominate this suite's time). A fresh folder each
# session, so no test ever sees a stale entry; the process that made it removes it.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='gsg_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


_UNOPTIMISED = [False]  # Whether the tests now run with jax_disable_most_optimizations.


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """The fast tier compiles with most XLA optimisations off, as the Flax ImageNet example's train_test.py does: its
  tests are compile-bound (a third less time here) and every tolerance holds without them. Slow tests train for
  hundreds of steps and run optimised. Set before the test's fixtures, so a module's trained run is built in its
  test's tier. jit's cache does not key on the flag, so it is emptied at each switch."""
  unoptimised = item.get_closest_marker('slow') is None
  if unoptimised != _UNOPTIMISED[0]:
    import jax

    jax.config.update('jax_disable_most_optimizations', unoptimised)
    jax.clear_caches()
    _UNOPTIMISED[0] = unoptimised


def pytest_configure(config):
  """Under ``-n 2`` (pytest-xdist), each worker takes whole modules (``--dist=loadscope``) rather than single tests:
  a module's fixtures (a trained run) are then built once, not once per worker."""
  if getattr(config.option, 'dist', None) == 'load':
    config.option.dist = 'loadscope'


# A run of 8 steps (512 images, batch 64, one epoch) for command-line tests, with checkpoints and logs every 2 steps.
TINY_FLAGS = [
  '--config.data.builtin_num_train=512',
  '--config.data.builtin_num_heldout=256',
  '--config.model.width=8',
  '--config.augment.crop_size=16',
  '--config.batch_size=64',
  '--config.num_epochs=1',
  '--config.checkpoint_every_steps=2',
  '--config.log_every_steps=2',
  '--config.model.projection_dim=32',
  '--config.model.projector_hidden_dim=32',
  '--config.model.predictor_hidden_dim=8',
  '--config.distributed.mode=off',
  '--config.eval.batch_size=256',
]


def cifar10_zip():
  """The shared CIFAR-10 zip: $GSG_CIFAR_ZIP, this workplace's copy, or ../shared/data beside the checkout; None if
  absent."""
  candidates = [
    os.environ.get('GSG_CIFAR_ZIP', ''),
    '/work/shared/data/cifar10-train-jpeg.zip',
    os.path.join(REPO, '..', 'shared', 'data', 'cifar10-train-jpeg.zip'),
  ]
  return next((p for p in candidates if p and os.path.isfile(p)), None)


def tiny_config(name='simsiam', **overrides):
  """``configs/<name>.py:quick``, shrunk: 512 synthetic images, a width-8 ConvNet, batch 64."""
  from gsg_jax import config_lib

  c = config_lib.named_config(name, 'quick')
  c.data.builtin_num_train = 512
  c.data.builtin_num_heldout = 256
  c.model.width = 8
  c.model.projection_dim = 32
  c.model.projector_hidden_dim = 32
  c.model.predictor_hidden_dim = 8
  c.augment.crop_size = 16
  c.batch_size = 64
  c.num_epochs = 2
  c.log_every_steps = 4
  c.checkpoint_every_steps = 4
  c.eval_every_epochs = 1
  c.eval.batch_size = 256
  c.eval.knn_k = 20
  # Tests of the floors switch them on; the rest need not pay for them.
  c.eval.monitor = ('knn', 'online_probe')
  c.eval.protocols = ('knn', 'fast_linear', 'diagnostics', 'predictor')
  c.distributed.mode = 'off'
  for key, value in overrides.items():
    target = c
    *path, last = key.split('.')
    for part in path:
      target = target[part]
    target[last] = value
  return c


@pytest.fixture
def make_tiny_config():
  return tiny_config


def check_command_cases(module: str, cases: dict, timeout: int = 300) -> dict:
  """Runs ``python -m <module> <flags>`` for every ``flags`` of ``cases`` at once, in parallel.

  ``cases`` maps flags to the text the one ``error: ...`` line must hold
  (exit 1, no traceback), or to None for a run that must succeed (exit 0).
  Returns ``{flags: (stdout, stderr)}`` of the successful runs, for the
  caller's own checks.
  """
  processes = {
    flags: subprocess.Popen(
      [sys.executable, '-m', module, *flags.split()],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for flags in cases
  }
  succeeded = {}
  for flags, message in cases.items():
    stdout, stderr = processes[flags].communicate(timeout=timeout)
    code = processes[flags].returncode
    if message is None:
      assert code == 0, (flags, stderr[-2000:])
      succeeded[flags] = (stdout, stderr)
      continue
    assert code == 1 and 'Traceback' not in stderr, (flags, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and message in lines[0], (flags, stderr[-2000:])
  return succeeded
