r"""The claims of Pokle et al. (2022) with verdicts, from a landscape workdir's results (no hand-typed numbers).

    python -m gsg_jax.experiments.landscape.report --workdir=DIR [--long=DIR_LONG] [--out=FOLDER]
    python -m gsg_jax.experiments.landscape.report --workdir=DIR --long-command

Reads ``DIR/results.json`` or, while a run is still going, every finished
``DIR/runs/<study>/<objective>/result.json``; writes ``claims.md`` (the
table: mean ± std over seeds of the end value of min_i max_j |cos(w_j, M_i)|
per claim, its verdict and rule), ``results_summary.json`` (the same numbers)
and figures into ``--out``.

Thresholds (min over latents of the best |cos|, "min" below; 1 is exact recovery):
* recovered: min ≥ 0.95 (every latent has a neuron within about 18°);
* bad minimum: min < 0.80;
* not collapsed: the std of f/‖f‖ over the batch (scale-free, comparable with and without BatchNorm) above
  0.25/√m (0 when collapsed; about 1/√m for a spread-out representation);
* warm start stays: end min ≥ initial min − 0.02; drifts: end min < initial min − 0.05;
* settled: the mean curve moves by at most 0.01 (min, median and max) over the last quarter of training.

Verdicts: reproduced (every setting of the claim satisfies its rule), partly (some do, or the rule holds in
a weaker form stated in the row), not (none do), not run (no results for it yet).
"""

import argparse
import glob
import json
import os

import numpy as np

RECOVERED, BAD, STAY, DRIFT, SETTLED = 0.95, 0.80, 0.02, 0.05, 0.01


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


def matches(run: dict, **fixed) -> bool:
  """Whether ``run`` (or a setting it stands for) has every ``fixed`` value."""
  for s in run.get('stands_for') or [run]:
    if all(s.get(k) == v for k, v in fixed.items()):
      return True
  return False


def ends(res: dict, key: str = 'min', **fixed) -> np.ndarray:
  return np.array([r['end'][key] for r in res['runs'] if matches(r, **fixed)], float)


def starts(res: dict, key: str = 'min', **fixed) -> np.ndarray:
  return np.array([r['curves'][key][0] for r in res['runs'] if matches(r, **fixed)], float)


def ms(values) -> str:
  values = np.asarray(values, float)
  return f'{values.mean():.3f} ± {values.std():.3f}' if values.size else 'n/a'


def settings_of(res: dict, keys=('mask_prob', 'sparsity', 'c')) -> list[dict]:
  seen = {}
  for r in res['runs']:
    seen.setdefault(tuple(r.get(k) for k in keys), dict(zip(keys, (r.get(k) for k in keys))))
  return list(seen.values())


def settled(res: dict, **fixed) -> float:
  """Largest move of the seed-mean curve (min, median, max) over the last quarter of training."""
  runs = [r for r in res['runs'] if matches(r, **fixed)]
  epochs = np.asarray(res['epochs'])
  i = int(np.searchsorted(epochs, 0.75 * epochs[-1]))
  moves = [
    abs(np.mean([r['curves'][k][-1] for r in runs]) - np.mean([r['curves'][k][i] for r in runs]))
    for k in ('min', 'median', 'max')
  ]
  return float(max(moves))


def verdict(flags) -> str:
  flags = list(flags)
  if not flags:
    return 'not run'
  return 'reproduced' if all(flags) else ('partly' if any(flags) else 'not reproduced')


