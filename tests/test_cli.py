"""Every command turns a user's mistake into one line and exit status 1; a bug keeps its traceback."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, TINY_FLAGS

from gsg_jax import cli, errors

TIMEOUT = 300
ENV = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)  # With conftest's compilation cache.


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
      raise AttributeError(repr('\'batch_sizee\'\nDid you mean "batch_size"?')) from None
  except AttributeError as e:
    assert cli.root_message(e) == 'no config key \'batch_sizee\'. Did you mean "batch_size"?'


# ---------------------------------------------------------------- the battery: every command, every mistake


def _snapshot(folder) -> dict:
  """Every file under ``folder`` with its size, mtime and bytes: equal snapshots mean nothing changed."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, f.read())
  return out


@pytest.fixture(scope='module')
def places(tmp_path_factory):
  """The paths the battery's commands are pointed at; ``read_only`` is None where no read-only mount can be made."""
  root = tmp_path_factory.mktemp('battery')
  run = root / 'run'
  result = subprocess.run(
    [sys.executable, '-m', 'gsg_jax.main', '--config=configs/simsiam_gsg.py:quick', f'--workdir={run}', *TINY_FLAGS],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    env=ENV,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  (root / 'a_file').write_text('not a folder')
  (root / 'empty').mkdir()
  (root / 'folder.npz').mkdir()
  (root / 'no_checkpoint').mkdir()
  shutil.copy(run / 'config.json', root / 'no_checkpoint' / 'config.json')
  for name in ('bound', 'read_only'):  # Copies: the commands of one must not see another's writes.
    shutil.copytree(run, root / name)
  read_only = root / 'read_only'
  mounted = subprocess.run(['mount', '--bind', str(read_only), str(read_only)], capture_output=True).returncode == 0
  mounted = (
    mounted and subprocess.run(['mount', '-o', 'remount,bind,ro', str(read_only)], capture_output=True).returncode == 0
  )
  if mounted:
    try:
      (read_only / 'probe').write_text('')
      mounted = False  # Still writable (a mount namespace that ignores ro).
    except OSError:
      pass
  places = {
    'root': str(root),
    'run': str(run),
    'file': str(root / 'a_file'),
    'empty': str(root / 'empty'),
    'folder_npz': str(root / 'folder.npz'),
    'no_checkpoint': str(root / 'no_checkpoint'),
    'bound': str(root / 'bound'),
    'read_only': str(read_only) if mounted else None,
  }
  yield places
  if mounted:
    subprocess.run(['umount', str(read_only)], check=False)


TRAIN, GSG = 'gsg_jax.main', '--config=configs/simsiam_gsg.py:quick'
LINEAR_DYNAMICS, LANDSCAPE = 'gsg_jax.experiments.linear_dynamics', 'gsg_jax.experiments.landscape'
LD_QUICK = '--config=configs/linear_dynamics.py:quick'


def _console_script(name: str, module: str) -> list[str]:
  """``name`` as an installed console script runs it: ``sys.argv[0]`` is the script, not the module."""
  return ['-c', f'import sys; sys.argv[0] = "/venv/bin/{name}"; from {module} import run; run()']


HELP = 'help'  # absl's --help: the flags on stdout, then exit status 1 (absl's convention).
# (what the user did, the command: a module or a console script, its arguments ({place} filled in), the exit
# status, a fragment of the one 'error: ' line (exit 1) or of stdout (exit 0, HELP), and the place that must not
# change).
# fmt: off
BATTERY = [
    # Training: config mistakes.
    ('misspelt config key', TRAIN, [GSG, '--workdir={root}/t1', '--config.batch_sizee=3'], 1,
     'no config key \'batch_sizee\'. Did you mean "batch_size"', None),
    ('unknown preset', TRAIN, ['--config=configs/simsiam.py:quik', '--workdir={root}/t2'], 1, "unknown preset 'quik'",
     None),
    ('missing config file', TRAIN, ['--config=configs/no_such_method.py', '--workdir={root}/t3'], 1,
     "No such file or directory: 'configs/no_such_method.py'", None),
    ('value of the wrong type', TRAIN, [GSG, '--workdir={root}/t4', '--config.batch_size=abc'], 1,
     'flag --config.batch_size=abc: invalid literal', None),
    ('unknown loss', TRAIN, [GSG, '--workdir={root}/t5', '--config.method.loss=negcoss'], 1,
     "config.method.loss='negcoss' is invalid", None),
    ('a boolean for a predictor name', TRAIN, [GSG, '--workdir={root}/t6', '--config.method.predictor=False'], 1,
     "config.method.predictor='False' is invalid", None),
    ('missing data folder', TRAIN, [GSG, '--workdir={root}/t7', '--config.data.source=folder',
                                    '--config.data.path=/no/such/folder'], 1, "'/no/such/folder'", None),
    ('zero epochs', TRAIN, [GSG, '--workdir={root}/t8', *TINY_FLAGS, '--config.num_epochs=0'], 1,
     'config.num_epochs=0 is invalid: expected positive', None),
    ('workdir inside a file', TRAIN, [GSG, '--workdir={file}/run', *TINY_FLAGS], 1, 'is not writable', None),
    ('diverging before any checkpoint', TRAIN, [GSG, '--workdir={root}/t9', *TINY_FLAGS, '--config.optim.base_lr=1e30',
                                                '--config.checkpoint_every_steps=100'], 1,
     'no checkpoint was written yet. Training diverged: try a lower learning rate', None),
    # Training: a run directory keeps its identity and its results.
    ('resuming with another method', TRAIN, ['--config=configs/simsiam.py:quick', '--workdir={bound}', *TINY_FLAGS],
     1, 'holds a run of another config: data.stream_views (4 there, 2 here), method.loss', 'bound'),
    ('resuming with another width', TRAIN, [GSG, '--workdir={bound}', *TINY_FLAGS, '--config.model.width=16'], 1,
     'model.width (8 there, 16 here)', 'bound'),
    ('resuming with another batch size', TRAIN, [GSG, '--workdir={bound}', *TINY_FLAGS, '--config.batch_size=32'], 1,
     'batch_size (64 there, 32 here)', 'bound'),
    ('re-running a finished run', TRAIN, [GSG, '--workdir={bound}', *TINY_FLAGS, '--config.log_every_steps=4'], 0,
     'this run finished at step 8 (1 epochs); nothing to do', 'bound'),
    ('a held-out split too small to mean anything', TRAIN,
     [GSG, '--workdir={root}/t10', *TINY_FLAGS, '--config.data.builtin_num_heldout=64'], 0,
     'the held-out split has only 64 images', None),
    ('help of the console script', TRAIN, [*_console_script('gsg-train', 'gsg_jax.main'), '--help'], HELP,
     '--workdir: Directory for checkpoints', None),
    # Evaluation.
    ('evaluating a missing run', 'gsg_jax.evaluate', ['--workdir={root}/no_run'], 1, 'does not exist', None),
    ('evaluating a file', 'gsg_jax.evaluate', ['--workdir={file}'], 1, 'is a file, not a run directory', None),
    ('evaluating a read-only run', 'gsg_jax.evaluate', ['--workdir={read_only}'], 1,
     'the evaluation folder', 'read_only'),
    ('unreadable evaluation data', 'gsg_jax.evaluate', ['--workdir={run}', '--memory_data={root}/none.zip',
                                                        '--heldout_data={root}/none.zip'], 1, 'none.zip', None),
    ('unknown linear protocol', 'gsg_jax.evaluate', ['--workdir={run}', '--linear_protocol=moco'], 1, "'moco'", None),
    ('help of the evaluate script', 'gsg_jax.evaluate',
     [*_console_script('gsg-evaluate', 'gsg_jax.evaluate'), '--help'], HELP, '--protocols', None),
    # Reports.
    ('reporting no runs', 'gsg_jax.report', [], 1, 'no run directories given', None),
    ('reporting a missing run', 'gsg_jax.report', ['{root}/no_run'], 1, 'does not exist', None),
    ('reporting an empty folder', 'gsg_jax.report', ['{empty}'], 1, 'has no config.json', None),
    ('reporting a run without checkpoints', 'gsg_jax.report', ['{no_checkpoint}'], 1, 'no checkpoint in', None),
    ('report output is a file', 'gsg_jax.report', ['{run}', '--out={file}'], 1, 'is a file, not a folder', None),
    ('help of the report script', 'gsg_jax.report', [*_console_script('gsg-report', 'gsg_jax.report'), '--help'], HELP,
     '--out: Output folder', None),
    # Embedding.
    ('embedding into a file\'s folder', 'gsg_jax.embed',
     ['--workdir={run}', '--data={empty}', '--out={file}/features.npz'], 1, 'is a file, not a folder', None),
    ('embedding onto a folder', 'gsg_jax.embed', ['--workdir={run}', '--data={empty}', '--out={folder_npz}'], 1,
     'is a folder: name a file in it', None),
    # Sweeps and experiments.
    ('sweeping a key the config lacks', 'gsg_jax.sweep', ['--config=configs/simsiam.py:quick', '--grid=batch_sizes=16',
                                                         '--workdir={root}/s1'], 1,
     "--grid: the config has no key 'batch_sizes'.", None),
    ('landscape into a file', LANDSCAPE, ['--config=configs/landscape.py:reduced', '--workdir={file}'], 1,
     'is a file, not a folder', None),
    ('landscape with an objective of no name', LANDSCAPE, ['--config=configs/landscape.py:quick', '--workdir={root}/l1',
                                                          "--config.objectives=('negcos_byol_none',)"], 1,
     "objective 'negcos_byol_none': no objective has this name", None),
    ('landscape with an objective of a bad scheme', LANDSCAPE,
     ['--config=configs/landscape.py:quick', '--workdir={root}/l2',
      "--config.objectives=({{'loss':'negcos','scheme':'byol','predictor':'none'}},)"], 1,  # {{}}: str.format.
     "scheme='byol': expected one of", None),
    ('landscape into a read-only folder', LANDSCAPE, ['--config=configs/landscape.py:reduced',
                                                      '--workdir={read_only}/landscape'], 1, 'is not writable',
     'read_only'),
    ('linear dynamics into a file', LINEAR_DYNAMICS, [LD_QUICK, '--out={file}'], 1, 'is a file, not a folder', None),
    ('linear dynamics with a misspelt key', LINEAR_DYNAMICS, [LD_QUICK, '--out={root}/ld', '--config.etta=1'], 1,
     'no config key \'etta\'. Did you mean "eta"', None),
    ('linear dynamics with a misspelt key, default config', LINEAR_DYNAMICS, ['--out={root}/ld', '--config.etta=1'],
     1, 'no config key \'etta\'. Did you mean "eta"', None),
    ('linear dynamics with an unknown preset', LINEAR_DYNAMICS,
     ['--config=configs/linear_dynamics.py:quik', '--out={root}/ld'], 1, "unknown preset 'quik'", None),
]
# fmt: on


def _run_rows(rows, places) -> None:
  """Each row through the command line, at most four processes at a time: a mistake exits 1 with one 'error: '
  line holding the fragment and no traceback; a row with a protected place leaves every file there as it was."""
  before = {place: _snapshot(places[place]) for place in {row[5] for row in rows if row[5]}}
  failures = []
  for start in range(0, len(rows), 4):
    batch = rows[start : start + 4]
    procs = [
      subprocess.Popen(
        [sys.executable, *([] if args[:1] == ['-c'] else ['-m', module]), *[a.format(**places) for a in args]],
        cwd=REPO,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
      )
      for _, module, args, *_ in batch
    ]
    for (what, _, _, code, fragment, _), proc in zip(batch, procs):
      out, err = proc.communicate(timeout=TIMEOUT)
      error_lines = [line for line in err.splitlines() if line.startswith('error: ')]
      if code == HELP:
        ok = proc.returncode == 1 and fragment in out
      else:
        ok = (
          proc.returncode == code
          and 'Traceback' not in err
          and (fragment in out if code == 0 else len(error_lines) == 1 and fragment in error_lines[0])
        )
      if not ok:
        failures.append(f'{what}: exit {proc.returncode}, stdout {out[-600:]!r}, stderr {err[-1500:]!r}')
  assert not failures, '\n\n'.join(failures)
  for place, snapshot in before.items():
    assert _snapshot(places[place]) == snapshot, f'{place} changed'


def _needs_read_only(row) -> bool:
  return '{read_only}' in ' '.join(row[2])


@pytest.mark.slow  # Subprocesses.
def test_every_mistake_is_one_line_and_loses_nothing(places):
  _run_rows([row for row in BATTERY if not _needs_read_only(row)], places)


@pytest.mark.slow
def test_a_read_only_run_directory(places):
  if places['read_only'] is None:
    pytest.skip('no read-only bind mount can be made here (needs root with CAP_SYS_ADMIN)')
  _run_rows([row for row in BATTERY if _needs_read_only(row)], places)
