"""benchmarks/collect_runs.py: run directories → results records the documentation generator accepts."""

import importlib.util
import json
import os
import sys

import pytest
from conftest import REPO, tiny_config

from gsg_jax import run_dir


def _load(name: str, path: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fake_run(folder, evals, steps_per_epoch=10, finished=True, raw=37.8, method='simsiam', batch_size=64):
  os.makedirs(folder)
  run_dir.write_config(str(folder), tiny_config(method, num_epochs=4, batch_size=batch_size))
  records = [{'kind': 'train', 'step': 5, 'epoch': 0.5, 'loss': -0.1}]
  records += [
    {
      'kind': 'eval',
      'step': step,
      'epoch': step / steps_per_epoch,
      'knn_top1': knn,
      'floors/raw_pixels/knn_top1': raw,
      'floors/random_init/knn_top1': 33.3,
      'floors/raw_pixels/fast_linear_top1': 40.0,
    }
    for step, knn in evals
  ]
  with open(folder / 'metrics.jsonl', 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in records))
  last = evals[-1][0]
  with open(folder / 'run.json', 'w') as f:
    json.dump(
      {
        'steps_per_epoch': steps_per_epoch,
        'parts': [
          {'start_step': 0, 'end_step': 20, 'seconds': 60.0},
          {'start_step': 20, 'end_step': last, 'seconds': 30.0},
        ],
      },
      f,
    )
  if finished:
    run_dir.write_summary(str(folder), {'steps': last})


def _collect(monkeypatch, root, *flags, **labels):
  """benchmarks/collect_runs.py's command line, writing under ``root`` instead of the checkout (more labels,
  repeated ones too, as ``--label`` flags)."""
  collect = _load('collect_runs', os.path.join(REPO, 'benchmarks', 'collect_runs.py'))
  monkeypatch.setattr(collect, 'REPO', str(root))
  args = ['--study=demo', '--name=c', '--title=Demo', '--command=cmd', *flags]
  monkeypatch.setattr(sys, 'argv', ['collect_runs.py', *args, *[f'--label={k}={v}' for k, v in labels.items()]])
  collect.main()
  records = []
  for suffix in ('curves', 'compute_curves', 'table'):
    with open(root / 'benchmarks' / 'results' / 'demo' / f'c_{suffix}.json') as f:
      records.append(json.load(f))
  return records


def test_records_of_a_finished_and_a_partial_run(tmp_path, monkeypatch):
  generator = _load('generate_results', os.path.join(REPO, 'docs', 'generate_results.py'))
  done, partial = tmp_path / 'done', tmp_path / 'partial'
  # Step 20 logged twice: a crashed part's record, then the resumed part's, which wins.
  _fake_run(done, [(0, 33.3), (20, 39.0), (20, 40.0), (40, 41.5)])
  _fake_run(partial, [(0, 33.3), (20, 38.0)], finished=False, method='simsiam_gsg')
  curves, compute, table = _collect(monkeypatch, tmp_path, '--bars', A=done, B=partial)
  assert table['figure'] == {'bars': 'run', 'panels': [{'y': 'knn_top1'}, {'y': 'fast_linear_top1'}]}
  assert curves['series'][0] == {'label': 'A', 'x': [0.0, 2.0, 4.0], 'y': [33.3, 40.0, 41.5]}
  # Equal compute: SimSiam's two views per image count once, GSG's four twice.
  assert compute['series'] == [
    {'label': 'A', 'x': [0.0, 2.0, 4.0], 'y': [33.3, 40.0, 41.5]},
    {'label': 'B', 'x': [0.0, 4.0], 'y': [33.3, 38.0]},
  ]
  assert compute['floors'] == curves['floors']
  assert curves['floors'] == [{'label': 'raw pixels', 'y': 37.8}, {'label': 'random init', 'y': 33.3}]
  # The table's floors carry the linear column's too, where the monitor measured them.
  assert table['floors'] == [
    {'label': 'raw pixels', 'values': {'knn_top1': 37.8, 'fast_linear_top1': 40.0}},
    {'label': 'random init', 'values': {'knn_top1': 33.3}},
  ]
  a, b = table['rows']
  assert (a['epochs'], a['configured_epochs'], a['finished'], a['knn_top1']) == (4.0, 4, True, 41.5)
  assert a['train_minutes'] == pytest.approx(1.5)
  assert (b['epochs'], b['finished'], b['knn_top1']) == (2.0, False, 38.0)
  for name, record in (('c_curves.json', curves), ('c_compute_curves.json', compute), ('c_table.json', table)):
    generator.check_record(record, str(tmp_path / 'benchmarks' / 'results' / 'demo' / name))  # The docs take all.
  assert 'linear_top1' not in [c['key'] for c in table['columns']]  # No run has the standard probe yet.


