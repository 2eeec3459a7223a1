r"""The landscape experiments: objectives, the vmapped training program, results and figures.

``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:quick] --workdir=DIR``

Objectives
----------
An objective is a name ``infonce`` or ``<loss>_<scheme>_<predictor>`` with
loss ∈ {negcos, gsg} (``gsg_jax.methods.LOSSES``), predictor ∈ {none, linear,
directpred} (``PREDICTORS``) and scheme

* ``alt``: two encoders, the authors' online and target networks, trained by
  alternating steps (``model.py``: tower A on view 1, B on view 2; the
  ``online`` target; A updated on even steps, B on odd steps);
* ``simsiam``: one encoder, the ``online`` target (SimSiam's stop-gradient);
* ``ema``: one encoder, the ``ema`` target (BYOL, momentum ``ema_momentum``).

``infonce`` is SimCLR's NT-Xent at τ = 0.05 with the ``online`` target and no
predictor, on complementary masks. Every loss, target and predictor comes
from the library's registries through ``gsg_jax.methods.build_method`` and is
run by the train-step core ``gsg_jax.training.step.Trainer``.

Learning rates
--------------
The paper's runs use plain SGD at lr = 0.005 on their own losses: NT-Xent
(the registry's ``infonce``: ½[ℓ(z₁,z₂) + ℓ(z₂,z₁)] = ℓ(z₁,z₂), the same
mean over the 2B rows) and, for the non-contrastive arms,

    2 − 2 cos(p, sg z) = 2 (1 + D(p, sg z)),    D = −cos  (the registry's negcos per direction),

exactly (no other constant), so its gradient is twice D's. With
``match_lr`` (default) every arm takes the step the authors' code takes:

* ``infonce``: lr;
* ``simsiam``/``ema``: 2·lr (both halves of ½[D(p₁, sg z₂) + D(p₂, sg z₁)]
  reach the one encoder: in expectation over the i.i.d. views the gradient of
  one direction);
* ``alt``: 4·lr for the encoders (only one half reaches each tower, and a
  tower steps every other batch like the authors' ``online_optimizer`` /
  ``target_optimizer``), 2·lr for the shared predictor (trained at every
  step on both halves: the authors train Wₚ in both their steps).

GSG's loss ½[D(p_{1a*}, sg z_{1ā*}) + D(p_{2b*}, sg z_{2b̄*})] has the same
scale as negcos and takes the same rates as its base arm. The rates go
through ``gsg_jax.training.optim.build_optimizer`` (plain SGD, momentum 0,
weight decay 0, constant schedule; the predictor's rate as a rule;
DirectPred's frozen predictor rule from the component).

Batches follow the authors' loaders: a fresh permutation every epoch, batch
512, the last partial batch kept (440 of n = 3000: 6 steps per epoch) for the
non-contrastive runs, dropped for InfoNCE (``drop_last=True`` in their
``main_simclr.py``: 5 steps). BatchNorm follows their scripts
(``batch_norm='authors'``): on for InfoNCE and for the arms with a
predictor, off without (their ``simplified`` model ignores ``--use_bn``).

The program
-----------
For one (study, objective), all runs (mask probabilities × sparsities ×
warm-start levels × seeds; InfoNCE has no mask axis) are stacked on a leading
axis and trained by one jitted function, the state donated: ``chunk`` is a
``lax.scan`` over log intervals of a ``lax.scan`` over epochs of a
``lax.scan`` over batches of ``Trainer.train_step``, and ``jax.vmap`` runs it
over the stacked runs (``vmap_width`` = 0, the default), or over groups of
``vmap_width`` runs one after the other inside the same program
(``lax.map``; ``vmap_width=1``: no vmap, a scan over runs). On a 2-core CPU
the narrow program is the faster one (cache-sized arrays; see
benchmarks/landscape.py); on an accelerator the wide vmap is. Between chunks
(``chunk_epochs``) the stacked state is written to
``DIR/runs/<study>/<objective>/checkpoint.npz``; a finished objective writes
``result.json`` there and is skipped on a rerun (a different configuration
in the same directory is an error, not a silent mix).

Randomness: the per-run key is fold_in(key(seed), data seed); the train step
folds in its step count (masks, GSG's permutation), the epoch's shuffle folds
in the epoch, so a resumed run repeats exactly.
"""

