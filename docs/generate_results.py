"""Writes the site's generated pages from data: the results, the components and the configs.

    python docs/generate_results.py            # (re)write every generated file
    python docs/generate_results.py --check    # exit 1 naming each generated file that differs from the data
    python docs/generate_results.py --notebook # also execute examples/ablation.ipynb into docs/examples/

What it reads, and what it writes (committed; ``tests/test_docs.py`` checks that the committed files equal what
this script generates now, so a page cannot drift from its data):

* ``benchmarks/results/<study>/*.json`` in the results schema (``docs/development/results_schema.md``; every
  JSON with ``"schema": "gsg_jax.results/1"``) → ``docs/results/<study>.md``, one page per study, with each
  record's table or curves, its command, date, commit, machine and source, and for curves and figure specs a
  PNG under ``docs/results/figures/``. A hand-written interpretation, ``docs/results/text/<study>.md``, is
  included at the top of its page when it exists (its first line is the page title). Other JSON files there
  (the throughput benchmarks' ``{"date", "command", "results"}`` and the experiments' ``results.json``) are
  read by the adapters below.
* ``gsg_jax.methods`` registries (``LOSSES``, ``TARGETS``, ``PREDICTORS``) → ``docs/_generated/components.md``.
* ``gsg_jax/config_lib.py``, ``gsg_jax/data/__init__.py``, ``gsg_jax/data/augment.py`` and ``configs/*.py`` →
  ``docs/_generated/config_keys.md`` and ``docs/_generated/presets.md``: every key with its value and the comment
  that says where it comes from, each preset's changes, and each config file's presets.

Figures are drawn by matplotlib (Agg) with fixed metadata, so the same data and matplotlib give the same bytes;
the check compares the Markdown pages and the figures' data (``figure_data``), not PNG bytes, which depend on the
matplotlib and FreeType versions.
"""

import argparse
import ast
import glob
import io
import json
import os
import re
import sys
import tokenize

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
RESULTS = os.path.join(REPO, 'benchmarks', 'results')
SCHEMA = 'gsg_jax.results/1'
REQUIRED = ('schema', 'study', 'title', 'command', 'date', 'commit', 'source')
FLOOR_STYLE = {'linestyle': '--', 'linewidth': 1.2}


class SchemaError(ValueError):
  pass


# ----------------------------------------------------------------------------------------------- results: reading


def load_records(results_dir: str = RESULTS) -> dict[str, list[dict]]:
  """{study: [record, ...]} for every JSON under ``results_dir`` that declares the results schema, checked."""
  studies: dict[str, list[dict]] = {}
  for path in sorted(glob.glob(os.path.join(results_dir, '**', '*.json'), recursive=True)):
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
    if not isinstance(record, dict) or record.get('schema') != SCHEMA:
      continue
    if isinstance(record.get('floors'), str):  # Floors measured apart (benchmarks/floors.py): that file's.
      floors_path = os.path.join(os.path.dirname(path), record['floors'])
      with open(floors_path, encoding='utf-8') as f:
        measured = json.load(f)
      record['floors'] = measured['floors']
      record['_floors_source'] = (
        f'`{os.path.relpath(floors_path, REPO)}`: `{measured["command"]}`, '
        f'{measured["date"]}, commit `{measured["commit"]}`'
      )
    check_record(record, path)
    record['_path'] = os.path.relpath(path, REPO)
    studies.setdefault(record['study'], []).append(record)
  for records in studies.values():
    records.sort(key=lambda r: (r.get('order', 0), r['_path']))
  return studies


def check_record(record: dict, path: str) -> None:
  """Raise SchemaError naming the file and the first problem."""

  def fail(message):
    raise SchemaError(f'{os.path.relpath(path, REPO)}: {message}')

  for key in REQUIRED:
    if key not in record:
      fail(f'missing key {key!r} (required: {REQUIRED})')
  folder = os.path.basename(os.path.dirname(path))
  if record['study'] != folder:
    fail(f"study {record['study']!r} is not its folder's name {folder!r}")
  kind = record.get('kind', 'table')
  if kind == 'table':
    keys = [c.get('key') for c in record.get('columns', [])]
    if not keys or not record.get('rows'):
      fail('a table needs "columns" and "rows"')
    for column in record['columns']:
      derived = column.get('derived')
      if derived is not None and derived.get('op') not in ('mean', 'minus_floor'):
        fail(f'column {column["key"]!r}: unknown derived op {derived.get("op")!r}')
    for row in record['rows']:
      unknown = set(row) - set(keys)
      if unknown:
        fail(f'row {row} has keys that are not columns: {sorted(unknown)}')
    for floor in record.get('floors', []):
      if set(floor.get('values', {})) - set(keys):
        fail(f'floor {floor.get("label")!r} names keys that are not columns')
    if 'figure' in record:
      spec = record['figure']
      for panel in spec['panels']:
        if panel['y'] not in keys:
          fail(f'figure panel {panel["y"]!r} is not a column')
      for role in ('x', 'group', 'bars'):
        if role in spec and spec[role] not in keys:
          fail(f'figure {role} {spec[role]!r} is not a column')
      if ('bars' in spec) == ('x' in spec):
        fail('a figure has either "x" and "group" (lines) or "bars" (a bar per row)')
  elif kind == 'curves':
    for key in ('x', 'y', 'series'):
      if key not in record:
        fail(f'curves need {key!r}')
    if is_accuracy(record['y'].get('metric', '')) and not record.get('floors'):
      fail('a curve of kNN or linear accuracy must carry its floors ("floors": [{"label", "y"}])')
    for series in record['series']:
      if len(series['x']) != len(series['y']):
        fail(f'series {series["label"]!r}: x and y differ in length')
  elif kind == 'experiment':
    if record.get('experiment') not in EXPERIMENTS:
      fail(f'unknown experiment {record.get("experiment")!r}: expected one of {sorted(EXPERIMENTS)}')
  else:
    fail(f'unknown kind {kind!r}: expected table, curves or experiment')


