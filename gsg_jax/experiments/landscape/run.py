r"""One (study, objective) of the landscape experiments: train its runs, checkpoint, resume, write its result.

``train_objective`` takes the distinct runs of the objective's settings (``settings.py``), trains them with one
compiled program (``program.py``) in chunks of ``chunk_epochs`` epochs, and writes the stacked state and the metric
history to ``DIR/runs/<study>/<objective>/checkpoint.npz`` after each chunk (``store.py``); a finished objective
writes ``result.json`` there and is skipped on a rerun (a different configuration in the same directory is an
error, not a silent mix). The objectives and their step core are in ``objectives.py`` and ``trainer.py``; every
study of a config, results.json and the command line in ``experiment.py``.
"""

import time

import jax
import numpy as np

from gsg_jax import methods, storage
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.landscape import store
from gsg_jax.experiments.landscape.objectives import objective
from gsg_jax.experiments.landscape.program import build_program
from gsg_jax.experiments.landscape.settings import distinct_runs, run_settings, study_cfg, study_config

CURVE_KEYS = (
  'loss',
  'max',
  'median',
  'min',
  'match',
  'false_support',
  'sparsity_gap',
  'output_variance',
  'normalized_std',
  'pair_11',
  'pair_12',
  'pair_21',
  'pair_22',
)


def job(cfg, study_name: str, entry) -> tuple:
  """(study, the study's config, the ``Objective``, its settings, meta) of ``entry`` in ``study_name``.

  ``meta`` is what decides the objective's runs (not the list of other objectives): a finished ``result.json``
  with the same meta is reused, one with another is refused (``store.job_files``).
  """
  study = study_config(cfg, study_name)
  cfg = study_cfg(cfg, study)
  obj = objective(entry)
  settings = run_settings(obj, study, cfg.num_seeds, cfg.seed)
  meta = {
    'study': {k: v for k, v in study.items() if k != 'objectives'},
    'objective': obj.name,
    'runs': settings,
    'config': store.run_config(cfg),
  }
  return study, cfg, obj, settings, meta


def train_objective(cfg, study_name: str, entry, out_dir: str, progress=print) -> dict:
  """Train every run of objective ``entry`` (an ``Objective`` or its name) in ``study_name`` (resuming), write and
  return its result."""
  study, cfg, obj, settings, meta = job(cfg, study_name, entry)
  name = obj.name
  runs, members = distinct_runs(settings, study, cfg, obj.towers)
  result_path, ckpt_path, finished = store.job_files(out_dir, meta)
  if finished is not None:
    return finished

  start = time.time()
  program, data, rngs, state = build_program(cfg, study, obj, runs)
  steps_per_epoch = program.steps_per_epoch
  if storage.exists(ckpt_path):
    state, history, done, saved_meta = store.load(ckpt_path, state)
    store.check_meta(saved_meta, meta, ckpt_path)
    history = {k: list(np.moveaxis(v, 1, 0)) for k, v in history.items()}  # [R, T] → T × [R].
  else:
    first = program.evaluate(state, data, rngs)
    history = {'loss': [np.full(len(runs), np.nan, np.float32)], **{k: [np.asarray(v)] for k, v in first.items()}}
    done = 0
  total = cfg.num_epochs
  chunk_logs = max(cfg.chunk_epochs // cfg.log_every_epochs, 1)
  first_chunk_s, train_s, trained_epochs = None, 0.0, 0
  while done < total:
    num_logs = min(chunk_logs, (total - done) // cfg.log_every_epochs)
    t0 = time.time()
    state, chunk_metrics = program.chunk(state, data, rngs, done, num_logs)
    chunk_metrics = jax.device_get(chunk_metrics)
    elapsed = time.time() - t0
    if first_chunk_s is None:
      first_chunk_s = elapsed  # Includes the compilation: the measured rate leaves this chunk out.
    else:
      train_s += elapsed
      trained_epochs += num_logs * cfg.log_every_epochs
    for k, v in chunk_metrics.items():
      history.setdefault(k, [np.full(len(runs), np.nan, np.float32)])  # Train-time only: none at epoch 0.
      history[k].extend(np.moveaxis(np.asarray(v), 1, 0))  # [R, num_logs] → num_logs × [R].
    done += num_logs * cfg.log_every_epochs
    store.save(ckpt_path, state, {k: np.stack(v, 1) for k, v in history.items()}, done, meta)
    rate = (trained_epochs if train_s else num_logs * cfg.log_every_epochs) * steps_per_epoch / (train_s or elapsed)
    mins = np.asarray(history['min'][-1])
    speed = (
      f'{rate:.0f} steps/s = {rate * len(runs):.0f} run-steps/s'
      if train_s
      else f'first chunk {elapsed:.1f}s with compilation'
    )
    loss = np.nanmean(history['loss'][-1])
    progress(
      f'[{study_name}] {name}: epoch {done}/{total}, {len(runs)} runs ({len(settings)} settings) | min max|cos| '
      f'{mins.mean():.3f} (runs {mins.min():.3f}..{mins.max():.3f}) | loss {loss:.4f} '
      f'| {speed} | ETA {store.duration((total - done) * steps_per_epoch / rate)}'
    )
  wall = time.time() - start
  curves = {k: np.stack(v, 1) for k, v in history.items()}  # [R, T].
  epochs = np.arange(curves['min'].shape[1]) * cfg.log_every_epochs
  result = {
    'meta': meta,
    'objective': name,
    'label': methods.label(obj.loss, obj.target, obj.predictor),
    'epochs': epochs,
    'steps_per_epoch': steps_per_epoch,
    'wall_s': wall,
    'first_chunk_s': first_chunk_s,
    'steps_per_s': (trained_epochs * steps_per_epoch / train_s) if train_s else None,
    'settings': len(settings),
    'runs': [
      {
        **run,
        'stands_for': [settings[j] for j in members[i]],
        'end': {k: curves[k][i, -1] for k in curves},
        'curves': {k: curves[k][i] for k in CURVE_KEYS if k in curves},
      }
      for i, run in enumerate(runs)
    ],
  }
  result = jsonable(result, 6)
  storage.write_json(result_path, result)
  return result
