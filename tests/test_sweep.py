"""gsg_jax.sweep on a tiny grid: runs every point, skips finished ones, resumes an interrupted one, reports."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, tiny_config

from gsg_jax import sweep

# Two points: batch 32 (8 steps, checkpoints at 4 and 8) and batch 64 (4 steps), one epoch of 256 images.
_SMALL = {'num_epochs': 1, 'data.builtin_num_train': 256, 'data.builtin_num_heldout': 128, 'eval.batch_size': 128}
GRID = ['batch_size=32,64']


def small_config():
  return tiny_config('simclr', **_SMALL)


class Killed(Exception):
  """Stands for the process dying right after a checkpoint."""


def mtimes(run_dir):
  paths = [os.path.join(root, name) for root, _, names in os.walk(run_dir) for name in names]
  return {p: os.stat(p).st_mtime_ns for p in paths}


def test_grid_parsing_and_errors():
  config = small_config()
  axes = sweep.parse_grid(['batch_size=16,32', 'method.infonce.temperature=0.2,0.5', 'method.loss=infonce,dcl'], config)
  assert axes == [
    ('batch_size', [16, 32]),
    ('method.infonce.temperature', [0.2, 0.5]),
    ('method.loss', ['infonce', 'dcl']),
  ]
  points = sweep.grid_points(axes)
  assert len(points) == 8
  assert points[0] == {'batch_size': 16, 'method.infonce.temperature': 0.2, 'method.loss': 'infonce'}
  assert sweep.point_name(points[-1]) == 'batch_size=32,method.infonce.temperature=0.5,method.loss=dcl'
  c = sweep.point_config(config, points[-1])
  assert (c.batch_size, c.method.infonce.temperature, c.method.loss) == (32, 0.5, 'dcl') and config.batch_size == 64
  for spec, message in (
    ('batch_sizes=16,32', "no key 'batch_sizes'"),
    ('batch_size=16,abc', "'abc' is not a valid int"),
    ('batch_size', 'expected KEY=VALUE'),
    ('batch_size=', 'expected KEY=VALUE'),
    ('model=1', 'cannot be a grid axis'),
    ('online_probe.enabled=maybe', 'not a valid bool'),
    ('augment.crop_scale=0.1', 'cannot be a grid axis'),
  ):
    with pytest.raises(ValueError, match=message):
      sweep.parse_grid([spec], config)
  with pytest.raises(ValueError, match='given twice'):
    sweep.parse_grid(['batch_size=16', 'batch_size=32'], config)


def test_invalid_point_stops_before_training(tmp_path):
  with pytest.raises(ValueError, match=r'grid point batch_size=1: config.batch_size=1 is invalid'):
    sweep.run_sweep(small_config(), ['batch_size=32,1'], str(tmp_path))
  assert os.listdir(tmp_path) == []


@pytest.mark.slow  # Trains two runs end to end.
def test_sweep_resumes_skips_and_reports(tmp_path, monkeypatch, capsys):
  from gsg_jax.training.checkpointing import Checkpointer

  workdir = str(tmp_path / 'simclr')
  first, second = os.path.join(workdir, 'batch_size=32'), os.path.join(workdir, 'batch_size=64')

  # 1. The first point dies right after its step-4 checkpoint.
  save = Checkpointer.save

  def save_then_die(self, step, state, force=False):
    save(self, step, state, force=force)
    if step == 4:
      raise Killed

  monkeypatch.setattr(Checkpointer, 'save', save_then_die)
  with pytest.raises(Killed):
    sweep.run_sweep(small_config(), GRID, workdir, fast_linear_epochs=5)
  monkeypatch.setattr(Checkpointer, 'save', save)
  assert sorted(os.listdir(os.path.join(first, 'checkpoints'))) == ['4'] and not os.path.exists(second)
  assert not os.path.exists(os.path.join(first, 'summary.json'))
  capsys.readouterr()

  # 2. Run again: the first point resumes from step 4, the second trains, both are evaluated, the report is written.
  lines = []
  text = sweep.run_sweep(small_config(), GRID, workdir, log=lines.append, fast_linear_epochs=5)
  out = capsys.readouterr().out
  assert f'Resumed from the checkpoint at step 4 in {first}' in out
  assert lines[0] == f'[1/2] batch_size=32: training in {first}'
  assert lines[2] == f'[2/2] batch_size=64: training in {second}'
  with open(os.path.join(first, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  assert [r['step'] for r in records if r['kind'] == 'eval'] == [0, 8]  # Step 0 was evaluated once, before the kill.
  for run_dir, steps in ((first, 8), (second, 4)):
    with open(os.path.join(run_dir, 'summary.json')) as f:
      assert json.load(f)['steps'] == steps
    with open(os.path.join(run_dir, 'sweep_point.json')) as f:
      record = json.load(f)
    assert record['train_wall_seconds'] > 0 and record['eval_seconds'] > 0
  rows = [line for line in text.splitlines() if line.startswith('| infonce |')]
  assert len(rows) == 2 and '| 32 | 0.125 |' in rows[0] and '| 64 | 0.25 |' in rows[1], text  # 1.0 × batch/256.
  for row in rows:
    assert row.count('–') == 0, row  # Every metric present.
  with open(os.path.join(workdir, 'sweep.md')) as f:
    assert f.read() == text
  with open(os.path.join(workdir, 'sweep.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'

  # 3. And again: nothing is retrained or re-evaluated.
  before = {**mtimes(first), **mtimes(second)}
  lines = []
  assert sweep.run_sweep(small_config(), GRID, workdir, log=lines.append) == text
  assert lines[:2] == [
    '[1/2] batch_size=32: done, skipped (summary.json and eval/latest.json present).',
    '[2/2] batch_size=64: done, skipped (summary.json and eval/latest.json present).',
  ]
  assert {**mtimes(first), **mtimes(second)} == before

  # A trained point whose evaluation is missing is evaluated, not retrained.
  shutil.rmtree(os.path.join(second, 'eval'))
  lines = []
  sweep.run_sweep(small_config(), GRID, workdir, log=lines.append, fast_linear_epochs=5)
  assert lines[1].startswith('[2/2] batch_size=64: kNN top-1 '), lines
  assert os.path.exists(os.path.join(second, 'eval', 'latest.json'))
  assert {p: t for p, t in mtimes(second).items() if '/eval/' not in p and 'sweep_point' not in p} == {
    p: t for p, t in before.items() if p.startswith(second) and '/eval/' not in p and 'sweep_point' not in p
  }

  # 4. A changed config is refused rather than mixed into the finished runs.
  with pytest.raises(ValueError, match=r'batch_size=32: .* holds a run of another config: seed \(0 there, 1 here\)'):
    sweep.run_sweep(tiny_config('simclr', **{**_SMALL, 'seed': 1}), GRID, workdir)

  # 5. Sibling sweeps combine into one table and plot (a copy relabelled as another method stands in for one).
  other = str(tmp_path / 'other')
  shutil.copytree(workdir, other)
  for name in ('batch_size=32', 'batch_size=64'):
    path = os.path.join(other, name, 'eval', 'latest.json')
    with open(path) as f:
      result = json.load(f)
    result['method'], result['metrics']['knn_top1'] = 'dhel', 99.0
    with open(path, 'w') as f:
      json.dump(result, f)
  out_dir = str(tmp_path / 'combined')
  combined = sweep.write_report([workdir, other], out_dir)
  rows = [line for line in combined.splitlines() if line.startswith('| ') and ' min |' in line]
  assert [r.split(' | ')[0:2] for r in rows] == [
    ['| infonce', '32'],
    ['| infonce', '64'],
    ['| dhel', '32'],
    ['| dhel', '64'],
  ]
  assert all('| 99.00 |' in r for r in rows[2:])
  import matplotlib.image as mpimg

  pixels = mpimg.imread(os.path.join(out_dir, 'sweep.png'))
  assert pixels.shape[:2] == (900, 1200) and np.std(pixels[..., :3]) > 0


@pytest.mark.slow
def test_command_line_errors_and_report(tmp_path):
  """One-line errors from the command line (exit status 1), and --report on directories without points."""
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  run = lambda *args: subprocess.run(
    [sys.executable, '-m', 'gsg_jax.sweep', *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
  )
  for args, message in (
    (
      ['--config=configs/simclr.py:quick', '--grid=batch_sizes=16,32', f'--workdir={tmp_path}'],
      "error: --grid: the config has no key 'batch_sizes'.",
    ),
    (
      ['--config=configs/simclr.py:quick', '--grid=batch_size=16,x', f'--workdir={tmp_path}'],
      "error: --grid: batch_size='x' is not a valid int (config.batch_size is 128).",
    ),
    (
      ['--report', str(tmp_path), f'--out={tmp_path / "out"}'],
      f"error: no evaluated grid point (…/<point>/eval/latest.json) in ['{tmp_path}'].",
    ),
  ):
    result = run(*args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == message
    assert [line for line in result.stderr.splitlines() if line.startswith('error')] == [message]
