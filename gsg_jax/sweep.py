"""Grid sweeps of one config, one run directory per point, and their report.

    python -m gsg_jax.sweep --config=configs/simclr.py:quick --grid=batch_size=16,32,64,128,256 \
        [--grid=method.infonce.temperature=0.2,0.5 ...] [--config.num_epochs=...] --workdir=DIR
    python -m gsg_jax.sweep --report DIR [DIR ...] --out=OUT

A point of the grid (the product of the ``--grid`` axes, ``--config.*``
overrides under them) trains in ``DIR/<key>=<value>[,<key>=<value>]`` with
``gsg_jax.training.train_and_evaluate`` and is then evaluated with
``gsg_jax.evaluation.run.evaluate_run`` (the config's ``eval.protocols``).
Every point's config is validated before the first one trains; a grid key
the config lacks, or a value of the wrong type, stops at once with a
one-line error.

Resuming: a point with ``summary.json`` and ``eval/latest.json`` is done and
skipped; one with ``summary.json`` only is evaluated; any other resumes from
its latest checkpoint (``train_and_evaluate`` does that). A point whose
directory holds a run of a different config is refused, not mixed. The same
command, run again, finishes an interrupted sweep; on a cluster, one job per
point can run the same command with a one-value ``--grid``.

Then ``DIR/sweep.md`` (a row per point: method, batch size, the peak
learning rate actually used, epochs, the report columns of every evaluator
the points ran (``gsg_jax.evaluation.evaluator``: kNN and fast-linear top-1,
RankMe, uniformity, ...), wall time) and ``DIR/sweep.png`` (the first four of
those against batch size, one line per method) are written.
``--report DIR1 DIR2 ...`` writes the same for several sweeps together (e.g.
one per method, in sibling directories) to ``--out``.
"""

import copy
import itertools
import os
import time

from gsg_jax import storage
from gsg_jax.errors import ConfigError, MissingPathError
from gsg_jax.run_dir import check_config

_POINT_FILE = 'sweep_point.json'


# ---------------------------------------------------------------- the grid


def _lookup(config, key: str):
  """(the block holding ``key``, its last part), e.g. (config.method.ema, 'momentum') for 'method.ema.momentum'."""
  block, parts = config, key.split('.')
  for part in parts:
    if not hasattr(block, 'keys') or part not in block:
      raise ConfigError(f'--grid: the config has no key {key!r}.')
    parent, block = block, block[part]
  return parent, parts[-1]


def _parse_value(key: str, text: str, current):
  kind = type(current).__name__
  try:
    if isinstance(current, bool):
      if text.lower() not in ('true', 'false'):
        raise ValueError
      return text.lower() == 'true'
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
  except ValueError:
    raise ConfigError(f'--grid: {key}={text!r} is not a valid {kind} (config.{key} is {current!r}).') from None
  if isinstance(current, str):
    return text
  raise ConfigError(f'--grid: config.{key} is a {kind}, not a number, bool or string: it cannot be a grid axis.')


def parse_grid(specs, config) -> list[tuple[str, list]]:
  """``['batch_size=16,32', ...]`` → ``[('batch_size', [16, 32]), ...]``, values typed as the config's."""
  axes = []
  for spec in specs:
    key, sep, values = spec.partition('=')
    key = key.strip()
    if not sep or not key or not values.strip():
      raise ConfigError(f'--grid={spec!r}: expected KEY=VALUE[,VALUE...], e.g. --grid=batch_size=16,32,64.')
    if key in (k for k, _ in axes):
      raise ConfigError(f'--grid: {key!r} is given twice.')
    block, leaf = _lookup(config, key)
    axes.append((key, [_parse_value(key, v.strip(), block[leaf]) for v in values.split(',')]))
  return axes


