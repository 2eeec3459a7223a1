"""Run directories → a results record (docs/development/results_schema.md): kNN curves and a summary table.

    python benchmarks/collect_runs.py --study=cifar10_cpu --name=curves_e32 \
        --title='SimSiam and SimSiam+GSG to 32 epochs' --command='...' \
        --label=SimSiam=RUN_A --label=SimSiam+GSG=RUN_B

Reads each run's ``metrics.jsonl`` (the monitor's held-out kNN and its floors
at every evaluation), ``run.json`` / ``summary.json`` (steps, parts, training
time) and ``eval/latest.json`` where ``gsg_jax.evaluate`` has run (the fast
linear probe). Writes ``benchmarks/results/<study>/<name>_curves.json`` (kNN
against epoch, with the floors), ``<name>_compute_curves.json`` (the same
against two-view epochs: a four-view GSG epoch counts twice) and ``<name>_table.json`` (one row per run:
seed, batch, epochs reached of those configured, kNN, linear, training time),
each with the command, date, commit and machine. ``--bars`` gives the table a
bar per run as its figure; ``--by-batch`` (one label's runs at several batch
sizes) kNN and linear against the batch, a line per label. A run still training is collected as far as
it got: the table says how far, so a partial curve is never read as a finished
one.
"""

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402

REPO = records.REPO
sys.path.insert(0, REPO)

from gsg_jax import run_dir, storage  # noqa: E402 (after the path: runs from a checkout)
from gsg_jax.errors import MissingPathError  # noqa: E402
from gsg_jax.methods import LOSSES  # noqa: E402

# (floor, table column) → the monitor's metric. The fast linear floors are the monitor's fast linear probe of the
# floors' features on the same held-out slice: the protocol of the table's linear column.
FLOOR_KEYS = {
  (label, metric): f'floors/{name}/{metric}'
  for label, name in (('raw pixels', 'raw_pixels'), ('random init', 'random_init'))
  for metric in ('knn_top1', 'fast_linear_top1')
}


def curve(workdir: str) -> tuple[list, list, dict]:
  """(epochs, kNN top-1, floors {(label, metric): value}) of the run's monitor, the last record of each step."""
  evals = {r['step']: r for r in run_dir.load_metrics(workdir) if r.get('kind') == 'eval' and 'knn_top1' in r}
  points = [evals[s] for s in sorted(evals)]
  floors = {}
  for label, key in FLOOR_KEYS.items():
    values = {r[key] for r in points if key in r}
    if len(values) > 1:
      raise ValueError(f'{workdir}: the floor {label!r} changed during the run: {sorted(values)}')
    if values:
      floors[label] = values.pop()
  return [r['epoch'] for r in points], [r['knn_top1'] for r in points], floors