def claims(results: dict) -> list[dict]:
  """One row per claim: claim, evidence (numbers), verdict, rule."""
  st = results['studies']
  grid, rows = st.get('grid', {}), []
  m = results.get('config', {}).get('m', 50)
  std_floor = 0.25 / np.sqrt(m)

  inf = grid.get('infonce')
  ev, flags, near = [], [], []
  if inf:
    others = [res for name, res in grid.items() if not name.startswith('infonce')]
    for s in settings_of(inf):
      e = ends(inf, sparsity=s['sparsity'])
      best_other = max(
        (e2.mean() for e2 in (ends(r, sparsity=s['sparsity']) for r in others) if e2.size), default=np.nan
      )
      ev.append(
        f'sparsity {s["sparsity"]}: min {ms(e)}, median {ms(ends(inf, "median", sparsity=s["sparsity"]))}'
        f" (best non-contrastive arm's min {best_other:.3f})"
      )
      flags.append(e.mean() >= RECOVERED)
      near.append(e.mean() >= BAD or e.mean() > best_other + 0.1)
  v = verdict(flags)
  if v == 'not reproduced' and any(near):
    v = 'partly'
  rows.append(
    {
      'claim': 'C1: contrastive (InfoNCE) recovers the dictionary from a random init, every sparsity',
      'evidence': '; '.join(ev) or 'n/a',
      'verdict': v,
      'rule': f'reproduced: min ≥ {RECOVERED} at every sparsity; partly: some sparsity has min ≥ {BAD} '
      f'or above every non-contrastive arm by > 0.1',
    }
  )

  def bad_minima(names, claim):
    ev, flags = [], []
    for name in names:
      res = grid.get(name)
      if not res:
        continue
      for s in settings_of(res):
        e = ends(res, mask_prob=s['mask_prob'], sparsity=s['sparsity'])
        nstd = ends(res, 'normalized_std', mask_prob=s['mask_prob'], sparsity=s['sparsity'])
        flags.append(e.mean() < BAD and nstd.mean() > std_floor)
      per_setting = [ends(res, mask_prob=s['mask_prob'], sparsity=s['sparsity']).mean() for s in settings_of(res)]
      ev.append(
        f'{name}: min {ms(ends(res))} over {len(per_setting)} settings (worst setting {min(per_setting):.3f}, '
        f'best {max(per_setting):.3f})'
      )
    rows.append(
      {
        'claim': claim,
        'evidence': '; '.join(ev) or 'n/a',
        'verdict': verdict(flags),
        'rule': f'every (mask, sparsity): min < {BAD} and std of f/‖f‖ > 0.25/sqrt(m)',
      }
    )

  bad_minima(
    ['negcos_alt_none', 'negcos_simsiam_none'],
    'C2: non-contrastive training ends at non-collapsed bad minima, every mask probability and sparsity',
  )
  bad_minima(['negcos_alt_linear'], 'C3: a linear predictor with BatchNorm does not rescue it')

  warm, ev, flags = st.get('warm_start', {}), [], []
  for name, res in warm.items():
    cs = sorted({r['c'] for r in res['runs']})
    for c in cs:
      e, s0 = ends(res, c=c), starts(res, c=c)
      ev.append(f'{name} c={c}: {ms(s0)} → {ms(e)}')
    near, far = max(cs), min(cs)
    flags.append(ends(res, c=near).mean() >= starts(res, c=near).mean() - STAY)
    flags.append(ends(res, c=far).mean() < starts(res, c=far).mean() - DRIFT)
  rows.append(
    {
      'claim': 'C4: from a warm start near the ground truth training stays; from a far one it drifts',
      'evidence': '; '.join(ev) or 'n/a',
      'verdict': verdict(flags),
      'rule': f'largest c: end ≥ start − {STAY}; smallest c: end < start − {DRIFT} (min, per arm)',
    }
  )

  ev, flags = [], []
  for name, res in grid.items():
    nstd = ends(res, 'normalized_std')
    ev.append(f'{name}: {ms(nstd)}')
    if not name.startswith('infonce'):
      flags.append(
        all(
          ends(res, 'normalized_std', mask_prob=s['mask_prob'], sparsity=s['sparsity']).mean() > std_floor
          for s in settings_of(res)
        )
      )
  rows.append(
    {
      'claim': 'C5: the failure is not collapse (std of f/‖f‖, comparable across arms)',
      'evidence': f'1/sqrt(m) = {1 / np.sqrt(m):.3f}; ' + '; '.join(ev) if ev else 'n/a',
      'verdict': verdict(flags),
      'rule': 'every non-contrastive setting: std of f/‖f‖ > 0.25/sqrt(m)',
    }
  )

  ev, flags = [], []
  m10 = st.get('m10', {})
  if 'negcos_alt_none' in m10:
    nc, ic = ends(m10['negcos_alt_none']), ends(m10['infonce']) if 'infonce' in m10 else np.array([np.nan])
    ev.append(f'm = 10: negcos_alt_none min {ms(nc)}, infonce {ms(ic)}')
    flags.append(nc.mean() < BAD and (np.isnan(ic.mean()) or ic.mean() > nc.mean()))
  full = st.get('fullrank', {}).get('fullrank')
  if full:
    far = min(r['c'] for r in full['runs'])
    has_share = 'top_share' in full['runs'][0]['end']
    for key in settings_of(full, ('loss', 'norm', 'c')):
      e, s0 = ends(full, **key), starts(full, **key)
      share = f', σ₁² share {ms(ends(full, "top_share", **key))}' if has_share else ''
      ev.append(f'full rank {key["loss"]}/{key["norm"]} c={key["c"]}: {ms(s0)} → {ms(e)}{share}')
      if key['c'] == far:  # Drifts from the far start, without W collapsing to rank one.
        collapsed = has_share and ends(full, 'top_share', **key).mean() > 0.5
        flags.append(e.mean() < s0.mean() - DRIFT and not collapsed)
  rows.append(
    {
      'claim': 'C6: not an artefact of over-parameterisation (m = 10; full rank p = d = m = 20)',
      'evidence': '; '.join(ev) or 'n/a',
      'verdict': verdict(flags),
      'rule': f'm = 10: non-contrastive min < {BAD} and below InfoNCE; full rank, per loss and norm at the '
      f'smallest c: end < start − {DRIFT} with σ₁²/Σσ² of W ≤ 0.5 (not collapsed to rank one)',
    }
  )
  return rows