def is_accuracy(metric: str) -> bool:
  return any(word in metric for word in ('knn', 'linear_top1', 'probe_top1'))


# ----------------------------------------------------------------------------------------------- results: tables


def fmt(value, spec: str | None) -> str:
  if value is None:
    return '–'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, (int, float)) and spec:
    return format(value, spec)
  return str(value)


def cell_value(record: dict, row: dict, column: dict):
  derived = column.get('derived')
  if derived is None:
    return row.get(column['key'])
  if derived['op'] == 'mean':
    values = [row.get(k) for k in derived['of']]
    return None if any(v is None for v in values) else sum(values) / len(values)
  floor = next(f for f in record.get('floors', []) if f['label'] == derived['floor'])
  value, base = row.get(derived['of']), floor['values'].get(derived['of'])
  return None if value is None or base is None else value - base


def escape(text: str) -> str:
  return str(text).replace('|', '\\|')


def markdown_table(record: dict) -> str:
  columns = record['columns']
  lines = [
    '| ' + ' | '.join(escape(c['label']) for c in columns) + ' |',
    '|' + '|'.join('---' if i == 0 or not c.get('format') else '---:' for i, c in enumerate(columns)) + '|',
  ]
  for floor in record.get('floors', []):
    cells = [f'*floor: {escape(floor["label"])}*']
    for column in columns[1:]:
      cells.append(
        fmt(floor['values'].get(column['key']), column.get('format')) if column['key'] in floor['values'] else ''
      )
    lines.append('| ' + ' | '.join(cells) + ' |')
  for row in record['rows']:
    cells = [escape(fmt(cell_value(record, row, c), c.get('format'))) for c in columns]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def derived_notes(record: dict) -> list[str]:
  notes = []
  for column in record.get('columns', []):
    derived = column.get('derived')
    if derived and derived['op'] == 'mean':
      notes.append(f'"{column["label"]}" is computed here: the mean of the columns before it.')
    elif derived and derived['op'] == 'minus_floor':
      notes.append(f'"{column["label"]}" is computed here: the row\'s value minus the {derived["floor"]} floor.')
  return notes


def curves_table(record: dict) -> str:
  xs = sorted({x for s in record['series'] for x in s['x']})
  spec = record['y'].get('format', '.2f')
  lines = [
    '| ' + record['x']['label'] + ' | ' + ' | '.join(fmt(x, 'g') for x in xs) + ' |',
    '|---|' + '|'.join('---:' for _ in xs) + '|',
  ]
  for series in record['series']:
    by_x = dict(zip(series['x'], series['y']))
    lines.append(
      f'| {escape(series["label"])} | ' + ' | '.join(fmt(by_x.get(x), spec) if x in by_x else '' for x in xs) + ' |'
    )
  return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------- results: figures


def figure_name(record: dict) -> str:
  return f'{record["study"]}_{os.path.splitext(os.path.basename(record["_path"]))[0]}.png'


