r"""The whole landscape experiment: every study of a config, results.json, the figures, the command line.

``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:reduced|:quick] --workdir=DIR``

A study block (``configs/landscape.py``) is either a set of objectives over
settings (``kind='objectives'``: ``run.train_objective`` per objective) or the
authors' full-rank study (``kind='fullrank'``: ``fullrank.py``). Each writes
``DIR/runs/<study>/<objective>/result.json`` when done and a checkpoint after
every chunk; a rerun skips finished work and resumes the rest. Progress lines
give, per objective, the epoch, the mean end recovery, the measured rate and
the objective's ETA, and after each objective the whole run's ETA (the
remaining estimated FLOP, ``job_cost``, at the rate measured so far). ``results.json`` holds every result,
the summary table (mean and std over seeds per setting) and the provenance:
command, date, commit and CPU.
"""

import datetime
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax import storage
from gsg_jax.errors import ConfigError
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.landscape import figures, fullrank, store
from gsg_jax.experiments.landscape import run as run_lib
from gsg_jax.experiments.landscape import settings as settings_lib
from gsg_jax.experiments.landscape.objectives import Objective, objective

KINDS = ('objectives', 'fullrank')


def provenance(argv=None) -> dict:
  """Command, UTC date, git commit of this checkout, CPU model and count, JAX version and backend."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(
      ['git', 'rev-parse', 'HEAD'], check=False, cwd=here, capture_output=True, text=True, timeout=10
    ).stdout.strip()
    dirty = subprocess.run(
      ['git', 'status', '--porcelain', '--untracked-files=no'],
      check=False,
      cwd=here,
      capture_output=True,
      text=True,
      timeout=10,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit, dirty = '', ''
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
  except OSError:
    pass
  return {
    'command': ' '.join(['python -m gsg_jax.experiments.landscape'] + list((argv or sys.argv)[1:])),
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'commit': commit + (' (with uncommitted changes)' if dirty else ''),
    'cpu': cpu,
    'cpu_count': os.cpu_count(),
    'jax': jax.__version__,
    'backend': jax.default_backend(),
  }


def with_entries(cfg):
  """A copy of ``cfg`` whose objective lists hold ``Objective`` entries: the names and field mappings a command line
  gives are checked, and stored by name in config.json and results.json as the config file's entries are."""
  out = cfg.copy_and_resolve_references()
  with out.unlocked():
    out.objectives = tuple(objective(o) for o in out.objectives)
    for block in out.study.values():
      if 'objectives' in block:
        block.objectives = tuple(objective(o) for o in block.objectives)
  return out


def jobs_of(cfg) -> list[tuple[str, str]]:
  """(study, objective name) pairs of ``cfg``, checked before any compute: known kinds, valid objective entries (each
  once per study) and ``mask_probs_for`` keys that name objectives."""
  jobs = []
  for s in cfg.studies:
    if s not in cfg.study:
      raise ConfigError(f'study {s!r}: not in config.study ({sorted(cfg.study)}).')
    kind = cfg.study[s].get('kind', 'objectives')
    if kind not in KINDS:
      raise ConfigError(f'study {s!r}: kind={kind!r}, expected one of {KINDS}.')
    if kind == 'fullrank':
      fullrank.settings(cfg.study[s], cfg.num_seeds, cfg.seed)
      jobs.append((s, 'fullrank'))
      continue
    study = settings_lib.study_config(cfg, s)
    for name in study['mask_probs_for']:
      Objective.from_name(name)
    names = [o.name for o in study['objectives']]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
      raise ConfigError(f'study {s!r}: objectives {twice} are listed more than once.')
    jobs += [(s, name) for name in names]
  return jobs


