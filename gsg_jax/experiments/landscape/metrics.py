r"""What the landscape experiments measure: dictionary recovery, support recovery, collapse.

Recovery (the authors' ``check_sparse_coding_learning``)
--------------------------------------------------------
For encoder rows w_j (W: [m, p]) and ground-truth columns M_i (M: [p, d]),

    r_i = max_j |cos(w_j, M_i)|,     i = 1..d,

and the report is max_i r_i, median_i r_i, min_i r_i. Full recovery: every
latent has a neuron aligned with it, min_i r_i ≈ 1. A random W in R^{m×p}
gives r_i ≈ √(2 log m / p) ≈ 0.4 for p = m = 50.

Support recovery (their ``check_support``)
------------------------------------------
Neurons and latents are paired greedily: C = cos(w_j, M_i) (signed), repeatedly
take the largest remaining entry and remove its row and column, d times:
pairs (j_k, i_k). With the sign pattern ẑ = sign(f(x)) ∈ {−1, 0, 1}^m of the
representation of a sample whose latent is z,

    match       = Σ_k |z_{i_k} ẑ_{j_k}| / Σ_i |z_i|                 (true support found)
    false       = Σ_k 1[z_{i_k} = 0] |ẑ_{j_k}| / max(Σ_j |ẑ_j|, 1)   (paired neurons firing off-support)
    sparsity gap = mean_j |ẑ_j| − mean_i |z_i|                       (firing fraction minus true density)

averaged over the samples (all have z ≠ 0 in this data model). The authors
evaluate it on the representation of the last training batch's first view;
here it is a fixed evaluation batch's first view (fixed samples and masks).

Collapse
--------
``output_variance`` = mean_j Var_batch(f_j(x)), the variance of each output
unit over the batch, averaged over units: 0 for a collapsed (constant)
representation; ``normalized_std`` = the same for f/‖f‖ as a std (SimSiam's
signal, ≈ 1/√m when healthy).
"""

import jax
import jax.numpy as jnp

from gsg_jax.evaluation.diagnostics import normalized_std


def _unit_rows(a):
  return a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def cosine_matrix(w, m_dict):
  """cos(w_j, M_i), [m, d], signed."""
  return _unit_rows(jnp.asarray(w, jnp.float32)) @ _unit_rows(jnp.asarray(m_dict, jnp.float32).T).T


def recovery(w, m_dict) -> dict:
  """{'max', 'median', 'min'} over latents i of max_j |cos(w_j, M_i)|; W: [m, p], M: [p, d]. Jit/vmap-able."""
  best = jnp.max(jnp.abs(cosine_matrix(w, m_dict)), axis=0)
  return {'max': jnp.max(best), 'median': jnp.median(best), 'min': jnp.min(best)}


def greedy_pairs(cos):
  """The d (neuron, latent) pairs of the greedy matching on the signed cosines ``cos`` [m, d]: ([d], [d])."""
  m, d = cos.shape

  def pick(carry, _):
    c = carry
    flat = jnp.argmax(c)
    j, i = flat // d, flat % d
    c = c.at[j, :].set(-jnp.inf).at[:, i].set(-jnp.inf)
    return c, (j, i)

  _, (neurons, latents) = jax.lax.scan(pick, cos, None, length=min(m, d))
  return neurons, latents


def support_recovery(w, m_dict, z, representation) -> dict:
  """{'match', 'false_support', 'sparsity_gap'}: z [N, d] latents, representation [N, m] of the same samples."""
  neurons, latents = greedy_pairs(cosine_matrix(w, m_dict))
  z = jnp.abs(jnp.asarray(z, jnp.float32))
  z_hat = jnp.abs(jnp.sign(representation))
  z_pair, z_hat_pair = z[:, latents], z_hat[:, neurons]
  match = jnp.sum(z_pair * z_hat_pair, -1) / jnp.maximum(jnp.sum(z, -1), 1.0)
  false = jnp.sum((z_pair == 0) * z_hat_pair, -1) / jnp.maximum(jnp.sum(z_hat, -1), 1.0)
  gap = jnp.mean(z_hat, -1) - jnp.mean(z, -1)
  return {'match': jnp.mean(match), 'false_support': jnp.mean(false), 'sparsity_gap': jnp.mean(gap)}


def output_variance(representation):
  """mean_j Var_i(f_ij) over a batch [N, m]."""
  return jnp.mean(jnp.var(representation, axis=0))


def collapse(representation) -> dict:
  return {'output_variance': output_variance(representation), 'normalized_std': normalized_std(representation)}
