r"""The vmapped training program of one (study, objective): init, evaluate and train ``chunk`` over stacked runs.

Batches follow the authors' loaders: a fresh permutation every epoch, batch
512, the last partial batch kept (440 of n = 3000: 6 steps per epoch) for the
non-contrastive runs, dropped for InfoNCE (``drop_last=True`` in their
``main_simclr.py``: 5 steps). BatchNorm follows their scripts
(``batch_norm='authors'``): on for InfoNCE and for the arms with a
predictor, off without (their ``simplified`` model ignores ``--use_bn``).

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
the ±4 % noise of an interleaved A/B,
``benchmarks/results/landscape_speed/skip_idle_tower.json``);
otherwise, and for GSG (whose four-view forward and guide dominate), the
generic trainer's gate zeroes the idle tower's gradient. ``run.py`` calls
``chunk`` every ``chunk_epochs`` epochs and checkpoints between calls.

Randomness: the train step folds in its step count (masks, GSG's permutation), the epoch's shuffle folds in the
epoch, so a resumed run repeats exactly.
"""

import dataclasses

import jax
import jax.numpy as jnp

from gsg_jax.experiments.landscape import metrics as metrics_lib
from gsg_jax.experiments.landscape.model import encoder_matrix
from gsg_jax.experiments.landscape.objectives import Objective
from gsg_jax.experiments.landscape.settings import make_run_data, run_key
from gsg_jax.experiments.landscape.trainer import build_trainers, init_state
from gsg_jax.training.step import Trainer

PAIR_KEYS = ('gsg/pair_11', 'gsg/pair_12', 'gsg/pair_21', 'gsg/pair_22')


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