def figure_data(record: dict) -> dict | None:
  """What a record's figure draws: {'panels': [{'title', 'x', 'y', 'lines': [...], 'floors': [...]}]}, or for a
  table whose figure names ``bars``, panels of {'title', 'y', 'bars': [{'label', 'y'}], 'floors'}.

  Every panel of kNN or linear accuracy carries the record's floors for that metric, drawn dashed.
  """
  kind = record.get('kind', 'table')
  if kind == 'curves':
    floors = [{'label': f['label'], 'y': f['y']} for f in record.get('floors', [])]
    references = [{'label': f['label'], 'y': f['y']} for f in record.get('reference_lines', [])]
    return {
      'panels': [
        {
          'title': record['title'],
          'x': record['x']['label'],
          'y': record['y']['label'],
          'log_x': False,
          'lines': [{'label': s['label'], 'x': s['x'], 'y': s['y']} for s in record['series']],
          'floors': floors,
          'references': references,
        }
      ]
    }
  spec = record.get('figure')
  if kind != 'table' or not spec:
    return None
  columns = {c['key']: c for c in record['columns']}
  panels = []
  for panel in spec['panels']:
    floors = [
      {'label': f['label'], 'y': f['values'][panel['y']]} for f in record.get('floors', []) if panel['y'] in f['values']
    ]
    if 'bars' in spec:  # One bar per row with a value, labelled by the row's spec['bars'] column.
      bars = [{'label': str(row[spec['bars']]), 'y': row[panel['y']]} for row in record['rows']]
      panels.append(
        {
          'title': columns[panel['y']]['label'],
          'y': columns[panel['y']]['label'],
          'bars': [b for b in bars if b['y'] is not None],
          'floors': floors,
        }
      )
      continue
    groups: dict[str, list] = {}
    for row in record['rows']:  # Rows without the value (a run not yet probed) are left out of the line.
      if row[panel['y']] is not None:
        groups.setdefault(str(row[spec['group']]), []).append((row[spec['x']], row[panel['y']]))
    panels.append(
      {
        'title': columns[panel['y']]['label'],
        'x': columns[spec['x']]['label'],
        'y': columns[panel['y']]['label'],
        'log_x': spec.get('log_x', False),
        'lines': [
          {'label': g, 'x': [p[0] for p in sorted(points)], 'y': [p[1] for p in sorted(points)]}
          for g, points in groups.items()
        ],
        'floors': floors,
        'references': [],
      }
    )
  return {'panels': panels}


def draw_figure(data: dict, path: str) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  panels = data['panels']
  ncols = min(len(panels), 2)
  nrows = (len(panels) + ncols - 1) // ncols
  fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.2 * nrows), dpi=100, squeeze=False)
  colours = plt.get_cmap('tab10')
  for ax, panel in zip(axes.flat, panels):
    if 'bars' in panel:
      ys = [b['y'] for b in panel['bars']] + [f['y'] for f in panel['floors']]
      ax.bar(range(len(panel['bars'])), [b['y'] for b in panel['bars']], color=colours(0))
      ax.set_xticks(range(len(panel['bars'])), [b['label'] for b in panel['bars']], rotation=30, ha='right')
      ax.set_ylim(min(ys) - 0.1 * (max(ys) - min(ys) + 1), max(ys) + 0.1 * (max(ys) - min(ys) + 1))  # Not from 0.
    for i, line in enumerate(panel.get('lines', [])):
      ax.plot(
        line['x'],
        line['y'],
        marker='o',
        markersize=3,
        color=colours(i % 10),
        linestyle='-' if i < 10 else ':',
        label=line['label'],
      )
    for j, floor in enumerate(panel['floors']):
      ax.axhline(floor['y'], color=('black', 'dimgray', 'gray')[j % 3], **FLOOR_STYLE, label=f'floor: {floor["label"]}')
    for reference in panel.get('references', []):
      ax.axhline(reference['y'], color='gray', linestyle=':', linewidth=1.0, label=reference['label'])
    if panel.get('log_x'):
      ax.set_xscale('log', base=2)
      xs = sorted({x for line in panel['lines'] for x in line['x']})
      ax.set_xticks(xs, [str(x) for x in xs])
    ax.set(title=panel['title'], xlabel=panel.get('x', ''), ylabel=panel['y'])
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis('off')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  for ax in list(axes.flat)[1 : len(panels)]:  # Floors that only later panels have.
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in labels:
        handles.append(handle)
        labels.append(label)
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize='small', frameon=False)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, bbox_inches='tight', metadata={'Software': None})
  plt.close(fig)


# ----------------------------------------------------------------------------------------------- results: pages


def provenance(record: dict) -> list[str]:
  commit = record['commit'] or '–'
  lines = [
    f'*{record["date"]}, commit `{commit}`' + (f', {record["machine"]}' if record.get('machine') else '') + '.*',
    '',
    f'Source: {record["source"]}. Data: `{record["_path"]}`.',
    '',
  ]
  if record.get('_floors_source'):
    lines += [f'Floors: {record["_floors_source"]}.', '']
  lines += ['```bash', record['command'], '```', '']
  return lines


def record_section(record: dict, figures: dict) -> list[str]:
  lines = [f'## {record["title"]}', '']
  lines += provenance(record)
  kind = record.get('kind', 'table')
  if kind == 'table':
    lines += [markdown_table(record), '']
  elif kind == 'curves':
    lines += [curves_table(record), '']
  elif kind == 'experiment':
    lines += EXPERIMENTS[record['experiment']](record)
  data = figure_data(record)
  if data is not None:
    name = figure_name(record)
    figures[name] = data
    floors = sorted({f['label'] for p in data['panels'] for f in p['floors']})
    caption = record.get('caption') or record['title']
    if floors:
      caption += '. Dashed: the floors (' + ', '.join(floors) + ').'
    lines += [f'```{{figure}} figures/{name}', f':alt: {record["title"]}', '', caption, '```', '']
  notes = list(record.get('notes', [])) + derived_notes(record)
  if notes:
    lines += [f'* {note}' for note in notes] + ['']
  return lines