import dataclasses
import itertools
import json
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gsg_jax import methods, storage
from gsg_jax.errors import ConfigError
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape import figures
from gsg_jax.experiments.landscape import metrics as metrics_lib
from gsg_jax.experiments.landscape.model import SymReLUNetwork, encoder_matrix
from gsg_jax.training.optim import build_optimizer
from gsg_jax.training.step import Trainer, TrainState

SCHEMES = {'alt': 'online', 'simsiam': 'online', 'ema': 'ema'}
NONCONTRASTIVE_LOSSES = ('negcos', 'gsg')
SET_PREDICTORS = ('directpred', 'directcopy')
STUDIES = ('grid', 'warm_start', 'm10', 'pdm20')
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
)


# ----------------------------------------------------------------------------- objectives


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: str
  target: str  # TARGETS key.
  predictor: str  # PREDICTORS key.
  towers: int
  views: str  # data.VIEW_KINDS
  drop_last: bool
  encoder_lr_scale: float
  predictor_lr_scale: float

  @property
  def contrastive(self) -> bool:
    return self.views == 'complementary'


def objective(name: str) -> Objective:
  """The objective called ``name`` (module docstring)."""
  if name == 'infonce':
    return Objective(name, 'infonce', 'online', 'none', 1, 'complementary', True, 1.0, 1.0)
  parts = name.split('_')
  if (
    len(parts) != 3
    or parts[0] not in NONCONTRASTIVE_LOSSES
    or parts[1] not in SCHEMES
    or parts[2] not in methods.PREDICTORS
  ):
    raise ConfigError(
      f'objective {name!r}: expected infonce or <loss>_<scheme>_<predictor> with loss in '
      f'{NONCONTRASTIVE_LOSSES}, scheme in {tuple(SCHEMES)}, predictor in {tuple(methods.PREDICTORS)}.'
    )
  loss, scheme, predictor = parts
  alt = scheme == 'alt'
  return Objective(
    name, loss, SCHEMES[scheme], predictor, 2 if alt else 1, 'independent', False, 4.0 if alt else 2.0, 2.0
  )


def uses_batch_norm(obj: Objective, setting: str) -> bool:
  if setting == 'authors':
    return obj.contrastive or obj.predictor != 'none'
  if setting not in ('on', 'off'):
    raise ConfigError(f"batch_norm={setting!r}: expected 'authors', 'on' or 'off'.")
  return setting == 'on'


def alternate_towers() -> optax.GradientTransformation:
  """Zero everything of ``tower_1`` on even steps and of ``tower_0`` on odd ones (other leaves pass)."""

  def init(params):
    return {'count': jnp.zeros((), jnp.int32)}

  def update(updates, state, params=None):
    active = state['count'] % 2

    def gate(path, u):
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      for t in (0, 1):
        if f'tower_{t}' in name:
          return jnp.where(active == t, u, jnp.zeros_like(u))
      return u

    return jax.tree_util.tree_map_with_path(gate, updates), {'count': state['count'] + 1}

  return optax.GradientTransformation(init, update)


def method_config(obj: Objective, cfg):
  c = methods.default_method_config(obj.loss, obj.target, obj.predictor)
  c.infonce.temperature = cfg.temperature
  c.ema.momentum = cfg.ema_momentum
  for kind in SET_PREDICTORS:
    c[kind].update(cfg.directpred)
  return c


def learning_rates(obj: Objective, cfg) -> tuple[float, float]:
  """(encoder lr, predictor lr) that the optimiser applies to the registry's loss (module docstring)."""
  if not cfg.match_lr:
    return cfg.lr, cfg.lr
  return cfg.lr * obj.encoder_lr_scale, cfg.lr * obj.predictor_lr_scale


