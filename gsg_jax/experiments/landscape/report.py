r"""The claims of Pokle et al. (2022) with verdicts, from a landscape workdir's results (no hand-typed numbers).

    python -m gsg_jax.experiments.landscape.report --workdir=DIR [--long=DIR_LONG] [--out=FOLDER]
    python -m gsg_jax.experiments.landscape.report --workdir=DIR --long-command

Reads ``DIR/results.json`` or, while a run is still going, every finished
``DIR/runs/<study>/<objective>/result.json``; writes ``claims.md`` (the
table: mean ± std over seeds of the end value of min_i max_j |cos(w_j, M_i)|
per claim, its verdict and rule), ``results_summary.json`` (the same numbers)
and figures into ``--out``.

The thresholds, rules and verdicts are ``claims.py``'s.
"""

import argparse
import glob
import json
import os

from gsg_jax.experiments.landscape.claims import (
  SETTLED,
  claims,
  gsg_effect,
  infonce_probes,
  long_candidates,
  ms,
  settled,
)


def load(workdir: str) -> dict:
  """{'studies': {study: {objective: result}}, 'provenance': ...} from results.json or the finished parts."""
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  studies = {}
  for p in sorted(glob.glob(os.path.join(workdir, 'runs', '*', '*', 'result.json'))):
    study, name = p.split(os.sep)[-3:-1]
    with open(p) as f:
      studies.setdefault(study, {})[name] = json.load(f)
  partial = {'studies': studies, 'partial': True}
  for name, key in (('provenance.json', 'provenance'), ('config.json', 'config')):
    if os.path.exists(os.path.join(workdir, name)):
      with open(os.path.join(workdir, name)) as f:
        partial[key] = json.load(f)
  return partial


def diagnostics_table(path: str) -> str:
  """Seed-mean W diagnostics (``diagnostics.py --out``) per study, objective and sparsity, as Markdown."""
  if not os.path.exists(path):
    return ''
  with open(path) as f:
    rows = json.load(f)
  groups = {}
  for r in rows:
    groups.setdefault((r['study'], r['objective'], r['sparsity'], r['epochs']), []).append(r)
  keys = ('recovery_min', 'in_span_recovery', 'span', 'purity', 'pure_neurons', 'covered')
  lines = [
    '| study | objective | sparsity | epochs | runs | ' + ' | '.join(keys) + ' |',
    '|---' * (5 + len(keys)) + '|',
  ]
  for (study, name, q, epochs), rs in groups.items():
    lines.append(
      f'| {study} | {name} | {q} | {epochs} | {len(rs)} | ' + ' | '.join(ms([r[k] for r in rs]) for k in keys) + ' |'
    )
  return '\n'.join(lines) + '\n'


