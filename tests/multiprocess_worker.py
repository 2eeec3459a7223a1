"""One process of a multi-process CPU run (or a single-process reference run): a few train steps, saved to .npz.

    multiprocess_worker.py OUT NUM_PROCESSES PROCESS_ID PORT

With NUM_PROCESSES=1 it runs alone over the local (XLA_FLAGS-simulated) devices.
Otherwise it joins a ``jax.distributed`` cluster on 127.0.0.1:PORT with CPU
collectives over gloo; every process holds the same host batch and contributes
its own slice of it to the global array.
"""

import sys

import jax
import numpy as np
from conftest import tiny_config

from gsg_jax import parallel
from gsg_jax.training import build_trainer

BATCH = 32


def main(out_path, num_processes, process_id, port):
  num_processes, process_id = int(num_processes), int(process_id)
  if num_processes > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=f'127.0.0.1:{port}',
      num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=60,
    )
  config = tiny_config('simsiam_gsg', batch_size=BATCH)
  mesh = parallel.create_mesh()
  batch = parallel.batch_sharding(mesh)
  trainer = build_trainer(config, steps_per_epoch=10, num_classes=None)
  init, step = parallel.jit_trainer(trainer, mesh)
  state = init(jax.random.key(0), (32, 32, 3))
  images = np.random.default_rng(0).integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8)  # Same on every host.
  per_process = BATCH // jax.process_count()
  local = images[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
  global_images = jax.make_array_from_process_local_data(batch, local, images.shape)
  losses = []
  for _ in range(3):
    state, metrics = step(state, {'image': global_images}, jax.random.key(1))
    losses.append(float(metrics['loss']))
  # Replicated outputs: every process holds a full copy on its addressable device.
  fetch = lambda a: np.asarray(a.addressable_data(0))
  flat = {
    jax.tree_util.keystr(k): fetch(v)
    for k, v in jax.tree_util.tree_leaves_with_path({'params': state.params, 'stats': state.model_state})
  }
  np.savez(out_path, losses=np.array(losses), devices=jax.device_count(), processes=jax.process_count(), **flat)
  if num_processes > 1:
    jax.distributed.shutdown()


if __name__ == '__main__':
  main(*sys.argv[1:])
