r"""The landscape runs: settings, their data, duplicate detection, the vmapped training program, checkpoints.

Objectives, learning rates and the step core are in ``objectives.py``; the whole experiment, results.json
and the command line in ``experiment.py``.

Batches follow the authors' loaders: a fresh permutation every epoch, batch
512, the last partial batch kept (440 of n = 3000: 6 steps per epoch) for the
non-contrastive runs, dropped for InfoNCE (``drop_last=True`` in their
``main_simclr.py``: 5 steps). BatchNorm follows their scripts
(``batch_norm='authors'``): on for InfoNCE and for the arms with a
predictor, off without (their ``simplified`` model ignores ``--use_bn``).

Duplicate settings
------------------
Two settings are the same run when everything the program reads is equal:
the data x, z, M, the initial kernels, the keep probability and the run's
key (``fingerprint``: a SHA-256 of those arrays' bytes). This is decided from
the generated arrays, for any configuration (at d = 10 the sparsity levels
0.1 and 0.2 give the same latent counts, hence the same arrays). Each
distinct run is trained once; its entry in ``result.json`` lists in
``stands_for`` every setting it represents.

The program
-----------
For one (study, objective), all distinct runs are stacked on a leading axis
and trained by one jitted function, the state donated: ``chunk`` is a
``lax.scan`` over log intervals of a ``lax.scan`` over epochs of a
``lax.scan`` over batches of the train step, and ``jax.vmap`` runs it over
the stacked runs (``vmap_width`` = 0), or over groups of ``vmap_width`` runs
one after the other inside the same program (``lax.map``; ``vmap_width=1``:
a scan over runs, the faster program on a 2-core CPU: cache-sized arrays).
Two-encoder negcos objectives with an even number of steps per epoch step
as pairs (A-step, B-step) with the per-tower trainers (no gradient for the
idle tower: the same updates, tested; on 2 CPU cores it measured within
the ±4 % noise of an interleaved A/B, ``benchmarks/RESULTS.md``);
otherwise, and for GSG (whose four-view forward and guide dominate), the
generic trainer's gate zeroes the idle tower's gradient. Between chunks
(``chunk_epochs``) the stacked state is written to
``DIR/runs/<study>/<objective>/checkpoint.npz``; a finished objective writes
``result.json`` there and is skipped on a rerun (a different configuration
in the same directory is an error, not a silent mix).

Randomness: the per-run key is fold_in(key(seed), data seed); the train step
folds in its step count (masks, GSG's permutation), the epoch's shuffle folds
in the epoch, so a resumed run repeats exactly.
"""

import dataclasses
import hashlib
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax import methods, storage
from gsg_jax.errors import ConfigError
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape import metrics as metrics_lib
from gsg_jax.experiments.landscape import store
from gsg_jax.experiments.landscape.model import encoder_matrix
from gsg_jax.experiments.landscape.objectives import (
  Objective,
  build_trainers,
  init_state,
  objective,
)
from gsg_jax.training.step import Trainer

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
PAIR_KEYS = ('gsg/pair_11', 'gsg/pair_12', 'gsg/pair_21', 'gsg/pair_22')


# ----------------------------------------------------------------------------- runs


def study_config(cfg, study: str):
  """The study block with the top-level defaults filled in: p, d, m, masks, sparsities, warm_start, objectives.

  ``mask_probs_for`` (optional, objective → mask probabilities) narrows the masks per objective; ``overrides``
  (optional) replaces top-level config values for this study only (``study_cfg``).
  """
  block = cfg.study[study]
  out = {k: block.get(k) for k in ('p', 'd', 'm')}
  out = {k: (cfg[k] if v in (None, 0) else v) for k, v in out.items()}
  out['mask_probs'] = tuple(block.mask_probs)
  out['sparsities'] = tuple(block.sparsities)
  out['warm_start'] = tuple(block.warm_start)
  out['objectives'] = tuple(block.objectives) or tuple(cfg.objectives)
  out['mask_probs_for'] = {k: tuple(v) for k, v in block.get('mask_probs_for', {}).items()}
  out['overrides'] = dict(block.get('overrides', {}))
  return out


def study_cfg(cfg, study: dict):
  """``cfg`` with the study's ``overrides`` applied (a copy; the original is untouched)."""
  if not study.get('overrides'):
    return cfg
  out = cfg.copy_and_resolve_references()
  with out.unlocked():
    for k, v in study['overrides'].items():
      if k not in out:
        raise ConfigError(f'study override {k!r} is not a config key.')
      out[k] = v
  return out


def run_settings(obj: Objective, study: dict, num_seeds: int, seed: int) -> list[dict]:
  """Every setting of ``obj`` in ``study``: mask probability (None for complementary masks), sparsity, c, seed."""
  masks = (None,) if obj.contrastive else study.get('mask_probs_for', {}).get(obj.name, study['mask_probs'])
  cs = study['warm_start'] or (None,)
  return [
    {'mask_prob': mp, 'sparsity': q, 'c': c, 'seed': seed + 1 + i}
    for mp, q, c, i in itertools.product(masks, study['sparsities'], cs, range(num_seeds))
  ]


