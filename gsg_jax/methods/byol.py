"""BYOL's target network: an exponential moving average of the online one.

    ξ ← m · ξ + (1 − m) · θ

applied leaf by leaf to the target parameters ξ (backbone and projector) after
every optimiser step on the online parameters θ. The momentum m is either
fixed (the GSG reference: m = 0.99) or BYOL's cosine schedule from a base
value m₀ to 1 over the K training steps:

    m(k) = 1 − (1 − m₀) · (cos(π k / K) + 1) / 2.
"""

import jax
import jax.numpy as jnp


def ema_update(target, online, momentum):
  """ξ ← m ξ + (1 − m) θ on matching pytrees (``online`` may hold extra subtrees, e.g. the predictor)."""
  online = {k: online[k] for k in target}
  return jax.tree_util.tree_map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def momentum_schedule(base: float, schedule: str, total_steps: int):
  """Momentum as a function of the step: 'constant' or 'cosine' (BYOL, from ``base`` up to 1)."""
  if schedule == 'constant':
    return lambda step: jnp.asarray(base, jnp.float32)
  if schedule == 'cosine':
    def cosine(step):
      progress = jnp.minimum(step / max(total_steps, 1), 1.0)
      return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
    return cosine
  raise ValueError(f"method.ema_schedule={schedule!r}: expected 'constant' or 'cosine'.")