def study_page(study: str, records: list[dict], figures: dict) -> str:
  text_path = os.path.join(DOCS, 'results', 'text', f'{study}.md')
  lines = [
    '<!-- Generated by docs/generate_results.py from benchmarks/results/'
    f'{study}/: do not edit; edit the JSON or docs/results/text/{study}.md. -->',
    '',
  ]
  if os.path.exists(text_path):
    with open(text_path, encoding='utf-8') as f:
      title = f.readline().strip()
    if not title.startswith('# '):
      raise SchemaError(f'docs/results/text/{study}.md must start with "# Title"')
    lines += [title, '', '```{include} text/' + f'{study}.md', ':start-line: 1', '```', '']
  else:
    lines += [f'# {study}', '']
  for record in records:
    lines += record_section(record, figures)
  return '\n'.join(lines).rstrip() + '\n'


STUDY_ORDER = (
  'quick',
  'cifar10_cpu',
  'no_predictor',
  'predictors',
  'batch_study',
  'ablation',
  'linear_dynamics',
  'landscape',
  'landscape_speed',
  'throughput',
)


def results_index(studies: list[str]) -> str:
  ordered = [s for s in STUDY_ORDER if s in studies] + sorted(s for s in studies if s not in STUDY_ORDER)
  lines = ['<!-- Generated by docs/generate_results.py: do not edit; see docs/results/text/index.md. -->', '']
  with open(os.path.join(DOCS, 'results', 'text', 'index.md'), encoding='utf-8') as f:
    lines += [f.read().rstrip(), '']
  lines += ['```{toctree}', ':maxdepth: 1', '', *ordered, '```', '']
  return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------- adapters


def linear_dynamics_section(record: dict) -> list[str]:
  """The tables of ``python -m gsg_jax.experiments.linear_dynamics``'s results.json, and its figures."""
  folder = os.path.dirname(os.path.join(REPO, record['_path']))
  with open(os.path.join(folder, record['results_file']), encoding='utf-8') as f:
    results = json.load(f)
  c = results['config']
  threshold = results['collapse_threshold']
  lines = [
    f'Setting: τ = {c["tau"]:g}, α_p = {c["alpha_p"]:g}, σ² = {c["sigma2"]:g}; collapse threshold '
    f'η = τ²/(4(1+σ²)) = {threshold["threshold"]:.4f}.',
    '',
    '### Per-mode dynamics against the closed-form fixed points',
    '',
    '| weight decays η | starts on the parabola | survival mismatches | largest end-point error of survivors |',
    '|---:|---:|---:|---:|',
    f'| {len(threshold["etas"])} | {len(threshold["p0"])} | {threshold["mismatches"]} '
    f'| {threshold["max_abs_p_end_minus_p_plus_survivors"]:.2g} |',
    '',
    '### Linear BYOL: weight-decay sweep',
    '',
    f'W, W_p and an EMA W_a; Euler step {c["dt"]:g}, β = {c["beta"]:g}, n = {c["n1"]}. Alignment: '
    '‖[F, W_p]‖; balancing: ‖WWᵀ − W_pᵀW_p/α_p‖; at the end of the run.',
    '',
    '| η | alignment | balancing | ‖W‖ | surviving modes |',
    '|---:|---:|---:|---:|---:|',
  ]
  for row in results['matrix_dynamics']['eta_sweep']:
    lines.append(
      f'| {row["eta"]:g} | {row["alignment"]:.2g} | {row["balancing"]:.2g} | {row["w_norm"]:.3g} '
      f'| {row["surviving_modes"]} |'
    )
  lines += [
    '',
    '### Linear BYOL: EMA-rate sweep',
    '',
    f'η = {c["eta"]:g}.',
    '',
    '| β | alignment | balancing | ‖W‖ | surviving modes |',
    '|---:|---:|---:|---:|---:|',
  ]
  for row in results['matrix_dynamics']['beta_sweep']:
    lines.append(
      f'| {row["beta"]:g} | {row["alignment"]:.2g} | {row["balancing"]:.2g} | {row["w_norm"]:.3g} '
      f'| {row["surviving_modes"]} |'
    )
  lines += [
    '',
    '### Without a predictor or without stop-gradient',
    '',
    '| variant | ‖W‖ at start | ‖W‖ at end |',
    '|---|---:|---:|',
  ]
  for name, row in results['matrix_dynamics']['variants'].items():
    lines.append(f'| {mathless(name)} | {row["w_norm_initial"]:.3g} | {row["w_norm_final"]:.3g} |')
  d = results['directpred']
  lines += [
    '',
    '### DirectPred on the linear model',
    '',
    f'η = {d["eta"]:g}; {len(d["s0"])} modes with initial eigenvalues from {min(d["s0"]):g} to '
    f'{max(d["s0"]):g}. The theory predicts {d["predicted_survivors_learned"]} survivors for a learned '
    'predictor.',
    '',
    '| predictor | surviving modes | ‖W‖ at end |',
    '|---|---:|---:|',
  ]
  for name, row in d['runs'].items():
    lines.append(f'| {mathless(name)} | {row["surviving_modes"]} | {row["w_norm_final"]:.3g} |')
  lines.append('')
  for png in record.get('figures', []):
    lines += [
      f'```{{figure}} ../../{os.path.relpath(os.path.join(folder, png), REPO)}',
      f':alt: {png}',
      '',
      record['figure_captions'][png],
      '```',
      '',
    ]
  return lines