def setting_label(run: dict) -> str:
  mask = 'complementary' if run['mask_prob'] is None else f'mask={run["mask_prob"]}'
  c = 'random init' if run['c'] is None else f'c={run["c"]}'
  return f'{mask}, sparsity={run["sparsity"]}, {c}'


def make_run_data(runs: list[dict], study: dict, cfg, towers: int):
  """Host arrays stacked over runs: data {'x', 'z', 'M'}, keep probabilities, kernels [R, T, p, m]."""
  p, d, m = study['p'], study['d'], study['m']
  noise = None if cfg.noise_std < 0 else cfg.noise_std
  cache, xs, zs, ms, kernels = {}, [], [], [], []
  for run in runs:
    key = (run['seed'], run['sparsity'])
    if key not in cache:
      cache[key] = data_lib.make_dataset(run['seed'], p, d, cfg.n, run['sparsity'], cfg.latent, noise)
    ds = cache[key]
    xs.append(ds['x'])
    zs.append(ds['z'])
    ms.append(ds['M'])
    rng = np.random.default_rng([run['seed'], 7919])  # The same init for every mask probability of a seed.
    c = None if run['c'] is None else float(run['c'])
    kernels.append(np.stack([data_lib.init_kernel(rng, ds['M'], m, c) for _ in range(towers)]))
  keep = np.array([1.0 if r['mask_prob'] is None else 1.0 - r['mask_prob'] for r in runs], np.float32)
  return {'x': np.stack(xs), 'z': np.stack(zs), 'M': np.stack(ms)}, keep, np.stack(kernels)


def run_key(cfg, run_seed: int):
  return jax.random.fold_in(jax.random.key(cfg.seed), run_seed)