def build_trainer(obj: Objective, cfg, m: int, steps_per_epoch: int) -> Trainer:
  """The step core for ``obj``: registry method, SymReLU network, mask views, plain SGD."""
  method = methods.build_method(method_config(obj, cfg), cfg.num_epochs * steps_per_epoch)
  model_cfg = ml_collections.ConfigDict({'projection_dim': m})
  network = SymReLUNetwork(
    m, obj.towers, uses_batch_norm(obj, cfg.batch_norm), method.predictor.module(model_cfg, jnp.float32)
  )
  encoder_lr, predictor_lr = learning_rates(obj, cfg)
  opt = ml_collections.ConfigDict(
    {
      'optim': {
        'optimizer': 'sgd',
        'base_lr': encoder_lr * 256 / cfg.batch_size,
        'momentum': 0.0,
        'weight_decay': 0.0,
        'warmup_epochs': 0.0,
        'schedule': 'constant',
        'rules': (('predictor/.*', {'lr': predictor_lr, 'schedule': 'constant'}),),
      },
      'batch_size': cfg.batch_size,
      'num_epochs': cfg.num_epochs,
    }
  )
  tx, schedule = build_optimizer(opt, steps_per_epoch, method.optimizer_rules)
  if obj.towers == 2:
    tx = optax.chain(alternate_towers(), tx, alternate_towers())  # Gate the gradients and the updates.
  return Trainer(network, method, data_lib.MaskViews(obj.views), tx, schedule)


def init_state(trainer: Trainer, rng, kernels) -> TrainState:
  """``trainer.init`` with the encoder kernels replaced by ``kernels`` [T, p, m] (then optimiser and extras)."""
  state = trainer.init(rng, (kernels.shape[1],))
  backbone = dict(state.params['backbone'])
  for t in range(kernels.shape[0]):
    backbone[f'tower_{t}'] = {**backbone[f'tower_{t}'], 'kernel': kernels[t]}
  params = {**state.params, 'backbone': backbone}
  extras = {
    'target': trainer.method.target.init(params, state.model_state),
    'predictor': trainer.method.predictor.init(params),
  }
  return state.replace(params=params, opt_state=trainer.tx.init(params), extras=extras)


# ----------------------------------------------------------------------------- runs


def study_config(cfg, study: str):
  """The study block with the top-level defaults filled in: p, d, m, mask_probs, sparsities, warm_start, objectives."""
  block = cfg.study[study]
  out = {k: block.get(k) for k in ('p', 'd', 'm')}
  out = {k: (cfg[k] if v in (None, 0) else v) for k, v in out.items()}
  out['mask_probs'] = tuple(block.mask_probs)
  out['sparsities'] = tuple(block.sparsities)
  out['warm_start'] = tuple(block.warm_start)
  out['objectives'] = tuple(block.objectives) or tuple(cfg.objectives)
  return out


def run_settings(obj: Objective, study: dict, num_seeds: int, seed: int) -> list[dict]:
  """Every run of ``obj`` in ``study``: mask probability (None for complementary masks), sparsity, c, seed."""
  masks = (None,) if obj.contrastive else study['mask_probs']
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
    full = self.n // self.batch_size
    # The epoch's shuffle: argsort of n random words (one sort; jax.random.permutation takes several).
    perm = jnp.argsort(jax.random.bits(jax.random.fold_in(jax.random.fold_in(rng, 1), epoch), (self.n,)))
    step_rng = jax.random.fold_in(rng, 0)

    def step(state, idx):
      state, m = self.trainer.train_step(state, {'x': data['x'][idx], 'keep_prob': data['keep']}, step_rng)
      return state, m['loss']

    state, losses = jax.lax.scan(step, state, perm[: full * self.batch_size].reshape(full, self.batch_size))
    if self.steps_per_epoch > full:  # The last, partial batch.
      state, last = step(state, perm[full * self.batch_size :])
      losses = jnp.concatenate([losses, last[None]])
    return state, jnp.mean(losses)

  def _chunk(self, state, data, rng, first_epoch, num_logs: int):
    def interval(state, k):
      epochs = first_epoch + k * self.epochs_per_log + jnp.arange(self.epochs_per_log)
      state, losses = jax.lax.scan(lambda s, e: self._epoch(s, data, rng, e), state, epochs)
      return state, {'loss': losses[-1], **self._evaluate(state, data, rng)}

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
  program = Program(
    build_trainer(obj, cfg, study['m'], steps_per_epoch),
    obj,
    cfg.n,
    cfg.batch_size,
    min(cfg.eval_size, cfg.n),
    cfg.log_every_epochs,
    cfg.vmap_width,
  )
  rngs = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(cfg.seed), s))(jnp.asarray([r['seed'] for r in runs]))
  return program, data, rngs, program.init(rngs, jnp.asarray(kernels))