def mathless(name: str) -> str:
  """The experiment's matplotlib labels ('$W_p=I$', '$\\epsilon$=0.1') as plain text."""
  return name.replace('$W_p=I$', 'W_p = I').replace('$\\epsilon$', 'ε').replace('$s_{max}$', 's_max')


def result_files(record: dict):
  """(name, parsed JSON) of each file a record lists in ``files`` (under ``benchmarks/results/``)."""
  for name in record['files']:
    with open(os.path.join(RESULTS, name), encoding='utf-8') as f:
      yield name, json.load(f)


def throughput_section(record: dict) -> list[str]:
  """Train-step throughput from ``benchmarks/train_step.py``'s JSON files (``{"date", "command", "results"}``)."""
  lines = [
    '| file | date | method | backbone | width | dtype | batch | devices | images/s | step (s) |',
    '|---|---|---|---|---:|---|---:|---:|---:|---:|',
  ]
  for name, data in result_files(record):
    for r in data['results']:
      if r.get('images_per_second') is None:
        continue
      lines.append(
        f'| `{name}` | {data["date"]} | {r["method"]} | {r.get("backbone", "–")} | {r.get("width", "–")} '
        f'| {r.get("dtype", "–")} | {r["batch_size"]} | {r.get("devices", 1)} '
        f'| {r["images_per_second"]:.1f} | {r["step_seconds"]:.2f} |'
      )
  lines += ['', "Each file's command:", '']
  for name, data in result_files(record):
    lines += [f'* `{name}`: `python {data["command"]}`']
  return lines + ['']


def flops_section(record: dict) -> list[str]:
  """XLA's FLOP count of one train step, from ``benchmarks/train_step.py --compile-only`` JSON files."""
  lines = [
    '| method | backbone | width | dtype | crop | batch | TFLOP per step | GFLOP per image |',
    '|---|---|---:|---|---:|---:|---:|---:|',
  ]
  for name, data in result_files(record):
    for r in data['results']:
      lines.append(
        f'| {r["method"]} | {r["backbone"]} | {r["width"]} | {r["dtype"]} | {r["crop_size"]} '
        f'| {r["batch_size"]} | {r["flops_per_step"] / 1e12:.2f} | {r["flops_per_image"] / 1e9:.2f} |'
      )
    lines += ['', f'`{name}`: `python {data["command"]}` ({data["date"]}).', '']
  return lines


def landscape_timing_section(record: dict) -> list[str]:
  """``benchmarks/landscape.py``'s timing of the paper's grid: measured epochs per objective, the whole extrapolated."""
  lines = []
  for name, data in result_files(record):
    c = data['config']
    lines += [
      f'`{name}`: `python {data["command"]}` ({data["date"]}; {c["num_epochs"]} epochs, {c["num_seeds"]} '
      f'seeds, study `{c["study"]}`, vmap width {c["vmap_width"]}; load average at start '
      f'{data["machine"]["load_average_1min_at_start"]:.1f}). Measured {data["wall_s"]:.0f} s; the whole '
      f'grid extrapolated to {data["extrapolated_total_s"] / 3600:.1f} h.',
      '',
      '| objective | runs | s per epoch | GFLOP/s | whole study, extrapolated (h) |',
      '|---|---:|---:|---:|---:|',
    ]
    for r in data['results']:
      lines.append(
        f'| `{r["objective"]}` | {r["runs_full"]} | {r["seconds_per_epoch"]:.2f} '
        f'| {r["achieved_gflops_per_s"]:.1f} | {r["extrapolated_full_s"] / 3600:.2f} |'
      )
    lines.append('')
  return lines


EXPERIMENTS = {
  'linear_dynamics': linear_dynamics_section,
  'throughput': throughput_section,
  'flops': flops_section,
  'landscape_timing': landscape_timing_section,
}