def grid_points(axes) -> list[dict]:
  """Every combination of the axes' values, the first axis slowest: ``[{key: value, ...}, ...]``."""
  return [dict(zip([k for k, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]


def point_name(point: dict) -> str:
  return ','.join(f'{k}={v}' for k, v in point.items()).replace(os.sep, '_') or 'base'


def point_config(config, point: dict):
  c = copy.deepcopy(config)
  for key, value in point.items():
    block, leaf = _lookup(c, key)
    block[leaf] = value
  return c


# ---------------------------------------------------------------- running


def _record(run_dir: str, point: dict, **seconds) -> None:
  record = storage.read_json_if_present(storage.join(run_dir, _POINT_FILE)) or {}
  record['point'] = point
  for key, value in seconds.items():
    record[key] = record.get(key, 0.0) + value
  storage.write_json(storage.join(run_dir, _POINT_FILE), record, indent=2)


def run_sweep(config, grid_specs, workdir: str, log=print, **evaluate_kwargs) -> str:
  """Train and evaluate every grid point of ``config`` under ``workdir``; returns the report's Markdown.

  ``evaluate_kwargs`` go to ``gsg_jax.evaluation.run.evaluate_run`` (e.g. ``fast_linear_epochs``).
  """
  from gsg_jax import config_lib

  points = grid_points(parse_grid(grid_specs, config))
  configs = [point_config(config, p) for p in points]
  for point, c in zip(points, configs):
    try:
      config_lib.validate(c)
    except ConfigError as e:
      raise ConfigError(f'grid point {point_name(point)}: {e}') from None
  workdir = storage.resolve(workdir)
  for point, c in zip(points, configs):  # Refuse before any training: nothing is mixed into an old run.
    try:
      check_config(storage.join(workdir, point_name(point)), c)
    except ConfigError as e:
      raise ConfigError(f'grid point {point_name(point)}: {e}') from None

  from gsg_jax.evaluation.evaluator import columns
  from gsg_jax.evaluation.run import evaluate_run
  from gsg_jax.training import train_and_evaluate

  for index, (point, c) in enumerate(zip(points, configs), 1):
    name, run_dir = point_name(point), storage.join(workdir, point_name(point))
    prefix = f'[{index}/{len(points)}] {name}:'
    has_summary = storage.exists(storage.join(run_dir, 'summary.json'))
    if has_summary and storage.exists(storage.join(run_dir, 'eval', 'latest.json')):
      log(f'{prefix} done, skipped (summary.json and eval/latest.json present).')
      continue
    if not has_summary:
      log(f'{prefix} training in {run_dir}')
      start = time.perf_counter()
      try:
        train_and_evaluate(c, run_dir)
      finally:
        if storage.isdir(run_dir):
          _record(run_dir, point, train_wall_seconds=time.perf_counter() - start)
    start = time.perf_counter()
    result = evaluate_run(run_dir, **evaluate_kwargs)
    _record(run_dir, point, eval_seconds=time.perf_counter() - start)
    m = result['metrics']
    shown = [c for c in columns(result['protocols']) if isinstance(m.get(c.key), float)][:4]
    log(f'{prefix} ' + ', '.join(f'{c.header} {m[c.key]:{c.format}}' for c in shown))
  text = write_report([workdir], workdir)
  log(f'Report: {storage.join(workdir, "sweep.md")}, {storage.join(workdir, "sweep.png")}')
  return text


# ---------------------------------------------------------------- the report


def collect(sweep_dirs) -> list[dict]:
  """One row per evaluated point (``<dir>/<point>/eval/latest.json``) of each sweep directory, in order."""
  rows = []
  for sweep_dir in sweep_dirs:
    if not storage.isdir(sweep_dir):
      raise MissingPathError(f'sweep directory {sweep_dir!r} does not exist.')
    for name in storage.listdir(sweep_dir):
      run_dir = storage.join(sweep_dir, name)
      result = storage.read_json_if_present(storage.join(run_dir, 'eval', 'latest.json'))
      config = storage.read_json_if_present(storage.join(run_dir, 'config.json'))
      if result is None or config is None:
        continue
      record = storage.read_json_if_present(storage.join(run_dir, _POINT_FILE)) or {}
      summary = storage.read_json_if_present(storage.join(run_dir, 'summary.json')) or {}
      point = record.get('point') or dict(p.split('=', 1) for p in name.split(',') if '=' in p)
      wall = record.get('train_wall_seconds', summary.get('train_seconds'))
      if wall is not None:
        wall += record.get('eval_seconds', 0.0)
      knn = result.get('settings', {}).get('knn') or {}
      rows.append(
        {
          'sweep': storage.basename(sweep_dir),
          'run_dir': run_dir,
          'method': result['method'],
          'batch_size': int(config['batch_size']),
          'extra': ', '.join(f'{k}={v}' for k, v in point.items() if k != 'batch_size'),
          # The linear scaling rule of gsg_jax.training.optim.peak_learning_rate.
          'peak_lr': config['optim']['base_lr'] * config['batch_size'] / 256,
          'epochs': result['epochs'],
          'knn_setting': (knn['k'], knn['temperature']) if knn else None,
          'protocols': result.get('protocols', []),
          'metrics': result['metrics'],
          'wall_seconds': wall,
        }
      )
  return rows


def _columns(rows):
  from gsg_jax.evaluation.evaluator import columns

  return columns({p for r in rows for p in r['protocols']})


def _line_labels(rows) -> list[str]:
  """A line per (sweep, method, non-batch point values); the sweep's name is added only where labels clash."""
  keys = list(dict.fromkeys((r['sweep'], r['method'], r['extra']) for r in rows))
  label = lambda k: k[1] + (f' ({k[2]})' if k[2] else '')
  clashes = {label(k) for k in keys if sum(label(j) == label(k) for j in keys) > 1}
  return [label(k) + (f' [{k[0]}]' if label(k) in clashes else '') for k in keys], keys


def _fmt(value, spec):
  return '–' if value is None else format(value, spec)


def _cell(value, column) -> str:
  if value is None:
    return '–'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  return format(value, column.format) if isinstance(value, (int, float)) else str(value)


def markdown(rows) -> str:
  labels, keys = _line_labels(rows)
  by_key = dict(zip(keys, labels))
  cols = _columns(rows)
  settings = sorted({r['knn_setting'] for r in rows if r['knn_setting']})
  knn_text = '; '.join(f'kNN: k = {k}, T = {t:g}' for k, t in settings)
  lines = [
    "Peak learning rate = base_lr × batch/256 (each config's linear scaling rule), then its schedule. "
    + (f'{knn_text}. ' if knn_text else '')
    + 'Columns: the evaluators the points ran (gsg_jax.evaluation.evaluator). Wall time: training and evaluation.',
    '',
    '| method | batch size | peak lr | epochs | ' + ' | '.join(c.header for c in cols) + ' | wall time |',
    '|---|---:|---:|---:|' + '---:|' * len(cols) + '---:|',
  ]
  order = {k: i for i, k in enumerate(keys)}
  for r in sorted(rows, key=lambda r: (order[(r['sweep'], r['method'], r['extra'])], r['batch_size'])):
    wall = '–' if r['wall_seconds'] is None else f'{r["wall_seconds"] / 60:.1f} min'
    cells = ' | '.join(_cell(r['metrics'].get(c.key), c) for c in cols)
    lines.append(
      f'| {by_key[(r["sweep"], r["method"], r["extra"])]} | {r["batch_size"]} | {r["peak_lr"]:.4g} '
      f'| {r["epochs"]:.3g} | {cells} | {wall} |'
    )
  return '\n'.join(lines) + '\n'


def plot(rows, path: str) -> None:
  """2×2 panels against batch size (log₂ axis), one line per method: the first four numeric report columns."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  panels = [c for c in _columns(rows) if c.format][:4]
  fig, axes = plt.subplots(2, 2, figsize=(12, 9), dpi=100)
  labels, keys = _line_labels(rows)
  sizes = sorted({r['batch_size'] for r in rows})
  for ax, column in zip(axes.ravel(), panels):
    title, field = column.header, column.key
    for key, label in zip(keys, labels):
      line = sorted(
        (r['batch_size'], r['metrics'][field])
        for r in rows
        if (r['sweep'], r['method'], r['extra']) == key and isinstance(r['metrics'].get(field), (int, float))
      )
      if line:
        ax.plot(*zip(*line), marker='o', label=label)
    ax.set_xscale('log', base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set(title=title, xlabel='batch size')
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize='small')
  fig.tight_layout()
  storage.save_figure(fig, path, dpi=100)
  plt.close(fig)


def write_report(sweep_dirs, out_dir: str) -> str:
  """``out_dir/sweep.md`` and ``out_dir/sweep.png`` for the points of ``sweep_dirs``; returns the Markdown."""
  rows = collect(sweep_dirs)
  if not rows:
    raise MissingPathError(f'no evaluated grid point (…/<point>/eval/latest.json) in {list(sweep_dirs)}.')
  storage.makedirs(out_dir)
  text = markdown(rows)
  storage.write_text(storage.join(out_dir, 'sweep.md'), text)
  plot(rows, storage.join(out_dir, 'sweep.png'))
  return text


# ---------------------------------------------------------------- command line


def main(argv):
  from absl import flags

  from gsg_jax import cli
  from gsg_jax.training.outputs import quiet_library_logs

  f = flags.FLAGS
  quiet_library_logs()
  if f.report:
    if len(argv) < 2 or not f.out:
      raise ConfigError('--report takes the sweep directories as arguments and --out=DIR.')
    print(write_report(argv[1:], f.out), end='')
    print(f'Written to {storage.join(f.out, "sweep.md")} and sweep.png')
    return
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments {argv[1:]} (the sweep directories go with --report).')
  config = cli.config_value(flags.FLAGS['config'])
  if config is None or not f.workdir or not f.grid:
    raise ConfigError('--config, --grid and --workdir are required (or --report DIR ... --out=DIR).')
  print(run_sweep(config, f.grid, f.workdir), end='')


def _define_flags():
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/simclr.py:quick.', lock_config=True)
  flags.DEFINE_multi_string('grid', [], 'KEY=V1,V2,...: a grid axis (repeatable), e.g. batch_size=16,32,64.')
  flags.DEFINE_string('workdir', None, 'Sweep directory: one run directory per grid point, sweep.md, sweep.png.')
  flags.DEFINE_bool('report', False, 'Only write the report of the sweep directories given as arguments.')
  flags.DEFINE_string('out', None, 'With --report: where sweep.md and sweep.png go.')


def run():
  """The ``gsg-sweep`` command."""
  from gsg_jax import cli

  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
