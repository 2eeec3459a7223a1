"""Speed of the landscape experiments: steps/s of the compiled, vmapped program, and the full grid extrapolated.

    python benchmarks/landscape.py [--preset=] [--objectives=infonce,negcos_alt_none] [--study=grid] \
        [--epochs=5] [--seeds=5] [--vmap-width=1] [--set KEY=VALUE] [--out=benchmarks/results/landscape_cpu.json]
    python benchmarks/landscape.py --ab=fast_infonce --objectives=infonce [--out=...]   # A/B of one switch

Every run first measures the machine's dense float32 matmul rate (a jitted 1024×1024 @ 1024×1024 chain, best
of 3) and prints each objective's achieved GFLOP/s beside it: the load on a shared machine changes both.

For every objective, all runs of the study (mask probabilities × sparsities ×
warm-start levels × ``--seeds`` seeds; InfoNCE has no mask axis) are stacked
and trained for ``--epochs`` epochs by one call of the same jitted chunk that
``python -m gsg_jax.experiments.landscape`` runs (``lax.scan`` over epochs and
batches of ``Trainer.train_step``, vmapped over runs, or over groups of
``--vmap-width`` runs in a ``lax.map``), once to compile and once timed.

Recorded per objective: compile time, seconds per epoch, steps/s of the
program and run-steps/s (steps/s × runs), XLA's FLOP count of one run's train
step (``cost_analysis``) and the FLOP/s it implies, and the extrapolated time
of ``num_epochs`` epochs; the total is the sum over objectives, each objective
being one compiled program run after the other. With ``--seeds`` below the
config's, the measured run-steps/s is applied to the full number of runs.
The machine's load average is recorded: on a shared machine the rates scale
with the share of the cores this process gets.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402

REPO = records.REPO


def load_config(preset):
  spec = importlib.util.spec_from_file_location('landscape_config', os.path.join(REPO, 'configs', 'landscape.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset or None)


def measure(cfg, study_name: str, entry, epochs: int, seeds: int) -> dict:
  """Times ``entry`` (an ``Objective`` or its name) in ``study_name``."""
  import jax

  from gsg_jax.experiments.landscape import settings as settings_lib
  from gsg_jax.experiments.landscape.objectives import objective
  from gsg_jax.experiments.landscape.program import build_program

  study = settings_lib.study_config(cfg, study_name)
  obj = objective(entry)
  full_runs = len(settings_lib.run_settings(obj, study, cfg.num_seeds, cfg.seed))
  runs = settings_lib.run_settings(obj, study, seeds, cfg.seed)
  cfg = cfg.copy_and_resolve_references()
  cfg.log_every_epochs = epochs
  t0 = time.perf_counter()
  program, data, rngs, state = build_program(cfg, study, obj, runs)
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, m = program.chunk(state, data, rngs, 0, 1)
  jax.block_until_ready(m)
  first_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, m = program.chunk(state, data, rngs, epochs, 1)
  jax.block_until_ready(m)
  timed_s = time.perf_counter() - t0
  one = jax.tree_util.tree_map(lambda a: a[0], state)
  batch = {'x': data['x'][0, : cfg.batch_size], 'keep_prob': data['keep'][0]}
  trainers = program.per_tower or (program.trainer,)  # Alternating arms: the mean of the A- and B-steps.
  flops = sum(step_flops(t, one, batch, rngs[0]) for t in trainers) / len(trainers)
  steps = epochs * program.steps_per_epoch
  steps_per_s = steps / timed_s
  run_steps_per_s = steps_per_s * len(runs)
  total_run_steps = full_runs * cfg.num_epochs * program.steps_per_epoch
  return {
    'objective': obj.name,
    'study': study_name,
    'runs_measured': len(runs),
    'runs_full': full_runs,
    'steps_per_epoch': program.steps_per_epoch,
    'epochs_timed': epochs,
    'setup_s': setup_s,
    'compile_and_first_chunk_s': first_s,
    'compile_s_estimate': max(first_s - timed_s, 0.0),
    'seconds_per_epoch': timed_s / epochs,
    'steps_per_s': steps_per_s,
    'run_steps_per_s': run_steps_per_s,
    'flops_per_run_step': flops,
    'achieved_gflops_per_s': flops * run_steps_per_s / 1e9,
    'extrapolated_full_s': total_run_steps / run_steps_per_s + max(first_s - timed_s, 0.0),
    'final_min_max_cos_mean': float(m['min'].mean()),
  }


def ab(cfg, study_name: str, entry, key: str, epochs: int, repeats: int = 3) -> dict:
  """Run-steps/s of ``entry`` (an ``Objective`` or its name) with config ``key`` True and False, interleaved in one
  process (best of ``repeats``).

  Interleaving puts both variants under the same load, which on a shared machine drifts by up to 3x.
  """
  import jax

  from gsg_jax.experiments.landscape import settings as settings_lib
  from gsg_jax.experiments.landscape.objectives import objective
  from gsg_jax.experiments.landscape.program import build_program

  variants = {}
  for value in (True, False):
    c = cfg.copy_and_resolve_references()
    c[key] = value
    c.log_every_epochs = epochs
    study = settings_lib.study_config(c, study_name)
    obj = objective(entry)
    runs = settings_lib.run_settings(obj, study, 1, c.seed)[:2]
    program, data, rngs, state = build_program(c, study, obj, runs)
    state, m = program.chunk(state, data, rngs, 0, 1)  # Compile.
    jax.block_until_ready(m)
    variants[value] = [program, data, rngs, state, float('inf')]
  for r in range(repeats):
    for v in variants.values():
      t0 = time.perf_counter()
      v[3], m = v[0].chunk(v[3], v[1], v[2], (r + 1) * epochs, 1)
      jax.block_until_ready(m)
      v[4] = min(v[4], time.perf_counter() - t0)
  steps = {value: 2 * epochs * v[0].steps_per_epoch / v[4] for value, v in variants.items()}
  return {
    'objective': obj.name,
    'key': key,
    'run_steps_per_s_true': steps[True],
    'run_steps_per_s_false': steps[False],
    'speedup': steps[True] / steps[False],
  }


def step_flops(trainer, state, batch, rng) -> float:
  """XLA's FLOP count of one compiled train step of ``trainer``."""
  import jax

  cost = jax.jit(trainer.train_step).lower(state, batch, rng).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0))