# ----------------------------------------------------------------------------------------------- components


def first_line(fn) -> str:
  doc = (getattr(fn, '__doc__', None) or '').strip()
  return doc.split('\n\n')[0].replace('\n', ' ') if doc else ''


def _function_name(fn) -> str:
  """``module.name`` of a registered function; for a function made by a factory, the module attribute holding it."""
  module = sys.modules[fn.__module__]
  if '<locals>' in fn.__qualname__:
    name = next(n for n, value in vars(module).items() if value is fn)
    return f'{fn.__module__}.{name}'
  return f'{fn.__module__}.{fn.__qualname__}'


def components_page() -> str:
  sys.path.insert(0, REPO)
  import ml_collections

  from gsg_jax import methods

  lines = [
    "<!-- Generated by docs/generate_results.py from gsg_jax.methods' registries: do not edit. -->",
    '',
    '| `method.loss` | views | cuts the gradient into its targets | function | hyperparameters (`method.<name>.*`) |',
    '|---|---:|---|---|---|',
  ]
  for name, loss in methods.LOSSES.items():
    hyper = ', '.join(f'`{k}` = {v!r}' for k, v in loss.defaults.items()) or '–'
    lines.append(
      f'| `{name}` | {loss.num_views} | {"yes" if loss.cuts_target_gradient else "no"} '
      f'| {{py:func}}`~{_function_name(loss.fn)}` | {hyper} |'
    )
  for title, registry, extra in (
    ('method.target', methods.TARGETS, (1,)),
    ('method.predictor', methods.PREDICTORS, ()),
  ):
    lines += ['', f'| `{title}` | component | what it is | hyperparameters (`method.<name>.*`) |', '|---|---|---|---|']
    for name, component in registry.items():
      built = component.build(ml_collections.ConfigDict(component.defaults) if component.defaults else None, *extra)
      kind = type(built)
      summary = (kind.__doc__ or '').strip().split('\n')[0]
      hyper = ', '.join(f'`{k}` = {v!r}' for k, v in component.defaults.items()) or '–'
      lines.append(f'| `{name}` | {{py:class}}`~{kind.__module__}.{kind.__qualname__}` | {escape(summary)} | {hyper} |')
  lines.append('')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------- configs


CONFIG_SOURCES = (
  ('gsg_jax/config_lib.py', 'make_config', ''),
  ('gsg_jax/data/__init__.py', 'default_data_config', 'data.'),
  ('gsg_jax/data/augment.py', 'default_augment_config', 'augment.'),
)
ASSIGN = re.compile(r'^(\s*)c\.([\w.]+)\s*=\s*(.*)$')
BRANCH = re.compile(r'^\s*(?:if|elif) preset(?: ==| in) (.+):\s*(#.*)?$')


def config_comments(path: str, function: str, prefix: str) -> dict[tuple[str, str], str]:
  """{(branch, key): comment} of every ``c.KEY = ...`` line of ``function``: its trailing comment, or the comment
  lines directly above it. ``branch`` is '' at the function's top level, else the preset condition it sits under."""
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    source = f.read()
  tree = ast.parse(source)
  node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
  lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
  comments = {}
  for token in tokenize.generate_tokens(io.StringIO('\n'.join(lines)).readline):
    if token.type == tokenize.COMMENT:
      comments[token.start[0]] = token.string.lstrip('#').strip()
  out, branch, pending, body_indent = {}, '', [], node.body[0].col_offset
  last_key, last_indent = None, 0
  for number, line in enumerate(lines, 1):
    stripped = line.strip()
    match = BRANCH.match(line)
    if match:
      branch = match.group(1).strip()
      pending = []
      continue
    if stripped.startswith('#'):
      if last_key is not None and len(line) - len(stripped) > last_indent + 4:  # A trailing comment continued.
        out[last_key] += ' ' + comments.get(number, '')
      else:
        pending.append(comments.get(number, ''))
        last_key = None
      continue
    match = ASSIGN.match(line)
    last_key = None
    if match:
      indent, key = len(match.group(1)), prefix + match.group(2)
      where = '' if indent <= body_indent else branch
      text = comments.get(number) or ' '.join(pending)
      if text:
        out[(where, key)] = text
      if comments.get(number):
        last_key, last_indent = (where, key), indent
    if stripped:
      pending = []
  return out


def flatten(config, prefix: str = '') -> dict:
  import ml_collections

  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def show(value) -> str:
  text = repr(value)
  if isinstance(value, tuple) and len(text) > 60:
    text = '(' + ', '.join(repr(v)[:40] if isinstance(v, (tuple, list, dict)) else repr(v) for v in value) + ')'
  return '`' + text.replace('`', "'").replace('|', '\\|') + '`'


