"""Device mesh, shardings and multi-host start-up.

Training is data-parallel over one mesh axis, ``'data'``, spanning every
device of every host. Parameters and optimiser state are replicated; batches
are split along their first axis. Everything else follows from ``jax.jit``
with these shardings: reductions over the batch (the loss mean, BatchNorm
statistics) run over the global batch, so results do not depend on the
device count.
"""

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gsg_jax import compiler
from gsg_jax.errors import ConfigError

DATA_AXIS = 'data'
LARGE_BATCH = 1024  # A batch this large is sized for accelerators (warn_if_cpu_only).


def initialize_distributed(config) -> None:
  """Calls ``jax.distributed.initialize`` when this is a multi-process launch.

  ``config.distributed.mode``:
    'auto'     – initialise when a cluster is detected (TPU pod worker, SLURM
                 job with several tasks, or JAX_COORDINATOR_ADDRESS set);
    'explicit' – use ``coordinator_address``, ``num_processes``, ``process_id``;
    'off'      – single process.
  """
  mode = config.mode
  if mode == 'off':
    return
  if mode == 'explicit':
    jax.distributed.initialize(
      coordinator_address=config.coordinator_address,
      num_processes=config.num_processes,
      process_id=config.process_id,
      local_device_ids=list(config.local_device_ids) or None,
    )
    return
  if mode != 'auto':
    raise ConfigError(f"distributed.mode={mode!r}: expected 'auto', 'explicit' or 'off'.")
  in_slurm = int(os.environ.get('SLURM_NTASKS', '1')) > 1
  on_tpu_pod = 'TPU_WORKER_HOSTNAMES' in os.environ or 'MEGASCALE_COORDINATOR_ADDRESS' in os.environ
  if in_slurm or on_tpu_pod or 'JAX_COORDINATOR_ADDRESS' in os.environ:
    jax.distributed.initialize()  # Reads the cluster's environment.


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Split the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def jit_trainer(trainer, mesh: Mesh):
  """``(init, train_step)`` of a ``training.Trainer``, jitted over ``mesh``.

  ``init(rng, image_shape)`` returns a replicated state; ``train_step(state,
  batch, rng)`` takes a batch split along its first axis and donates the
  state it is given (its buffers are reused for the new one).
  """
  state_sharding, batch = replicated(mesh), batch_sharding(mesh)
  init = jax.jit(trainer.init, static_argnums=1, out_shardings=state_sharding)
  train_step = compiler.jit(
    trainer.train_step,
    mesh.devices.flat,
    in_shardings=(state_sharding, batch, state_sharding),
    out_shardings=(state_sharding, state_sharding),
    donate_argnums=0,
  )
  return init, train_step


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.size:
    raise ConfigError(f'batch_size={batch_size} is not divisible by the {mesh.size} devices of the mesh.')


def warn_if_cpu_only(config, devices=None) -> str | None:
  """Log one warning when ``config`` is sized for an accelerator but ``devices`` (default ``jax.devices()``) are CPUs.

  Sized for an accelerator: bfloat16 compute (``model.dtype``; XLA's CPU
  backend has no fast bfloat16 arithmetic) or a batch of ``LARGE_BATCH`` or
  more. Only CPUs on such a run usually means jaxlib was installed without
  its GPU/TPU plugin. Returns the warning, or None when there is none.
  """
  devices = jax.devices() if devices is None else devices
  if any(d.platform != 'cpu' for d in devices):
    return None
  asks = (['bfloat16 compute (model.dtype)'] if config.model.dtype == 'bfloat16' else []) + (
    [f'batch_size={config.batch_size}'] if config.batch_size >= LARGE_BATCH else []
  )
  if not asks:
    return None
  message = (
    f'the config asks for {" and ".join(asks)}, but JAX sees only CPU devices ({len(devices)}): this run '
    'will be slow. On an NVIDIA GPU install `pip install gsg-jax[cuda12]`, on a TPU VM `gsg-jax[tpu]`; '
    'check with `python -c "import jax; print(jax.devices())"`.'
  )
  logging.warning(message)
  return message