def gsg_effect(results: dict) -> list[dict]:
  """Paired (same mask, sparsity, seed) end differences GSG − base arm, per base arm."""
  grid, out = results['studies'].get('grid', {}), []
  for name, res in grid.items():
    if not name.startswith('gsg_'):
      continue
    base = grid.get('negcos_' + name[len('gsg_') :])
    if not base:
      continue
    pairs = {(r['mask_prob'], r['sparsity'], r['seed']): r['end'] for r in base['runs']}
    diffs = {k: [] for k in ('min', 'median', 'max')}
    for r in res['runs']:
      b = pairs.get((r['mask_prob'], r['sparsity'], r['seed']))
      if b:
        for k in diffs:
          diffs[k].append(r['end'][k] - b[k])
    fractions = {
      k: ms([r['end'][k] for r in res['runs']])
      for k in ('pair_11', 'pair_12', 'pair_21', 'pair_22')
      if k in res['runs'][0]['end']
    }
    d = np.array(diffs['min'])
    se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else np.inf
    answer = (
      'toward recovery'
      if d.mean() > 2 * se and d.mean() > 0.02
      else 'away from recovery'
      if d.mean() < -2 * se and d.mean() < -0.02
      else 'no clear change'
    )
    out.append(
      {
        'arm': name,
        'base': base['objective'],
        'pairs': int(d.size),
        'delta': {k: ms(v) for k, v in diffs.items()},
        'gsg_min': ms(ends(res)),
        'base_min': ms(ends(base)),
        'pair_fractions': fractions,
        'answer': answer,
      }
    )
  return out


def infonce_probes(results: dict) -> list[dict]:
  st, out = results['studies'], []
  base = st.get('grid', {}).get('infonce')
  if base:
    out.append(
      {
        'study': 'grid (baseline)',
        'settings': 'τ 0.05, lr 0.005, BN, noise σ₀, complementary masks',
        **{k: ms(ends(base, k, sparsity=0.1)) for k in ('min', 'median', 'max')},
      }
    )
  for study, objectives in st.items():
    if study.startswith('infonce_'):
      for name, res in objectives.items():
        overrides = {k: v for k, v in res['meta']['study'].get('overrides', {}).items() if k != 'num_seeds'}
        change = ', '.join(f'{k} = {v}' for k, v in overrides.items()) or 'independent masks (mask 0.5)'
        out.append(
          {
            'study': study,
            'settings': f'{change} ({name}, {len(res["runs"])} seeds)',
            **{k: ms(ends(res, k)) for k in ('min', 'median', 'max')},
          }
        )
  return out


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


def long_candidates(results: dict, mask_prob=0.5, sparsity=0.1) -> list[str]:
  """Grid arms whose seed-mean curve still moves by more than SETTLED over the last quarter of training."""
  grid = results['studies'].get('grid', {})
  return [
    name
    for name, res in grid.items()
    if any(matches(r, sparsity=sparsity) for r in res['runs'])
    and settled(
      res,
      sparsity=sparsity,
      **(
        {}
        if res['objective'].startswith('infonce') and res['runs'][0]['mask_prob'] is None
        else {'mask_prob': mask_prob}
      ),
    )
    > SETTLED
  ]


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
