r"""The runs of one (study, objective): their settings, their data, and which of them are the same run.

A study block (``configs/landscape.py``) with the top-level defaults filled in
(``study_config``) gives each objective its settings (``run_settings``): mask
probability (none for complementary masks), sparsity, warm-start level c and
seed. ``make_run_data`` generates their arrays, stacked over runs.

Duplicate settings
------------------
Two settings are the same run when everything the program reads is equal:
the data x, z, M, the initial kernels, the keep probability and the run's
key (``fingerprint``: a SHA-256 of those arrays' bytes). This is decided from
the generated arrays, for any configuration (at d = 10 the sparsity levels
0.1 and 0.2 give the same latent counts, hence the same arrays). Each
distinct run is trained once; its entry in ``result.json`` lists in
``stands_for`` every setting it represents.

Randomness: the per-run key is fold_in(key(seed), data seed) (``run_key``).
"""

import hashlib
import itertools

import jax
import numpy as np

from gsg_jax.errors import ConfigError
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape.objectives import Objective, objective


def study_config(cfg, study: str):
  """The study block with the top-level defaults filled in: p, d, m, masks, sparsities, warm_start, objectives.

  ``objectives`` are ``Objective`` entries (config entries may be entries, names or field mappings:
  ``objectives.objective``). ``mask_probs_for`` (optional, objective name → mask probabilities) narrows the masks
  per objective; ``overrides`` (optional) replaces top-level config values for this study only (``study_cfg``).
  """
  block = cfg.study[study]
  out = {k: block.get(k) for k in ('p', 'd', 'm')}
  out = {k: (cfg[k] if v in (None, 0) else v) for k, v in out.items()}
  out['mask_probs'] = tuple(block.mask_probs)
  out['sparsities'] = tuple(block.sparsities)
  out['warm_start'] = tuple(block.warm_start)
  out['objectives'] = tuple(objective(o) for o in (tuple(block.objectives) or tuple(cfg.objectives)))
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