def fingerprint(*arrays) -> str:
  """SHA-256 over the shapes, dtypes and bytes of ``arrays`` (host arrays or JAX arrays)."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f'{a.shape}{a.dtype}'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def distinct_runs(runs: list[dict], study: dict, cfg, towers: int) -> tuple[list[dict], list[list[int]]]:
  """(one setting per distinct run, the indices into ``runs`` that each stands for), from the arrays.

  Runs are equal when their x, z, M, initial kernels, keep probability and key are equal (module docstring).
  """
  host, keep, kernels = make_run_data(runs, study, cfg, towers)
  groups: dict[str, list[int]] = {}
  for i, run in enumerate(runs):
    key = fingerprint(
      host['x'][i], host['z'][i], host['M'][i], kernels[i], keep[i], jax.random.key_data(run_key(cfg, run['seed']))
    )
    groups.setdefault(key, []).append(i)
  members = list(groups.values())
  return [runs[g[0]] for g in members], members


@dataclasses.dataclass
class Program:
  """The compiled pieces for one (study, objective): init, evaluate and train ``chunk`` over stacked runs."""

  trainer: Trainer
  obj: Objective
  n: int
  batch_size: int
  eval_size: int
  epochs_per_log: int
  vmap_width: int = 0  # Runs per vmapped group (0: all); ``lax.map`` runs the groups one after the other.
  per_tower: tuple | None = None  # (A-step, B-step) trainers of a two-encoder objective.

  @property
  def steps_per_epoch(self) -> int:
    full, rest = divmod(self.n, self.batch_size)
    return full + (1 if rest and not self.obj.drop_last else 0)

  def _evaluate(self, state, data, rng):
    """Metrics of one run: recovery of tower A's W, support and collapse on a fixed batch's first view."""
    w = encoder_matrix(state.params)
    x, z = data['x'][: self.eval_size], data['z'][: self.eval_size]
    rows = self.trainer.views({'x': x, 'keep_prob': data['keep']}, jax.random.fold_in(rng, 2**30), 2)
    variables = self.trainer.network_variables(state.params, state.model_state)
    out, _ = self.trainer.network.apply(
      variables, rows, train=True, num_views=2, with_predictor=False, mutable=['batch_stats']
    )
    rep = out['projection'].reshape(x.shape[0], 2, -1)[:, 0]
    return {
      **metrics_lib.recovery(w, data['M']),
      **metrics_lib.support_recovery(w, data['M'], z, rep),
      **metrics_lib.collapse(rep),
    }

  def _epoch(self, state, data, rng, epoch):
    """One epoch of steps; returns the state and the epoch's mean loss (and GSG's pair fractions)."""
    full = self.n // self.batch_size
    # The epoch's shuffle: argsort of n random words (one sort; jax.random.permutation takes several).
    perm = jnp.argsort(jax.random.bits(jax.random.fold_in(jax.random.fold_in(rng, 1), epoch), (self.n,)))
    step_rng = jax.random.fold_in(rng, 0)
    batches = perm[: full * self.batch_size].reshape(full, self.batch_size)
    last = perm[full * self.batch_size :] if self.steps_per_epoch > full else None

    def step_of(trainer):
      def step(state, idx):
        state, m = trainer.train_step(state, {'x': data['x'][idx], 'keep_prob': data['keep']}, step_rng)
        return state, {'loss': m['loss'], **{k[len('gsg/') :]: m[k] for k in PAIR_KEYS if k in m}}

      return step

    if self.per_tower is not None and self.steps_per_epoch % 2 == 0:
      # Step k of the epoch is global step epoch·S + k, even ⇔ k even: A-steps and B-steps are static.
      step_a, step_b = (step_of(t) for t in self.per_tower)

      def pair(state, idx):
        state, ma = step_a(state, idx[0])
        state, mb = step_b(state, idx[1])
        return state, jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), ma, mb)

      pairs = full // 2
      state, ms = jax.lax.scan(pair, state, batches[: 2 * pairs].reshape(pairs, 2, self.batch_size))
      ms = [jax.tree_util.tree_map(lambda a: a.reshape(-1), ms)]
      rest = [batches[k] for k in range(2 * pairs, full)] + ([last] if last is not None else [])
      for k, idx in enumerate(rest):
        state, m = (step_a, step_b)[k % 2](state, idx)
        ms.append(jax.tree_util.tree_map(lambda a: a[None], m))
    else:
      step = step_of(self.trainer)
      state, m = jax.lax.scan(step, state, batches)
      ms = [m]
      if last is not None:  # The last, partial batch.
        state, m = step(state, last)
        ms.append(jax.tree_util.tree_map(lambda a: a[None], m))
    return state, jax.tree_util.tree_map(lambda *a: jnp.mean(jnp.concatenate(a)), *ms)

  def _chunk(self, state, data, rng, first_epoch, num_logs: int):
    def interval(state, k):
      epochs = first_epoch + k * self.epochs_per_log + jnp.arange(self.epochs_per_log)
      state, ms = jax.lax.scan(lambda s, e: self._epoch(s, data, rng, e), state, epochs)
      return state, {**jax.tree_util.tree_map(lambda a: a[-1], ms), **self._evaluate(state, data, rng)}

    return jax.lax.scan(interval, state, jnp.arange(num_logs))

  def __post_init__(self):
    self.init = jax.jit(jax.vmap(lambda rng, k: init_state(self.trainer, rng, k)))
    self.evaluate = jax.jit(jax.vmap(self._evaluate))
    self.chunk = jax.jit(self._grouped_chunk, static_argnums=(4,), donate_argnums=(0,))

  def _grouped_chunk(self, states, data, rngs, first_epoch, num_logs: int):
    """``_chunk`` for every run: vmapped over groups of ``vmap_width`` runs, the groups in a ``lax.map``."""
    runs = rngs.shape[0]
    width = runs if self.vmap_width <= 0 else min(self.vmap_width, runs)
    one_run = lambda a: self._chunk(*a, first_epoch, num_logs)
    if width == 1:  # No vmap at all: a scan over the runs.
      return jax.lax.map(one_run, (states, data, rngs))
    return jax.lax.map(one_run, (states, data, rngs), batch_size=width)


def build_program(cfg, study: dict, obj: Objective, runs: list[dict]):
  """(program, stacked device data, per-run keys, initial stacked state) for ``runs`` of ``obj``."""
  host_data, keep, kernels = make_run_data(runs, study, cfg, obj.towers)
  data = {
    'x': jnp.asarray(host_data['x']),
    'z': jnp.asarray(host_data['z']),
    'M': jnp.asarray(host_data['M']),
    'keep': jnp.asarray(keep),
  }
  full, rest = divmod(cfg.n, cfg.batch_size)
  steps_per_epoch = full + (1 if rest and not obj.drop_last else 0)
  trainer, per_tower = build_trainers(obj, cfg, study['m'], steps_per_epoch, cfg.gsg_guide == 'image')
  program = Program(
    trainer,
    obj,
    cfg.n,
    cfg.batch_size,
    min(cfg.eval_size, cfg.n),
    cfg.log_every_epochs,
    cfg.vmap_width,
    per_tower if cfg.skip_idle_tower and obj.loss != 'gsg' else None,
  )
  rngs = jax.vmap(lambda s: run_key(cfg, s))(jnp.asarray([r['seed'] for r in runs]))
  return program, data, rngs, program.init(rngs, jnp.asarray(kernels))


# ----------------------------------------------------------------------------- one objective


def train_objective(cfg, study_name: str, name: str, out_dir: str, progress=print) -> dict:
  """Train every run of objective ``name`` in ``study_name`` (resuming), write and return its result."""
  study = study_config(cfg, study_name)
  cfg = study_cfg(cfg, study)
  obj = objective(name)
  settings = run_settings(obj, study, cfg.num_seeds, cfg.seed)
  runs, members = distinct_runs(settings, study, cfg, obj.towers)
  meta = {
    'study': {k: v for k, v in study.items() if k != 'objectives'},
    'objective': name,
    'runs': settings,
    'config': store.run_config(cfg),
  }  # What decides this objective's runs (not the list of other objectives).
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
