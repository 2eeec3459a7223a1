"""The similarity shared by every non-contrastive loss here."""

import jax.numpy as jnp


def l2_normalize(x, eps: float = 1e-8):
  """x / max(‖x‖, ε) along the last axis (torch's F.normalize).

  Written with the squared norm so the gradient is finite at x = 0 (it is 0
  there), which happens when every unit before a predictor's last layer is
  inactive.
  """
  return x * jnp.reciprocal(jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps)))


def cosine_similarity(a, b, eps: float = 1e-8):
  """cos(a, b) = ⟨a, b⟩ / (max(‖a‖, ε) · max(‖b‖, ε)) along the last axis."""
  return jnp.sum(l2_normalize(a, eps) * l2_normalize(b, eps), axis=-1)