def config_pages() -> tuple[str, str]:
  sys.path.insert(0, REPO)
  from gsg_jax import config_lib

  comments = {}
  for path, function, prefix in CONFIG_SOURCES:
    comments.update(config_comments(path, function, prefix))
  base = flatten(config_lib.make_config())
  keys = ['| key | default (`cifar10`) | where the value comes from |', '|---|---|---|']
  for key, value in base.items():
    keys.append(f'| `{key}` | {show(value)} | {escape(comments.get(("", key), "")) or "–"} |')
  keys = [
    '<!-- Generated by docs/generate_results.py from gsg_jax/config_lib.py, gsg_jax/data/__init__.py and '
    'gsg_jax/data/augment.py: do not edit. -->',
    '',
    *keys,
    '',
  ]

  presets = [
    '<!-- Generated by docs/generate_results.py from gsg_jax/config_lib.py and configs/*.py: do not edit. -->',
    '',
  ]
  for preset in config_lib.PRESETS[1:]:
    config = flatten(config_lib.make_config(preset=preset))
    branch_comment = {k: v for (b, k), v in comments.items() if b and repr(preset) in b}
    presets += [
      f'## The `{preset}` preset',
      '',
      '| key | value | `cifar10` | where the value comes from |',
      '|---|---|---|---|',
    ]
    for key, value in config.items():
      if base.get(key) != value:
        presets.append(
          f'| `{key}` | {show(value)} | {show(base.get(key))} | {escape(branch_comment.get(key, "")) or "–"} |'
        )
    presets.append('')
  presets += [
    '## The config files',
    '',
    "Each `configs/<name>.py` sets the method's components; `:preset` picks the preset. The columns are "
    'what each preset of each file resolves to (`config_lib.named_config(name, preset)`).',
    '',
    '| file | docstring | `method.loss` | `method.target` | `method.predictor` | presets |',
    '|---|---|---|---|---|---|',
  ]
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    name = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding='utf-8') as f:
      doc = (ast.get_docstring(ast.parse(f.read())) or '').split('\n')[0]
    if name in EXPERIMENT_CONFIGS:  # An experiment's own config (gsg_jax/experiments/<name>).
      presets.append(f'| `configs/{name}.py` | {escape(doc)} | – | – | – | (none), `quick` |')
      continue
    config = config_lib.named_config(name)
    works = [p for p in config_lib.PRESETS if config_lib.named_config(name, p) is not None]
    presets.append(
      f'| `configs/{name}.py` | {escape(doc)} | `{config.method.loss}` | `{config.method.target}` '
      f'| `{config.method.predictor}` | {", ".join(f"`{p}`" for p in works)} |'
    )
  presets.append('')
  presets += recipe_tables(config_lib, comments)
  for name in EXPERIMENT_CONFIGS:
    presets += experiment_config_table(name)
  return '\n'.join(keys), '\n'.join(presets)


RECIPES = {'contrastive_recipe': 'gsg_jax/config_lib.py', 'directpred_recipe': 'gsg_jax/config_lib.py'}


def recipe_tables(config_lib, base_comments) -> list[str]:
  """Per config file and preset, the keys its recipe (``contrastive_recipe``, ``directpred_recipe``) sets on top of
  ``make_config``'s preset, with the recipe's comments."""
  from gsg_jax import methods

  recipe_comments = {name: config_comments(path, name, '') for name, path in RECIPES.items()}
  lines = [
    '## The recipes of the config files',
    '',
    'What each config file changes on top of its preset (`config_lib.contrastive_recipe` for the contrastive '
    'losses, `config_lib.directpred_recipe` for `byol_directpred.py`); files and presets not listed change '
    'nothing.',
    '',
  ]
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name in EXPERIMENT_CONFIGS:
      continue
    rows = []
    for preset in config_lib.PRESETS:
      config = config_lib.named_config(name, preset)
      recipe = (
        'directpred_recipe'
        if config.method.predictor == 'directpred'
        else 'contrastive_recipe'
        if not methods.LOSSES[config.method.loss].cuts_target_gradient
        else None
      )
      comments = recipe_comments.get(recipe, {})
      plain = flatten(config_lib.make_config(config.method.loss, config.method.target, config.method.predictor, preset))
      for key, value in flatten(config).items():
        if plain.get(key) != value:
          text = comments.get((repr(preset), key)) or comments.get(('', key), '')
          rows.append(f'| `{preset}` | `{key}` | {show(value)} | {show(plain.get(key))} | {escape(text) or "–"} |')
    if rows:
      lines += [
        f'### `configs/{name}.py`',
        '',
        "| preset | key | value | the preset's | where the value comes from |",
        '|---|---|---|---|---|',
        *rows,
        '',
      ]
  return lines


EXPERIMENT_CONFIGS = {  # configs/<name>.py of the experiments (their own keys, not make_config's): the page's words.
  'linear_dynamics': "The linear-dynamics experiment's own config ([Linear dynamics](experiments/linear_dynamics.md)): "
  "every key, the committed run's value by default and the `quick` preset's changes.",
  'landscape': "The landscape experiments' own config ([Landscape](experiments/landscape.md)): every key, the paper's "
  "setting by default and the `quick` preset's changes.",
}