# ----------------------------------------------------------------------------- checkpoints


def _save(path: str, state, history: dict, epochs_done: int, meta: dict) -> None:
  leaves = jax.tree_util.tree_leaves(state)
  arrays = {f'leaf_{i}': np.asarray(x) for i, x in enumerate(leaves)}
  arrays.update({f'history_{k}': np.asarray(v) for k, v in history.items()})
  storage.save_npz(path, epochs_done=np.int64(epochs_done), meta=np.asarray(json.dumps(meta)), **arrays)


def _load(path: str, template):
  f = storage.load_npz(path)
  leaves, treedef = jax.tree_util.tree_flatten(template)
  state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(f[f'leaf_{i}']) for i in range(len(leaves))])
  history = {k[len('history_') :]: v for k, v in f.items() if k.startswith('history_')}
  return state, history, int(f['epochs_done']), json.loads(str(f['meta']))


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m' if seconds >= 3600 else f'{seconds // 60}m{seconds % 60:02d}s'


# ----------------------------------------------------------------------------- one objective


def train_objective(cfg, study_name: str, name: str, out_dir: str, progress=print) -> dict:
  """Train every run of objective ``name`` in ``study_name`` (resuming), write and return its result."""
  study = study_config(cfg, study_name)
  obj = objective(name)
  runs = run_settings(obj, study, cfg.num_seeds, cfg.seed)
  meta = {
    'study': {k: v for k, v in study.items() if k != 'objectives'},
    'objective': name,
    'runs': runs,
    'config': _run_config(cfg),
  }  # What decides this objective's runs (not the list of other objectives).
  storage.makedirs(out_dir)
  result_path, ckpt_path = storage.join(out_dir, 'result.json'), storage.join(out_dir, 'checkpoint.npz')
  if storage.exists(result_path):
    result = storage.read_json(result_path)
    _check_meta(result['meta'], meta, result_path)
    return result

  start = time.time()
  program, data, rngs, state = build_program(cfg, study, obj, runs)
  steps_per_epoch = program.steps_per_epoch
  if storage.exists(ckpt_path):
    state, history, done, saved_meta = _load(ckpt_path, state)
    _check_meta(saved_meta, meta, ckpt_path)
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
      history[k].extend(np.moveaxis(np.asarray(v), 1, 0))  # [R, num_logs] → num_logs × [R].
    done += num_logs * cfg.log_every_epochs
    _save(ckpt_path, state, {k: np.stack(v, 1) for k, v in history.items()}, done, meta)
    rate = (trained_epochs if train_s else num_logs * cfg.log_every_epochs) * steps_per_epoch / (train_s or elapsed)
    mins = np.asarray(history['min'][-1])
    speed = (
      f'{rate:.0f} steps/s = {rate * len(runs):.0f} run-steps/s'
      if train_s
      else f'first chunk {elapsed:.1f}s with compilation'
    )
    loss = np.nanmean(history['loss'][-1])
    progress(
      f'[{study_name}] {name}: epoch {done}/{total}, {len(runs)} runs | min max|cos| '
      f'{mins.mean():.3f} (runs {mins.min():.3f}..{mins.max():.3f}) | loss {loss:.4f} '
      f'| {speed} | ETA {_duration((total - done) * steps_per_epoch / rate)}'
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
    'runs': [
      {
        **run,
        'end': {k: curves[k][i, -1] for k in curves},
        'curves': {k: curves[k][i] for k in CURVE_KEYS if k in curves},
      }
      for i, run in enumerate(runs)
    ],
  }
  result = jsonable(result, 6)
  storage.write_json(result_path, result)
  return result


def _run_config(cfg) -> dict:
  keys = (
    'seed',
    'num_seeds',
    'n',
    'latent',
    'noise_std',
    'num_epochs',
    'batch_size',
    'lr',
    'match_lr',
    'batch_norm',
    'temperature',
    'ema_momentum',
    'log_every_epochs',
    'eval_size',
  )
  return jsonable({**{k: cfg[k] for k in keys}, 'directpred': cfg.directpred.to_dict()}, 6)


def _check_meta(saved: dict, meta: dict, path: str) -> None:
  if jsonable(saved, 6) != jsonable(meta, 6):
    diff = sorted(k for k in meta if jsonable(saved.get(k), 6) != jsonable(meta[k], 6))
    raise ConfigError(
      f'{path} was written by a different configuration (differs in {diff}): use a fresh --workdir or delete that file.'
    )


# ----------------------------------------------------------------------------- the whole experiment


def run(cfg, workdir: str, progress=print) -> dict:
  """Every study and objective of ``cfg`` (skipping finished ones), then results.json and the figures."""
  workdir = storage.resolve(workdir)
  storage.makedirs(workdir)
  storage.write_json(storage.join(workdir, 'config.json'), jsonable(cfg.to_dict(), 6), indent=1)
  jobs = [(s, o) for s in cfg.studies for o in study_config(cfg, s)['objectives']]
  for s, o in jobs:
    objective(o)  # Fail on a misspelt name before training anything.
    if s not in STUDIES:
      raise ConfigError(f'study {s!r}: expected one of {STUDIES}.')
  start = time.time()
  results = {'config': jsonable(cfg.to_dict(), 6), 'studies': {}}
  for i, (s, o) in enumerate(jobs):
    t0 = time.time()
    res = train_objective(cfg, s, o, storage.join(workdir, 'runs', s, o), progress)
    results['studies'].setdefault(s, {})[o] = res
    progress(f'[{i + 1}/{len(jobs)}] {s}/{o} done ({time.time() - t0:.1f}s): ' + summary_line(res))
  results['wall_s'] = time.time() - start
  results['summary'] = summary_table(results)
  storage.write_json(storage.join(workdir, 'results.json'), jsonable(results, 6))
  figures.write_all(results, cfg, workdir)
  return results


def summary_line(res: dict) -> str:
  end = {k: np.array([r['end'][k] for r in res['runs']], float) for k in ('min', 'median', 'max')}
  return ' '.join(f'{k} {np.nanmean(v):.3f}' for k, v in end.items()) + ' (max|cos| at the end, mean over runs)'


def summary_table(results: dict) -> dict:
  """Per study, objective and setting (seeds pooled): mean and std of the end values."""
  out = {}
  for s, objectives in results['studies'].items():
    for o, res in objectives.items():
      groups = {}
      for r in res['runs']:
        groups.setdefault(setting_label(r), []).append(r['end'])
      out.setdefault(s, {})[o] = {
        label: {
          k: {'mean': float(np.nanmean([e[k] for e in ends])), 'std': float(np.nanstd([e[k] for e in ends]))}
          for k in ('min', 'median', 'max', 'match', 'false_support', 'output_variance')
        }
        for label, ends in groups.items()
      }
  return out


# ----------------------------------------------------------------------------- command line


def main():
  from absl import app, flags, logging
  from ml_collections import config_flags

  from gsg_jax import cli

  config = config_flags.DEFINE_config_file('config', None, 'configs/landscape.py[:quick]', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Output directory (resumable).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    start = time.time()
    results = run(cli.config_value(config), flags.FLAGS.workdir, progress=lambda s: print(s, flush=True))
    print(f'all done in {time.time() - start:.1f}s -> {flags.FLAGS.workdir}/results.json', flush=True)
    for s, table in results['summary'].items():
      print(f'\n[{s}] end of training: min / median / max over latents of max_j|cos(w_j, M_i)|, mean over seeds')
      for o, settings in table.items():
        for label, v in settings.items():
          print(
            f'  {o:28s} {label:45s} {v["min"]["mean"]:.3f} / {v["median"]["mean"]:.3f} / '
            f'{v["max"]["mean"]:.3f}   match {v["match"]["mean"]:.2f}  var {v["output_variance"]["mean"]:.3g}'
          )
    sys.stdout.flush()

  cli.run(_main)
