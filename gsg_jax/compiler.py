"""XLA compiler options for the programs that run this project's networks, and ``jit`` that passes them.

On a CPU, jaxlib 0.10's XLA gives every convolution that stands alone to YNNPACK (XNNPACK's successor): the
default of ``xla_cpu_experimental_ynn_fusion_type`` is individual convolutions, individual dots and reductions.
For this project's networks XLA's own (Eigen) convolutions are faster: taking convolutions out of that list was
the one CPU option that sped the train step up, on both networks and with the views in one pass or one pass each
(``benchmarks/xla_flags.py``; the measurements are in ``docs/results/throughput.md``). ``CPU_OPTIONS`` keeps
YNNPACK for dots and reductions and gives convolutions back to XLA.
Only the rounding changes: the two kernels sum in different orders.

They are passed per program (``jax.jit(..., compiler_options=...)``), not through ``XLA_FLAGS``: they then reach
only the programs built with ``jit`` below and never a notebook's own code; a jaxlib that does not know an option
rejects it with an error that ``options`` catches (falling back to jaxlib's defaults, with one warning), where
an unknown ``XLA_FLAGS`` flag aborts the process.

``options`` returns None, jaxlib's own defaults, when the devices are not CPUs, when ``XLA_FLAGS`` already sets
``xla_cpu_experimental_ynn_fusion_type`` (the user's choice wins), or when ``GSG_JAX_XLA_CPU_OPTIONS=0``.
"""

import functools
import os

import jax
from absl import logging

ENV_SWITCH = 'GSG_JAX_XLA_CPU_OPTIONS'  # '0': compile with jaxlib's own defaults.
YNN_FUSION_TYPES = 'xla_cpu_experimental_ynn_fusion_type'
CPU_OPTIONS = {YNN_FUSION_TYPES: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


def options(devices=None) -> dict | None:
  """The compiler options for programs on ``devices`` (default: ``jax.devices()``), or None for jaxlib's own."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices or any(d.platform != 'cpu' for d in devices):
    return None
  if os.environ.get(ENV_SWITCH, '1') == '0' or YNN_FUSION_TYPES in os.environ.get('XLA_FLAGS', ''):
    return None
  return _accepted(tuple(sorted(CPU_OPTIONS.items())))


@functools.cache
def _accepted(items) -> dict | None:
  """``dict(items)`` if this jaxlib's CPU compiler takes them, else None (one warning per process)."""
  candidate = dict(items)
  try:  # On a CPU device: the options are for the CPU compiler, whatever the default backend is.
    x = jax.device_put(0.0, jax.devices('cpu')[0])
    jax.jit(lambda x: x + 1, compiler_options=candidate)(x).block_until_ready()
  except Exception as e:  # The runtime's error type differs between jaxlib versions.
    logging.warning('this jaxlib rejects the CPU compiler options %s (%s); using its defaults.', candidate, e)
    return None
  return candidate


def jit(fun, devices=None, **kwargs):
  """``jax.jit(fun, **kwargs)`` with ``options(devices)``; ``devices`` are where the program runs."""
  return jax.jit(fun, compiler_options=options(devices), **kwargs)
