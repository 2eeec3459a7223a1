"""The symmetric two-view loss of SimSiam and BYOL.

With predictions p₁, p₂ (online network) and targets z₁, z₂ (SimSiam's own
projections, BYOL's target-network projections), put under stop-gradient here,

    L = ½ · D(p₁, sg(z₂)) + ½ · D(p₂, sg(z₁)),      D(p, z) = −cos(p, z),

averaged over the batch (Chen & He 2021, eq. 2–4). Its minimum is −1.
"""

import jax
import jax.numpy as jnp

from gsg_jax.methods.similarity import cosine_similarity


def symmetric_loss(predictions, targets, rng=None):
  """``predictions``, ``targets``: [B, 2, D] (view axis second). Returns (loss, aux)."""
  del rng  # The pairing is fixed: view 1 predicts view 2 and vice versa.
  targets = jax.lax.stop_gradient(targets)
  cos_12 = cosine_similarity(predictions[:, 0], targets[:, 1])
  cos_21 = cosine_similarity(predictions[:, 1], targets[:, 0])
  loss = -0.5 * jnp.mean(cos_12 + cos_21)
  return loss, {}
