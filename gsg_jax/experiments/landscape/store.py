"""Checkpoints of the landscape runs: the stacked state, the metric history, and the config that wrote them."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax import storage
from gsg_jax.errors import ConfigError
from gsg_jax.experiments import jsonable


def save(path: str, state, history: dict, epochs_done: int, meta: dict) -> None:
  leaves = jax.tree_util.tree_leaves(state)
  arrays = {f'leaf_{i}': np.asarray(x) for i, x in enumerate(leaves)}
  arrays.update({f'history_{k}': np.asarray(v) for k, v in history.items()})
  storage.save_npz(path, epochs_done=np.int64(epochs_done), meta=np.asarray(json.dumps(meta)), **arrays)


def load(path: str, template):
  f = storage.load_npz(path)
  leaves, treedef = jax.tree_util.tree_flatten(template)
  state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(f[f'leaf_{i}']) for i in range(len(leaves))])
  history = {k[len('history_') :]: v for k, v in f.items() if k.startswith('history_')}
  return state, history, int(f['epochs_done']), json.loads(str(f['meta']))


def duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m' if seconds >= 3600 else f'{seconds // 60}m{seconds % 60:02d}s'


def run_config(cfg) -> dict:
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
    'gsg_guide',
  )
  return jsonable({**{k: cfg[k] for k in keys}, 'directpred': cfg.directpred.to_dict()}, 6)


def check_meta(saved: dict, meta: dict, path: str) -> None:
  if jsonable(saved, 6) != jsonable(meta, 6):
    diff = sorted(k for k in meta if jsonable(saved.get(k), 6) != jsonable(meta[k], 6))
    raise ConfigError(
      f'{path} was written by a different configuration (differs in {diff}): use a fresh --workdir or delete that file.'
    )


def job_files(out_dir: str, meta: dict) -> tuple[str, str, dict | None]:
  """(result path, checkpoint path, the finished result or None) of a job's folder, created if absent; a finished
  result written under another configuration is refused (``check_meta``) rather than reused."""
  storage.makedirs(out_dir)
  result_path, ckpt_path = storage.join(out_dir, 'result.json'), storage.join(out_dir, 'checkpoint.npz')
  if not storage.exists(result_path):
    return result_path, ckpt_path, None
  result = storage.read_json(result_path)
  check_meta(result['meta'], meta, result_path)
  return result_path, ckpt_path, result