def test_the_standard_linear_probe_gets_a_column_where_a_run_has_it(tmp_path, monkeypatch):
  probed, plain = tmp_path / 'probed', tmp_path / 'plain'
  _fake_run(probed, [(0, 33.3), (40, 41.5)])
  _fake_run(plain, [(0, 33.3), (40, 40.0)])
  os.makedirs(probed / 'eval')
  with open(probed / 'eval' / 'latest.json', 'w') as f:  # gsg_jax.evaluate's merged record of the final step.
    json.dump({'step': 40, 'metrics': {'fast_linear_top1': 45.0, 'linear_top1': 47.5}}, f)
  *_, table = _collect(monkeypatch, tmp_path, A=probed, B=plain)
  assert 'linear_top1' in [c['key'] for c in table['columns']]
  assert [(r['fast_linear_top1'], r['linear_top1']) for r in table['rows']] == [(45.0, 47.5), (None, None)]


def test_runs_on_different_floors_are_refused(tmp_path, monkeypatch):
  _fake_run(tmp_path / 'a', [(0, 33.3), (20, 39.0)])
  _fake_run(tmp_path / 'b', [(0, 33.3), (20, 39.0)], raw=41.0)
  with pytest.raises(ValueError, match='not one footing'):
    _collect(monkeypatch, tmp_path, A=tmp_path / 'a', B=tmp_path / 'b')


def test_runs_of_one_method_at_several_batches(tmp_path, monkeypatch):
  """--by-batch: the table's figure is kNN and linear against the batch, a line per label; curves name the batch."""
  generator = _load('generate_results', os.path.join(REPO, 'docs', 'generate_results.py'))
  runs = {(m, b): tmp_path / f'{m}_{b}' for m in ('simsiam', 'simsiam_gsg') for b in (32, 256)}
  for (method, batch), folder in runs.items():
    _fake_run(folder, [(0, 33.3), (40, 40.0 + batch / 100)], method=method, batch_size=batch)
  labels = [f'--label={"GSG" if m.endswith("gsg") else "SimSiam"}={f}' for (m, _), f in runs.items()]
  curves, _, table = _collect(monkeypatch, tmp_path, '--by-batch', *labels)
  assert table['figure']['x'] == 'batch_size' and table['figure']['group'] == 'run'
  assert [(r['run'], r['batch_size']) for r in table['rows']] == [
    ('SimSiam', 32),
    ('SimSiam', 256),
    ('GSG', 32),
    ('GSG', 256),
  ]
  assert [s['label'] for s in curves['series']][:2] == ['SimSiam, batch 32', 'SimSiam, batch 256']
  generator.check_record(table, str(tmp_path / 'benchmarks' / 'results' / 'demo' / 'c_table.json'))
  knn, linear = generator.figure_data(table)['panels']
  assert [(line['label'], line['x'], line['y']) for line in knn['lines']] == [
    ('SimSiam', [32, 256], [40.32, 42.56]),
    ('GSG', [32, 256], [40.32, 42.56]),
  ]
  assert knn['log_x'] and linear['lines'] == []  # No run was probed: no linear line, and no error.
  with pytest.raises(SystemExit):
    _collect(monkeypatch, tmp_path, '--by-batch', '--bars', *labels)
