"""GSG minus the plain method, seed by seed: the paired difference at equal epochs, with its spread.

    python benchmarks/paired_seeds.py [--study=cifar10_cpu]

Reads the study's per-seed records of the four methods with a predictor at 8
epochs — ``methods_seed1.json`` (seeds 0 and 1, transcribed) and every
``methods_seed<N>_table.json`` written by ``benchmarks/cifar10_cpu_seeds.sh`` —
and writes ``gsg_minus_plain_seeds.json``: for SimSiam and BYOL, each seed's
kNN and fast-linear difference (the same seed is the same initialisation and
held-out slice, so the pair shares its noise), their mean, sample standard
deviation and standard error. A seed enters only where both runs of the pair
finished.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402

PAIRS = (('SimSiam', 'SimSiam+GSG'), ('BYOL', 'BYOL+GSG'))
METRICS = (('knn', 'kNN top-1'), ('linear', 'linear top-1, fast'))


def seeds_of_transcribed(record: dict) -> dict:
  """``methods_seed1.json``: columns ``knn_s<seed>`` / ``lin_s<seed>``, one row per run."""
  out = {}
  for row in record['rows']:
    for key, value in row.items():
      match = re.fullmatch(r'(knn|lin)_s(\d+)', key)
      if match and value is not None:
        metric = 'knn' if match.group(1) == 'knn' else 'linear'
        out.setdefault(row['run'], {}).setdefault(int(match.group(2)), {})[metric] = value
  return out


def seeds_of_collected(record: dict) -> dict:
  """``collect_runs.py``'s table: one row per run with its seed; unfinished runs are left out."""
  out = {}
  for row in record['rows']:
    if row.get('finished'):
      out.setdefault(row['run'], {})[row['seed']] = {'knn': row['knn_top1'], 'linear': row['fast_linear_top1']}
  return out


def _round(x):  # Accuracies are recorded to 2 decimals; 4 keep the float noise of their differences out.
  return None if x is None else round(x, 4)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--study', default='cifar10_cpu')
  args = parser.parse_args()
  folder = os.path.join(records.REPO, 'benchmarks', 'results', args.study)
  values, sources = {}, []
  inputs = [(os.path.join(folder, 'methods_seed1.json'), seeds_of_transcribed)]
  inputs += [(p, seeds_of_collected) for p in sorted(glob.glob(os.path.join(folder, 'methods_seed*_table.json')))]
  for path, read in inputs:
    with open(path) as f:
      record = json.load(f)
    sources.append(f'{os.path.basename(path)} (commit {record["commit"]})')
    for run, by_seed in read(record).items():
      for seed, metrics in by_seed.items():
        if seed in values.setdefault(run, {}):
          raise ValueError(f'{run} seed {seed} appears twice ({path})')
        values[run][seed] = metrics
  seeds = sorted({s for by_seed in values.values() for s in by_seed})
  rows = []
  for plain, gsg in PAIRS:
    for metric, label in METRICS:
      diffs = {
        s: values[gsg][s][metric] - values[plain][s][metric]
        for s in seeds
        if values.get(gsg, {}).get(s, {}).get(metric) is not None
        and values.get(plain, {}).get(s, {}).get(metric) is not None
      }
      n = len(diffs)
      sd = statistics.stdev(diffs.values()) if n > 1 else None
      rows.append(
        {
          'pair': f'{gsg} − {plain}',
          'metric': label,
          **{f'd_s{s}': diffs.get(s) for s in seeds},
          'n': n,
          'mean': statistics.fmean(diffs.values()) if n else None,
          'sd': sd,
          'se': sd / n**0.5 if sd is not None else None,
        }
      )
  record = records.table(
    args.study,
    'GSG minus the plain method at equal epochs (8), paired by seed',
    order=21,
    command='python benchmarks/paired_seeds.py',
    machine_text='2 CPU cores',
    source='computed from ' + ', '.join(sources),
    columns=[
      {'key': 'pair', 'label': 'difference'},
      {'key': 'metric', 'label': 'metric'},
      *[{'key': f'd_s{s}', 'label': f'seed {s}', 'format': '+.2f'} for s in seeds],
      {'key': 'n', 'label': 'seeds', 'format': 'd'},
      {'key': 'mean', 'label': 'mean', 'format': '+.2f'},
      {'key': 'sd', 'label': 'sd', 'format': '.2f'},
      {'key': 'se', 'label': 'standard error', 'format': '.2f'},
    ],
    rows=rows,
    notes=[
      'Points of held-out accuracy, GSG minus plain, each seed its own initialisation and augmentation stream on '
      'the same held-out slice. Seeds 0 and 1 come from an earlier commit than the later seeds: each pair is from '
      'one commit, so the differences are paired, but the seeds are not one code version.',
    ],
  )
  path = os.path.join(folder, 'gsg_minus_plain_seeds.json')
  records.write(record, path)
  print(f'wrote {path}')
  for row in rows:
    print(row)


if __name__ == '__main__':
  main()
