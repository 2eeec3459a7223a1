"""Guided stop-gradient (Lee & Lee): the loss and its pair guide.

Every image i has four views a, b, c, d, and a fresh random permutation r of
the batch pairs image i with image r(i):

    x₁₁ = a_i,  x₁₂ = b_i,  x₂₁ = c_{r(i)},  x₂₂ = d_{r(i)}.

The guide looks at the stop-gradient projections z (SimSiam: the online
network's, BYOL: the target network's) and takes, among the four cross-image
pairs, the one with the smallest Euclidean distance between raw projections:

    (a*, b*) = argmin_{a, b ∈ {1, 2}} ‖z₁ₐ − z₂_b‖₂.

The two members of that closest pair are the *sources*: each is predicted
toward the other view of its own image, which is the stop-gradient target,

    ℓ_i = −½ · [ cos(p₁ₐ*, sg(z₁ā*)) + cos(p₂_b*, sg(z₂b̄*)) ],

with ā the other view index, and L = mean_i ℓ_i. Moving the closest
cross-image pair toward their own partners pushes different images apart:
a contrast without any negative term.

The loss is written as four explicit branches, one per choice of (a*, b*),
each with its targets under ``jax.lax.stop_gradient``, combined by the
one-hot of the argmin (itself under stop-gradient). Gradients reach only
the predictions of the chosen branch.
"""

import jax
import jax.numpy as jnp

from gsg_jax.methods.similarity import cosine_similarity

# Branch k ↔ (a*, b*): 0 ↔ (1, 1), 1 ↔ (1, 2), 2 ↔ (2, 1), 3 ↔ (2, 2).
BRANCHES = ((0, 0), (0, 1), (1, 0), (1, 1))


def pair_views(x, permutation):
  """[B, 4, D] views (a, b, c, d) → (x₁₁, x₁₂, x₂₁, x₂₂), each [B, D]; image 2 is image r(i)."""
  return x[:, 0], x[:, 1], x[permutation, 2], x[permutation, 3]


def closest_pair(z11, z12, z21, z22):
  """Index k ∈ {0..3} of the closest cross-image pair (see BRANCHES), and the four distances [B, 4]."""
  distances = jnp.stack(
    [
      jnp.linalg.norm(z11 - z21, axis=-1),
      jnp.linalg.norm(z11 - z22, axis=-1),
      jnp.linalg.norm(z12 - z21, axis=-1),
      jnp.linalg.norm(z12 - z22, axis=-1),
    ],
    axis=-1,
  )
  return jnp.argmin(distances, axis=-1), distances


def guided_loss_from_pairs(p, z):
  """The GSG loss on already-paired views: ``p``, ``z`` are 4-tuples (x₁₁, x₁₂, x₂₁, x₂₂) of [B, D]."""
  p11, p12, p21, p22 = p
  z11, z12, z21, z22 = (jax.lax.stop_gradient(t) for t in z)
  choice, distances = closest_pair(z11, z12, z21, z22)
  one_hot = jax.lax.stop_gradient(jax.nn.one_hot(choice, 4))

  # Image 1's source predicts its other view; so does image 2's.
  src1_is_11 = -cosine_similarity(p11, z12)  # a* = 1: p₁₁ → sg(z₁₂)
  src1_is_12 = -cosine_similarity(p12, z11)  # a* = 2: p₁₂ → sg(z₁₁)
  src2_is_21 = -cosine_similarity(p21, z22)  # b* = 1: p₂₁ → sg(z₂₂)
  src2_is_22 = -cosine_similarity(p22, z21)  # b* = 2: p₂₂ → sg(z₂₁)
  branches = jnp.stack(
    [
      0.5 * (src1_is_11 + src2_is_21),
      0.5 * (src1_is_11 + src2_is_22),
      0.5 * (src1_is_12 + src2_is_21),
      0.5 * (src1_is_12 + src2_is_22),
    ],
    axis=-1,
  )
  loss = jnp.mean(jnp.sum(one_hot * branches, axis=-1))
  fractions = jnp.mean(one_hot, axis=0)
  aux = {f'gsg/pair_{a + 1}{b + 1}': fractions[k] for k, (a, b) in enumerate(BRANCHES)}
  aux['gsg/closest_distance'] = jnp.mean(jnp.min(distances, axis=-1))
  return loss, aux


def guided_loss(predictions, targets, rng):
  """GSG loss from four views: ``predictions``, ``targets`` [B, 4, D]; ``rng`` draws the permutation r."""
  permutation = jax.random.permutation(rng, predictions.shape[0])
  return guided_loss_from_pairs(pair_views(predictions, permutation), pair_views(targets, permutation))
