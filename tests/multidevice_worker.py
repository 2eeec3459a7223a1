"""Runs a few sharded train steps and saves loss and parameters; the device count comes from XLA_FLAGS.

Used by test_parallel.py, which starts it once with 1 and once with 8 simulated CPU devices.
"""

import sys

import jax
import numpy as np
from conftest import tiny_config

from gsg_jax import parallel
from gsg_jax.training import build_trainer


def main(out_path, name):
  config = tiny_config(name, batch_size=32)
  mesh = parallel.create_mesh()
  batch = parallel.batch_sharding(mesh)
  trainer = build_trainer(config, steps_per_epoch=10, num_classes=None)
  init, step = parallel.jit_trainer(trainer, mesh)
  state = init(jax.random.key(0), (32, 32, 3))
  images = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
  losses = []
  for _ in range(3):
    state, metrics = step(state, {'image': jax.device_put(images, batch)}, jax.random.key(1))
    losses.append(float(metrics['loss']))
  flat = {
    jax.tree_util.keystr(k): np.asarray(v)
    for k, v in jax.tree_util.tree_leaves_with_path(
      {'params': state.params, 'stats': state.model_state, 'extras': state.extras}
    )
  }
  np.savez(out_path, losses=np.array(losses), devices=jax.device_count(), **flat)


if __name__ == '__main__':
  main(*sys.argv[1:])