def row(label: str, workdir: str, config: dict, epochs: list, knn: list) -> dict:
  """The table row of the run in ``workdir``: its ``config`` and kNN curve read already, the rest read here."""
  summary = run_dir.read_summary(workdir) or {}
  record = storage.read_json_if_present(storage.join(workdir, run_dir.RECORD_FILE)) or {}
  steps_per_epoch = record.get('steps_per_epoch')
  parts = record.get('parts', [])
  reached = max([p['end_step'] for p in parts] + [summary.get('steps', 0)])
  evaluated = storage.read_json_if_present(storage.join(workdir, 'eval', 'latest.json')) or {}
  final = evaluated.get('metrics', {}) if evaluated.get('step') == reached else {}
  return {
    'run': label,
    'seed': config['seed'],
    'batch_size': config['batch_size'],
    'epochs': reached / steps_per_epoch if steps_per_epoch else (epochs[-1] if epochs else None),
    'configured_epochs': config['num_epochs'],
    'finished': bool(summary) and summary.get('steps') == reached,
    'knn_top1': knn[-1] if knn else None,
    'fast_linear_top1': final.get('fast_linear_top1'),
    'linear_top1': final.get('linear_top1'),  # The standard (cifar) probe, where it has been run.
    'train_minutes': sum(p['seconds'] for p in parts) / 60 if parts else summary.get('train_seconds', 0) / 60,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--study', required=True)
  parser.add_argument('--name', required=True, help='file stem under benchmarks/results/<study>/')
  parser.add_argument('--title', required=True)
  parser.add_argument('--command', required=True, help='the commands that made the runs')
  parser.add_argument('--machine', default='2 CPU cores, shared with other work: training times are wall time')
  parser.add_argument('--note', action='append', default=[], help='a sentence under the table (repeatable)')
  parser.add_argument('--label', action='append', required=True, help='LABEL=RUN_DIR (repeatable, in order)')
  parser.add_argument('--bars', action='store_true', help="the table's figure: a bar per run, kNN and linear")
  parser.add_argument(
    '--by-batch',
    action='store_true',
    help="runs of one label at several batch sizes: the table's figure is kNN and linear against the batch size, "
    'a line per label',
  )
  args = parser.parse_args()

  runs = [spec.split('=', 1) for spec in args.label]
  if any(len(r) != 2 for r in runs):
    parser.error('--label takes LABEL=RUN_DIR')
  series, compute_series, rows, floors = [], [], [], {}
  for label, workdir in runs:  # Each run's files read once.
    config = run_dir.saved_config(workdir)
    if config is None:
      raise MissingPathError(f'{workdir} holds no run (no config.json).')
    epochs, knn, run_floors = curve(workdir)
    for floor, value in run_floors.items():
      if floors.setdefault(floor, value) != value:
        raise ValueError(f'{workdir}: floor {floor} is {value}, another run has {floors[floor]}: not one footing.')
    rows.append(row(label, workdir, config, epochs, knn))
    name = f'{label}, batch {config["batch_size"]}' if args.by_batch else label
    views = LOSSES[config['method']['loss']].num_views
    series.append({'label': name, 'x': epochs, 'y': knn})
    compute_series.append({'label': name, 'x': [e * views / 2 for e in epochs], 'y': knn})
  common = {  # records.table's header without its title and order: the curves are records of their own kind.
    'schema': records.SCHEMA,
    'study': args.study,
    'command': args.command,
    'date': datetime.date.today().isoformat(),
    'commit': records.git_commit(),
    'machine': args.machine,
    'source': "the runs' metrics.jsonl, run.json, summary.json and eval/latest.json, read by "
    'benchmarks/collect_runs.py',
  }
  out_dir = os.path.join(REPO, 'benchmarks', 'results', args.study)
  os.makedirs(out_dir, exist_ok=True)
  floor_list = [{'label': label, 'y': v} for (label, metric), v in floors.items() if metric == 'knn_top1']
  table_floors = {}
  for (label, metric), v in floors.items():
    table_floors.setdefault(label, {})[metric] = v
  curves = {
    **common,
    'kind': 'curves',
    'title': f'{args.title}: held-out kNN top-1 during training',
    'x': {'label': 'epoch'},
    'y': {'label': 'kNN top-1 (%), k = 200, T = 0.2', 'metric': 'knn_top1'},
    'series': series,
    'floors': floor_list,
    'reference_lines': [],
  }
  # Equal compute: a GSG step encodes four views per image where the plain methods encode two, exactly twice the
  # FLOPs; view-epochs count that work without the shared machine's noisy wall time.
  compute_curves = {
    **curves,
    'title': f'{args.title}: held-out kNN top-1 against compute',
    'x': {'label': 'two-view epochs (epoch × views per image ÷ 2)'},
    'series': compute_series,
    'caption': "Each point is a checkpoint partway through its run's own learning-rate schedule, not a run "
    'trained to that budget: compare runs where their compute is equal, and the ends of runs of equal compute.',
  }
  probed = any(r['linear_top1'] is not None for r in rows)  # The standard probe gets a column where a run has it.
  if not probed:
    for r in rows:
      del r['linear_top1']
  table = {
    **common,
    'kind': 'table',
    'title': args.title,
    'columns': [
      {'key': 'run', 'label': 'run'},
      {'key': 'seed', 'label': 'seed'},
      {'key': 'batch_size', 'label': 'batch'},
      {'key': 'epochs', 'label': 'epochs reached', 'format': '.2f'},
      {'key': 'configured_epochs', 'label': 'of'},
      {'key': 'finished', 'label': 'finished'},
      {'key': 'knn_top1', 'label': 'kNN top-1 (%)', 'format': '.2f'},
      {'key': 'fast_linear_top1', 'label': 'linear top-1, fast (%)', 'format': '.2f'},
      *([{'key': 'linear_top1', 'label': 'linear top-1, cifar protocol (%)', 'format': '.2f'}] if probed else []),
      {'key': 'train_minutes', 'label': 'train time (min)', 'format': '.1f'},
    ],
    'floors': [{'label': label, 'values': values} for label, values in table_floors.items()],
    'rows': rows,
    'notes': args.note,
  }
  if args.bars and args.by_batch:
    parser.error('--bars and --by-batch are two figures of the table: choose one')
  if args.bars:
    table['figure'] = {'bars': 'run', 'panels': [{'y': 'knn_top1'}, {'y': 'fast_linear_top1'}]}
  if args.by_batch:
    table['figure'] = {
      'x': 'batch_size',
      'group': 'run',
      'log_x': True,
      'panels': [{'y': 'knn_top1'}, {'y': 'fast_linear_top1'}],
    }
  for suffix, record in (('curves', curves), ('compute_curves', compute_curves), ('table', table)):
    path = os.path.join(out_dir, f'{args.name}_{suffix}.json')
    records.write(record, path)
    print(f'wrote {path}')


if __name__ == '__main__':
  main()