def long_table(long_results: dict, at=(1000, 2000, 8000)) -> str:
  """Min/median/max of the 8000-epoch single-seed runs at a few epochs, per arm (Markdown)."""
  grid = (long_results or {}).get('studies', {}).get('grid', {})
  if not grid:
    return ''
  lines = ['| arm | ' + ' | '.join(f'epoch {e}: min / median / max' for e in at) + ' |', '|---' * (1 + len(at)) + '|']
  for name, res in grid.items():
    epochs, run = list(res['epochs']), res['runs'][0]
    cells = []
    for e in at:
      i = epochs.index(e) if e in epochs else None
      cells.append('n/a' if i is None else ' / '.join(f'{run["curves"][k][i]:.3f}' for k in ('min', 'median', 'max')))
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def markdown(results: dict) -> str:
  lines = ['| claim | evidence (end of training, mean ± std over seeds) | verdict |', '|---|---|---|']
  for row in claims(results):
    lines.append(f'| {row["claim"]} | {row["evidence"]} | **{row["verdict"]}** ({row["rule"]}) |')
  lines += [
    '',
    '**GSG (guided by image) against its base arm**, paired by mask, sparsity and seed '
    '(end min/median/max differences, GSG − base):',
    '',
    '| GSG arm | base | pairs | Δmin | Δmedian | Δmax | pair fractions 11/12/21/22 | answer |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for g in gsg_effect(results):
    fr = ' / '.join(v.split(' ±')[0] for v in g['pair_fractions'].values())
    lines.append(
      f'| {g["arm"]} | {g["base"]} | {g["pairs"]} | {g["delta"]["min"]} | {g["delta"]["median"]} | '
      f'{g["delta"]["max"]} | {fr} | {g["answer"]} |'
    )
  lines += [
    '',
    '**InfoNCE probes** (sparsity 0.1; one factor changed each):',
    '',
    '| study | change | min | median | max |',
    '|---|---|---|---|---|',
  ]
  for p in infonce_probes(results):
    lines.append(f'| {p["study"]} | {p["settings"]} | {p["min"]} | {p["median"]} | {p["max"]} |')
  grid = results['studies'].get('grid', {})
  if grid:
    lines += [
      '',
      '**Settledness** (largest move of the seed-mean min/median/max curve over the last quarter of '
      'training, sparsity 0.1, mask 0.5):',
      '',
    ]
    for name, res in grid.items():
      fixed = {'sparsity': 0.1} if res['runs'][0]['mask_prob'] is None else {'sparsity': 0.1, 'mask_prob': 0.5}
      lines.append(f'- {name}: {settled(res, **fixed):.3f}')
  return '\n'.join(lines) + '\n'


START, END = '<!-- landscape-report:start -->', '<!-- landscape-report:end -->'


def provenance_line(results: dict) -> str:
  """Which launches (command, date, commit, CPU) trained which jobs; a resumed workdir can mix several."""
  state = 'partial results (finished jobs only)' if results.get('partial') else 'complete'
  launches = {}
  for s, objectives in results['studies'].items():
    for o, res in objectives.items():
      p = res.get('provenance') or results.get('provenance') or {}
      launches.setdefault(json.dumps(p, sort_keys=True), []).append(f'{s}/{o}')
  parts = []
  for key, jobs in launches.items():
    p = json.loads(key)
    parts.append(
      f'`{p.get("command", "?")}` started {p.get("date", "?")} at commit {p.get("commit", "?")} on '
      f'{p.get("cpu", "?")} ({p.get("cpu_count", "?")} cores, shared) trained {len(jobs)} job(s)'
      + (f' ({", ".join(jobs)})' if len(jobs) <= 3 else '')
    )
  return f'Generated by `python -m gsg_jax.experiments.landscape.report` ({state}): ' + '; '.join(parts) + '.'


def report_text(results: dict, long_results: dict | None = None, diagnostics_path: str = '') -> str:
  """The report's Markdown: the claims and GSG tables, the 8,000-epoch table when ``long_results`` are given, and
  what InfoNCE's W holds when ``diagnostics_path`` exists. What ``--readme`` writes between the markers, after
  ``provenance_line``."""
  text = markdown(results)
  if long_results is not None:
    p = long_results.get('provenance') or {}
    text += (
      '\n**8,000 epochs, one seed** (mask 0.5, sparsity 0.1; the arms whose reduced curves moved by more '
      f'than {SETTLED} over their last quarter; `long` preset; results.json of `{p.get("command", "?")}`, '
      f'started {p.get("date", "?")} at commit {p.get("commit", "?")}; jobs already finished in that '
      'workdir by an earlier launch are reused, not retrained):\n\n' + long_table(long_results)
    )
  diag = diagnostics_table(diagnostics_path) if diagnostics_path else ''
  if diag:
    text += (
      "\n**What InfoNCE's W holds** (`diagnostics.py`: span = share of a neuron's weight inside span(M); "
      'purity = its largest latent coordinate over the norm of its latent coordinates; in-span recovery = '
      'the recovery with the out-of-span weight removed; covered = latents with a neuron at |cos| > 0.9 '
      'out of d):\n\n' + diag
    )
  return text


def replace_block(path: str, text: str) -> None:
  with open(path) as f:
    doc = f.read()
  if START not in doc or END not in doc:
    raise SystemExit(f'{path}: the markers {START} and {END} are missing.')
  head, rest = doc.split(START, 1)
  _, tail = rest.split(END, 1)
  with open(path, 'w') as f:
    f.write(head + START + '\n' + text + END + tail)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--long', default='', help='workdir of the 8000-epoch runs (long preset), for the figure.')
  parser.add_argument('--out', default='', help='output folder (default: the workdir).')
  parser.add_argument('--long-command', action='store_true', help="print the long runs' command and exit.")
  parser.add_argument(
    '--readme',
    default='',
    help=f'a Markdown file whose block between the markers {START!r} and {END!r} is replaced by the generated tables.',
  )
  args = parser.parse_args()
  results = load(args.workdir)
  if args.long_command:
    names = long_candidates(results)
    listed = ','.join(f"'{n}'" for n in names)
    print(
      'python -m gsg_jax.experiments.landscape --config=configs/landscape.py:long '
      f'--config.objectives="({listed},)" --workdir=<DIR>'
      if names
      else '# every arm settled: no long run'
    )
    return
  out = args.out or args.workdir
  os.makedirs(out, exist_ok=True)
  text = report_text(results, load(args.long) if args.long else None, os.path.join(out, 'diagnostics.json'))
  with open(os.path.join(out, 'claims.md'), 'w') as f:
    f.write(text)
  summary = {
    'provenance': results.get('provenance'),
    'partial': results.get('partial', False),
    'claims': claims(results),
    'gsg': gsg_effect(results),
    'infonce_probes': infonce_probes(results),
    'long_candidates': long_candidates(results),
  }
  with open(os.path.join(out, 'results_summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  if args.readme:
    replace_block(args.readme, provenance_line(results) + '\n\n' + text)
  from gsg_jax.experiments.landscape import figures

  figures.write_report_figures(results, load(args.long) if args.long else None, out)
  print(text)


if __name__ == '__main__':
  main()