def job_cost(cfg, study: str, name: str) -> float:
  """Estimated FLOP of a job, for the overall ETA: run-steps × (matmul FLOP per step + a fixed overhead).

  Per step, with B the batch, V views, p inputs, m neurons: 6·B·V·p·m for the encoder (forward and the two
  backward matmuls), 6·B·V·m² more with a linear predictor, and for InfoNCE three B×B Gram blocks, 18·B²·m.
  The overhead (5 MFLOP-equivalent per step: masks, shuffles, small ops) stands for what is not a matmul.
  """
  if name == 'fullrank':
    block = cfg.study[study]
    runs = len(fullrank.settings(block, cfg.num_seeds, cfg.seed))
    per_step = 6 * cfg.batch_size * 2 * block.p**2 * 2 + 5e6
    return runs * block.num_epochs * -(-cfg.n // cfg.batch_size) * per_step
  info = settings_lib.study_config(cfg, study)
  c = settings_lib.study_cfg(cfg, info)
  obj = objective(name)
  full, rest = divmod(c.n, c.batch_size)
  steps = full + (1 if rest and not obj.drop_last else 0)
  b, p, m = c.batch_size, info['p'], info['m']
  views = 4 if obj.loss == 'gsg' else 2
  per_step = 6 * b * views * p * m + (6 * b * views * m * m if obj.predictor != 'none' else 0) + 5e6
  if obj.loss == 'infonce':
    per_step += 18 * b * b * m
  return len(settings_lib.run_settings(obj, info, c.num_seeds, c.seed)) * c.num_epochs * steps * per_step


def train_fullrank(cfg, study_name: str, out_dir: str, progress=print) -> dict:
  """The full-rank study (``fullrank.py``) for every setting of the block, resuming; its result."""
  block = cfg.study[study_name]
  settings = fullrank.settings(block, cfg.num_seeds, cfg.seed)
  meta = {
    'study': jsonable(block.to_dict(), 6),
    'objective': 'fullrank',
    'runs': settings,
    'config': {'n': cfg.n, 'batch_size': cfg.batch_size, 'lr': cfg.lr, 'seed': cfg.seed},
  }
  result_path, ckpt_path, finished = store.job_files(out_dir, meta)
  if finished is not None:
    return finished
  start = time.time()
  host = [fullrank.init_run(r, block.p, cfg.n) for r in settings]
  runs = jax.tree_util.tree_map(
    lambda *a: jnp.asarray(np.stack(a)), *[{k: v for k, v in h.items() if k != 'params'} for h in host]
  )
  params = jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)), *[h['params'] for h in host])
  rngs = jax.vmap(lambda s: settings_lib.run_key(cfg, s))(jnp.asarray([r['seed'] for r in settings]))
  chunk = fullrank.make_chunk(cfg.batch_size, cfg.lr, cfg.log_every_epochs)
  if storage.exists(ckpt_path):
    params, history, done, saved = store.load(ckpt_path, params)
    store.check_meta(saved, meta, ckpt_path)
    history = {k: list(np.moveaxis(v, 1, 0)) for k, v in history.items()}
  else:
    first = jax.vmap(fullrank.evaluate)(params, runs)
    history = {'loss': [np.full(len(settings), np.nan, np.float32)], **{k: [np.asarray(v)] for k, v in first.items()}}
    done = 0
  total, per_chunk = block.num_epochs, max(cfg.chunk_epochs // cfg.log_every_epochs, 1)
  while done < total:
    num_logs = min(per_chunk, (total - done) // cfg.log_every_epochs)
    t0 = time.time()
    params, ms = chunk(params, runs, rngs, done, num_logs)
    for k, v in jax.device_get(ms).items():
      history[k].extend(np.moveaxis(np.asarray(v), 1, 0))
    done += num_logs * cfg.log_every_epochs
    store.save(ckpt_path, params, {k: np.stack(v, 1) for k, v in history.items()}, done, meta)
    rate = num_logs * cfg.log_every_epochs / (time.time() - t0)
    mins = np.asarray(history['min'][-1])
    progress(
      f'[{study_name}] fullrank: epoch {done}/{total}, {len(settings)} runs | min max|cos| {mins.mean():.3f} '
      f'(runs {mins.min():.3f}..{mins.max():.3f}) | {rate:.1f} epochs/s | '
      f'ETA {store.duration((total - done) / rate)}'
    )
  curves = {k: np.stack(v, 1) for k, v in history.items()}
  result = {
    'meta': meta,
    'objective': 'fullrank',
    'label': 'simplified-pred, full rank',
    'epochs': np.arange(curves['min'].shape[1]) * cfg.log_every_epochs,
    'wall_s': time.time() - start,
    'settings': len(settings),
    'runs': [
      {
        **r,
        'stands_for': [r],
        'end': {k: curves[k][i, -1] for k in curves},
        'curves': {k: curves[k][i] for k in curves},
      }
      for i, r in enumerate(settings)
    ],
  }
  result = jsonable(result, 6)
  storage.write_json(result_path, result)
  return result


def run(cfg, workdir: str, progress=print, argv=None) -> dict:
  """Every study and objective of ``cfg`` (skipping finished ones), then results.json and the figures."""
  cfg = with_entries(cfg)
  jobs = jobs_of(cfg)  # Fail on a misspelt name before training anything.
  workdir = storage.ensure_writable_dir(workdir, '--workdir')  # A file or unwritable folder: before any compute.
  storage.write_json(storage.join(workdir, 'config.json'), jsonable(cfg.to_dict(), 6), indent=1)
  start = time.time()
  results = {'provenance': provenance(argv), 'config': jsonable(cfg.to_dict(), 6), 'studies': {}}
  storage.write_json(storage.join(workdir, 'provenance.json'), results['provenance'], indent=1)
  sizes = [job_cost(cfg, s, o) for s, o in jobs]
  trained_cost, trained_s = 0, 0.0
  for i, (s, o) in enumerate(jobs):
    t0 = time.time()
    out_dir = storage.join(workdir, 'runs', s, o)
    fresh = not storage.exists(storage.join(out_dir, 'result.json'))
    if cfg.study[s].get('kind', 'objectives') == 'fullrank':
      res = train_fullrank(cfg, s, out_dir, progress)
    else:
      res = run_lib.train_objective(cfg, s, o, out_dir, progress)
    if fresh:  # Which command, commit and machine trained this job (a resumed workdir mixes launches).
      res['provenance'] = results['provenance']
      storage.write_json(storage.join(out_dir, 'result.json'), jsonable(res, 6))
    results['studies'].setdefault(s, {})[o] = res
    if fresh:
      trained_cost += sizes[i]
      trained_s += time.time() - t0
    left = sum(sizes[i + 1 :])
    eta = store.duration(left * trained_s / trained_cost) if trained_cost else '?'
    progress(
      f'[{i + 1}/{len(jobs)}] {s}/{o} done ({time.time() - t0:.1f}s): {summary_line(res)} | '
      f'elapsed {store.duration(time.time() - start)}, overall ETA {eta}'
    )
  results['wall_s'] = time.time() - start
  results['summary'] = summary_table(results)
  storage.write_json(storage.join(workdir, 'results.json'), jsonable(results, 6))
  figures.write_all(results, cfg, workdir)
  return results


def summary_line(res: dict) -> str:
  end = {k: np.array([r['end'][k] for r in res['runs']], float) for k in ('min', 'median', 'max')}
  return ' '.join(f'{k} {np.nanmean(v):.3f}' for k, v in end.items()) + ' (end max|cos|, mean over runs)'


def label_of(run: dict) -> str:
  return fullrank.setting_label(run) if 'norm' in run else settings_lib.setting_label(run)


def summary_table(results: dict) -> dict:
  """Per study, objective and distinct setting (seeds pooled): mean and std of the end values.

  A distinct run that stands for several settings (duplicates) is labelled by all of them, joined by ' = '.
  """
  out = {}
  for s, objectives in results['studies'].items():
    for o, res in objectives.items():
      groups = {}
      for r in res['runs']:
        label = ' = '.join(dict.fromkeys(label_of(x) for x in r.get('stands_for', [r])))
        groups.setdefault(label, []).append(r['end'])
      keys = [
        k
        for k in ('min', 'median', 'max', 'match', 'false_support', 'normalized_std', 'output_variance')
        if k in res['runs'][0]['end']
      ]
      out.setdefault(s, {})[o] = {
        label: {
          k: {
            'mean': float(np.nanmean([e[k] for e in ends])),
            'std': float(np.nanstd([e[k] for e in ends])),
            'n': len(ends),
          }
          for k in keys
        }
        for label, ends in groups.items()
      }
  return out


def main():
  from absl import app, flags, logging
  from ml_collections import config_flags

  from gsg_jax import cli

  config = config_flags.DEFINE_config_file('config', None, 'configs/landscape.py[:reduced|:quick]', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Output directory (resumable).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    start = time.time()
    results = run(cli.config_value(config), flags.FLAGS.workdir, progress=lambda s: print(s, flush=True), argv=sys.argv)
    print(f'all done in {time.time() - start:.1f}s -> {flags.FLAGS.workdir}/results.json', flush=True)
    for s, table in results['summary'].items():
      print(f'\n[{s}] end of training: min / median / max over latents of max_j|cos(w_j, M_i)|, mean over seeds')
      for o, settings in table.items():
        for label, v in settings.items():
          print(f'  {o:24s} {label:60s} {v["min"]["mean"]:.3f} / {v["median"]["mean"]:.3f} / {v["max"]["mean"]:.3f}')
    sys.stdout.flush()

  cli.run(_main)