def dense_matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
  """GFLOP/s of a jitted float32 [size, size] @ [size, size] matmul on this machine, now (best of 3)."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  f = jax.jit(lambda a: jax.lax.fori_loop(0, repeats, lambda i, x: (x @ a) * (1.0 / size), a))
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(3):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * size**3 * repeats / best / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--preset', default='', help="configs/landscape.py preset ('' = the paper's grid, 'quick').")
  parser.add_argument('--objectives', default='', help="comma-separated names; default: the config's objectives.")
  parser.add_argument('--study', default='grid')
  parser.add_argument('--epochs', type=int, default=5, help='timed epochs per objective (after one compile call).')
  parser.add_argument('--vmap-width', type=int, default=-1, help="runs per vmapped group (-1: the config's).")
  parser.add_argument('--seeds', type=int, default=0, help="seeds to stack (0: the config's num_seeds).")
  parser.add_argument(
    '--ab',
    default='',
    metavar='KEY',
    help='instead: run-steps/s with boolean config KEY True vs False, interleaved (e.g. fast_infonce).',
  )
  parser.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='KEY=VALUE',
    help='config override, e.g. --set skip_idle_tower=False (the value is a Python literal).',
  )
  parser.add_argument('--out', default=os.path.join(REPO, 'benchmarks', 'results', 'landscape_cpu.json'))
  args = parser.parse_args()

  import jax

  cfg = load_config(args.preset)
  if args.vmap_width >= 0:
    cfg.vmap_width = args.vmap_width
  import ast

  for item in args.set:
    key, value = item.split('=', 1)
    cfg[key] = ast.literal_eval(value)
  dense = dense_matmul_gflops()
  print(f'dense float32 1024x1024 matmul on this machine now: {dense:.1f} GFLOP/s', flush=True)
  from gsg_jax.experiments.landscape.objectives import objective

  names = [objective(o).name for o in [n for n in args.objectives.split(',') if n] or cfg.objectives]
  seeds = args.seeds or cfg.num_seeds
  start = time.perf_counter()
  if args.ab:
    rows = []
    for name in names:
      rows.append(ab(cfg, args.study, name, args.ab, args.epochs))
      r = rows[-1]
      print(
        f'{name:28s} {args.ab}=True {r["run_steps_per_s_true"]:7.0f} run-steps/s, =False '
        f'{r["run_steps_per_s_false"]:7.0f}: x{r["speedup"]:.2f}',
        flush=True,
      )
    out = {
      'date': datetime.date.today().isoformat(),
      'command': ' '.join(['benchmarks/landscape.py'] + sys.argv[1:]),
      'cpu': records.cpu_model() or platform.processor(),
      'cpu_count': os.cpu_count(),
      'load_average_1min_at_start': os.getloadavg()[0],
      'dense_matmul_gflops_per_s': dense,
      'results': rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(out, f, indent=1)
    return
  results = []
  for name in names:
    r = measure(cfg, args.study, name, args.epochs, seeds)
    results.append(r)
    print(
      f'{name:28s} runs {r["runs_measured"]:3d}/{r["runs_full"]:3d}  compile ~{r["compile_s_estimate"]:5.1f}s  '
      f'{r["steps_per_s"]:7.1f} steps/s  {r["run_steps_per_s"]:9.0f} run-steps/s  '
      f'{r["flops_per_run_step"] / 1e6:6.1f} MFLOP/run-step = {r["achieved_gflops_per_s"]:5.1f} GFLOP/s '
      f'({100 * r["achieved_gflops_per_s"] / dense:4.1f}% of dense {dense:.0f})  '
      f'full ({cfg.num_epochs} epochs): {r["extrapolated_full_s"] / 60:6.1f} min',
      flush=True,
    )
  total = sum(r['extrapolated_full_s'] for r in results)
  out = {
    'date': datetime.date.today().isoformat(),
    'command': ' '.join(['benchmarks/landscape.py'] + sys.argv[1:]),
    'machine': {
      'platform': platform.platform(),
      'cpu': records.cpu_model() or platform.processor(),
      'cpu_count': os.cpu_count(),
      'load_average_1min_at_start': os.getloadavg()[0],
      'jax': jax.__version__,
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
    },
    'config': {
      'preset': args.preset or 'paper',
      'num_epochs': cfg.num_epochs,
      'n': cfg.n,
      'batch_size': cfg.batch_size,
      'num_seeds': cfg.num_seeds,
      'study': args.study,
      'vmap_width': cfg.vmap_width,
    },
    'dense_matmul_gflops_per_s': dense,
    'overrides': args.set,
    'wall_s': time.perf_counter() - start,
    'extrapolated_total_s': total,
    'results': results,
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=1)
  print(
    f'extrapolated {args.study} study, {len(names)} objectives: {total / 60:.1f} min '
    f'(benchmark wall {out["wall_s"]:.0f}s) -> {args.out}'
  )


if __name__ == '__main__':
  main()