def experiment_config_table(name: str) -> list[str]:
  """``configs/<name>.py``'s keys for an experiment's own config, with their comments."""
  from importlib import util

  path = os.path.join(REPO, 'configs', f'{name}.py')
  spec = util.spec_from_file_location(f'docs_{name}_config', path)
  module = util.module_from_spec(spec)
  spec.loader.exec_module(module)
  comments = config_comments(f'configs/{name}.py', 'get_config', '')
  base, quick = flatten(module.get_config()), flatten(module.get_config('quick'))
  lines = [
    f'## `configs/{name}.py`',
    '',
    EXPERIMENT_CONFIGS[name],
    '',
    '| key | default | `quick` | where the value comes from |',
    '|---|---|---|---|',
  ]
  for key, value in base.items():
    changed = show(quick[key]) if quick.get(key) != value else ''
    text = comments.get(('', key)) or comments.get(("'quick'", key), '')
    lines.append(f'| `{key}` | {show(value)} | {changed} | {escape(text) or "–"} |')
  return lines + ['']


# ----------------------------------------------------------------------------------------------- notebook


def execute_notebook() -> str:
  """examples/ablation.ipynb executed headless on the CPU into docs/examples/ablation.ipynb (about 2 minutes)."""
  import nbformat
  from nbclient import NotebookClient

  notebook = nbformat.read(os.path.join(REPO, 'examples', 'ablation.ipynb'), as_version=4)
  env = dict(os.environ)
  os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, env.get('PYTHONPATH')]))
  os.environ['JAX_PLATFORMS'] = 'cpu'
  try:
    NotebookClient(
      notebook, kernel_name='python3', timeout=900, resources={'metadata': {'path': os.path.join(REPO, 'examples')}}
    ).execute()
  finally:
    os.environ.clear()
    os.environ.update(env)
  out = os.path.join(DOCS, 'examples', 'ablation.ipynb')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  nbformat.write(notebook, out)
  return out


# ----------------------------------------------------------------------------------------------- main


def generate() -> tuple[dict[str, str], dict[str, dict]]:
  """({path relative to docs/: text}, {figure file name: figure data}) of everything generated."""
  studies = load_records()
  pages, figures = {}, {}
  for study, records in studies.items():
    pages[f'results/{study}.md'] = study_page(study, records, figures)
  pages['results/index.md'] = results_index(list(studies))
  pages['_generated/components.md'] = components_page()
  pages['_generated/config_keys.md'], pages['_generated/presets.md'] = config_pages()
  pages['results/figures/figures.json'] = json.dumps(figures, indent=1, ensure_ascii=False, sort_keys=True) + '\n'
  return pages, figures


def differences(pages: dict[str, str]) -> list[str]:
  """The generated files whose committed copy differs from ``pages`` (or is missing, or is left over)."""
  stale = []
  for name, text in pages.items():
    path = os.path.join(DOCS, name)
    if not os.path.exists(path):
      stale.append(f'{name} (missing)')
      continue
    with open(path, encoding='utf-8') as f:
      if f.read() != text:
        stale.append(name)
  generated_pages = {os.path.relpath(p, DOCS) for p in glob.glob(os.path.join(DOCS, 'results', '*.md'))}
  stale += [f'{name} (no data generates it)' for name in sorted(generated_pages - set(pages))]
  figures = json.loads(pages['results/figures/figures.json'])
  for name in figures:
    if not os.path.exists(os.path.join(DOCS, 'results', 'figures', name)):
      stale.append(f'results/figures/{name} (missing)')
  return stale


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true', help='exit 1 if a committed generated file differs')
  parser.add_argument('--notebook', action='store_true', help='also execute examples/ablation.ipynb (minutes)')
  args = parser.parse_args(argv)
  pages, figures = generate()
  if args.check:
    stale = differences(pages)
    for name in stale:
      print(f'docs/{name} differs from what docs/generate_results.py generates', file=sys.stderr)
    return 1 if stale else 0
  for name in glob.glob(os.path.join(DOCS, 'results', '*.md')):
    if os.path.relpath(name, DOCS) not in pages:
      os.remove(name)
  for name, text in pages.items():
    path = os.path.join(DOCS, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text)
  for png in glob.glob(os.path.join(DOCS, 'results', 'figures', '*.png')):
    if os.path.basename(png) not in figures:
      os.remove(png)
  for name, data in figures.items():
    draw_figure(data, os.path.join(DOCS, 'results', 'figures', name))
  if args.notebook:
    print('executed', execute_notebook())
  print(f'wrote {len(pages)} pages and {len(figures)} figures under docs/')
  return 0


if __name__ == '__main__':
  sys.exit(main())
