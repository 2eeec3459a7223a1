r"""What a trained encoder W has learnt, from a workdir's final checkpoints: why InfoNCE stops short of recovery.

    python -m gsg_jax.experiments.landscape.diagnostics --workdir=DIR [--objective=infonce] [--out=FILE.json]

For each run's final W (rows w_j, tower A) and dictionary M (orthonormal columns M_i), with a_j = Mᵀ w_j
the latent coordinates of neuron j:

* ``recovery``: min/median over latents i of max_j |cos(w_j, M_i)| (the paper's metric);
* ``span``: mean_j ‖a_j‖² / ‖w_j‖², the share of a neuron's weight inside span(M) (1: no noise directions);
* ``purity``: mean_j max_i |a_ji| / ‖a_j‖ (1: every neuron reads one latent; 1/√2: two latents equally);
* ``pure_neurons``: the fraction of neurons with purity > 0.95;
* ``in_span_recovery``: min over i of max_j |a_ji| / ‖a_j‖, the recovery W would have if its out-of-span
  part were removed: the gap it leaves is the mixing of latents, the rest is out-of-span weight;
* ``covered``: the number of latents with at least one neuron at |cos| > 0.9.
"""

import argparse
import json
import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from gsg_jax.experiments.landscape import settings as settings_lib
from gsg_jax.experiments.landscape import store
from gsg_jax.experiments.landscape.objectives import objective
from gsg_jax.experiments.landscape.program import build_program


def describe(w: np.ndarray, m_dict: np.ndarray) -> dict:
  """The measures of the module docstring for one W [m, p] and M [p, d]."""
  w = np.asarray(w, np.float64)
  m_dict = np.asarray(m_dict, np.float64)
  norms = np.linalg.norm(w, axis=1)
  a = w @ m_dict  # [m, d] latent coordinates.
  a_norm = np.linalg.norm(a, axis=1)
  cos = np.abs(a) / norms[:, None]  # |cos(w_j, M_i)| (M has unit columns).
  in_span = np.abs(a) / np.maximum(a_norm, 1e-12)[:, None]
  best = cos.max(0)
  purity = in_span.max(1)
  return {
    'recovery_min': float(best.min()),
    'recovery_median': float(np.median(best)),
    'span': float(np.mean(a_norm**2 / norms**2)),
    'purity': float(purity.mean()),
    'pure_neurons': float(np.mean(purity > 0.95)),
    'in_span_recovery': float(in_span.max(0).min()),
    'covered': int(np.sum(best > 0.9)),
  }


def final_encoders(workdir: str, study: str, name: str):
  """(settings, [W], [M]) of every distinct run of ``name`` in ``study`` from its checkpoint."""
  with open(os.path.join(workdir, 'config.json')) as f:
    cfg = ml_collections.ConfigDict(json.load(f))
  info = settings_lib.study_config(cfg, study)
  cfg = settings_lib.study_cfg(cfg, info)
  obj = objective(name)  # The stored config and folders name the objectives.
  settings = settings_lib.run_settings(obj, info, cfg.num_seeds, cfg.seed)
  runs, _ = settings_lib.distinct_runs(settings, info, cfg, obj.towers)
  _, data, _, state = build_program(cfg, info, obj, runs)
  state, _, done, _ = store.load(os.path.join(workdir, 'runs', study, name, 'checkpoint.npz'), state)
  ws = np.asarray(jnp.swapaxes(state.params['backbone']['tower_0']['kernel'], 1, 2))
  return runs, list(ws), list(np.asarray(data['M'])), done


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--objective', default='infonce', help='prefix: every objective starting with it.')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  rows = []
  for study in sorted(os.listdir(os.path.join(args.workdir, 'runs'))):
    for name in sorted(os.listdir(os.path.join(args.workdir, 'runs', study))):
      ckpt = os.path.join(args.workdir, 'runs', study, name, 'checkpoint.npz')
      if not name.startswith(args.objective) or name == 'fullrank' or not os.path.exists(ckpt):
        continue
      runs, ws, ms, done = final_encoders(args.workdir, study, name)
      for run, w, m in zip(runs, ws, ms):
        rows.append({'study': study, 'objective': name, 'epochs': done, **run, **describe(w, m)})
        r = rows[-1]
        print(
          f'{study:14s} {name:20s} sparsity {run["sparsity"]} seed {run["seed"]} epoch {done}: '
          f'recovery min {r["recovery_min"]:.3f} | span {r["span"]:.3f} | purity {r["purity"]:.3f} '
          f'(pure {r["pure_neurons"]:.2f}) | in-span recovery {r["in_span_recovery"]:.3f} | '
          f'covered {r["covered"]}',
          flush=True,
        )
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
