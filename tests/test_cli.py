"""Every command turns a user's mistake into one line and exit status 1; a bug keeps its traceback."""

import subprocess
import sys

import pytest

from conftest import REPO
from gsg_jax import cli, errors

TIMEOUT = 120


def _run_guarded(monkeypatch, main):
  monkeypatch.setattr(sys, 'argv', ['prog'])
  cli.run(main)


def test_user_error_is_one_line_and_exit_1(monkeypatch, capsys):
  def main(argv):
    raise errors.MissingPathError('no run in /nowhere.')
  with pytest.raises(SystemExit) as exit_info:
    _run_guarded(monkeypatch, main)
  assert exit_info.value.code == 1
  assert capsys.readouterr().err == 'error: no run in /nowhere.\n'


def test_preempted_exits_143(monkeypatch, capsys):
  def main(argv):
    raise errors.Preempted('SIGTERM received: stopped after step 3.')
  with pytest.raises(SystemExit) as exit_info:
    _run_guarded(monkeypatch, main)
  assert exit_info.value.code == cli.PREEMPTED_EXIT_CODE == 143
  assert 'stopped after step 3' in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
  def main(argv):  # As a shape error inside a new loss would be.
    raise ValueError('Incompatible shapes for broadcasting: (8, 128) and (4, 128)')
  with pytest.raises(ValueError, match='Incompatible shapes'):
    _run_guarded(monkeypatch, main)


def test_root_message_unwraps_ml_collections():
  try:
    try:
      raise ValueError("unknown preset 'quik'")
    except ValueError as inner:
      raise OSError('Failed loading config file') from inner
  except OSError as e:
    assert cli.root_message(e) == "unknown preset 'quik'"
  try:
    try:
      raise KeyError('batch_sizee')
    except KeyError:  # What ml-collections raises for a misspelt key: the hint is in the outer error.
      raise AttributeError(repr('\'batch_sizee\'\nDid you mean "batch_size"?'))
  except AttributeError as e:
    assert cli.root_message(e) == 'Did you mean "batch_size"?'


@pytest.mark.slow  # Subprocesses.
@pytest.mark.parametrize('flags, message', [
    (['--config=configs/simsiam.py:quick', '--config.batch_sizee=3'], 'Did you mean "batch_size"'),
    (['--config=configs/simsiam.py:quik'], "unknown preset 'quik'"),
    (['--config=configs/no_such_method.py'], "No such file or directory: 'configs/no_such_method.py'"),
    (['--config=configs/simsiam.py:quick', '--config.batch_size=abc'], "flag --config.batch_size=abc: invalid literal"),
    (['--config=configs/simsiam.py:quick', '--config.method.loss=negcoss'], "config.method.loss='negcoss' is invalid"),
    (['--config=configs/simsiam.py:quick', '--config.data.source=folder', '--config.data.path=/no/such/folder'],
     "'/no/such/folder'"),
])
def test_train_command_mistakes(tmp_path, flags, message):
  result = subprocess.run([sys.executable, '-m', 'gsg_jax.main', f'--workdir={tmp_path}', *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT, env={'JAX_PLATFORMS': 'cpu',
                                                                                'PATH': '/usr/bin:/bin'})
  assert result.returncode == 1, result.stderr[-2000:]
  errors_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors_lines) == 1 and message in errors_lines[0], result.stderr[-2000:]
  assert 'Traceback' not in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_sweep_command_mistake(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'gsg_jax.sweep', '--config=configs/simsiam.py:quick',
                           '--grid=batch_sizes=16', f'--workdir={tmp_path}'], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT, env={'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'})
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert "error: --grid: the config has no key 'batch_sizes'." in result.stderr
