"""DirectPred and DirectCopy (Tian, Chen & Ganguli 2021): a linear predictor set, not trained.

Both keep a moving estimate of the (uncentred) correlation of the predictor's
inputs, the detached online projections f of every view in the batch:

    F̂ ← ρ · F̂ + (1 − ρ) · E_batch[f fᵀ]          (ρ = 0.3; the first batch sets F̂)

and set the predictor's d×d weight from it every ``freq`` steps, after the
optimiser step. With F̂ = U diag(s) Uᵀ (``jnp.linalg.eigh``):

* DirectPred:  s ← max(s, 0) / max_j s_j,   p_j = max(√s_j + ε, 10⁻⁴),   W_p = U diag(p) Uᵀ;
* DirectCopy:  W_p = F̂ / max_j s_j + ε · I.

ε = 0.1. The DirectPred rule is the authors' code's (facebookresearch/
luckmatters ``ssl/real-dataset``, ``balance_type='boost_scale'``,
``dyn_convert=2``, ``dyn_eps_inside=False``); the paper writes √s_j + ε·max s,
which differs only in where ε is scaled. The authors' DirectCopy adds ε·I to
F̂ unnormalised; here F̂ is divided by its largest eigenvalue first, so ε has
the same meaning in both rules and W_p does not shrink with the projections'
scale.

Under ``jax.jit`` on a mesh, E_batch runs over the global batch.

The functions here are pure; ``gsg_jax.methods.predictors`` wires them into
training.
"""

import jax
import jax.numpy as jnp

from gsg_jax.errors import ConfigError

_HIGHEST = jax.lax.Precision.HIGHEST


def batch_correlation(f):
  """E_i[f_i f_iᵀ] of rows ``f`` [N, d] (all views of all images), uncentred, in float32."""
  f = jnp.asarray(f, jnp.float32).reshape(-1, f.shape[-1])
  return jnp.matmul(f.T, f, precision=_HIGHEST) / f.shape[0]


def update_correlation(correlation, count, f, rho: float = 0.3):
  """F̂ ← ρ F̂ + (1 − ρ) E[f fᵀ]; when ``count`` (batches seen so far) is 0 the batch sets F̂.

  Returns (new F̂, count + 1).
  """
  batch = batch_correlation(f)
  new = jnp.where(count > 0, rho * correlation + (1.0 - rho) * batch, batch)
  return new, count + 1


def _symmetric_eigh(matrix):
  """Eigenvalues (ascending) and eigenvectors of the symmetric part of ``matrix`` (rounding can break symmetry)."""
  matrix = jnp.asarray(matrix, jnp.float32)
  return jnp.linalg.eigh(0.5 * (matrix + matrix.T))


def directpred_eigenvalues(s, eps: float = 0.1):
  """DirectPred's eigenvalues p_j of W_p from the eigenvalues s_j of F̂ (see the module docstring)."""
  s = jnp.maximum(s, 0.0) / jnp.maximum(jnp.max(s), jnp.finfo(jnp.float32).tiny)
  return jnp.maximum(jnp.sqrt(s) + eps, 1e-4)


KINDS = ('directpred', 'directcopy')


def set_predictor(correlation, kind: str, eps: float = 0.1):
  """W_p by rule ``kind`` from F̂, with one eigendecomposition; returns (W_p, s of F̂ ascending, W_p's eigenvalues).

  The eigenvalues come back for the training metrics, which would otherwise
  need a second decomposition every step.
  """
  correlation = jnp.asarray(correlation, jnp.float32)
  s, u = _symmetric_eigh(correlation)
  if kind == 'directpred':
    p = directpred_eigenvalues(s, eps)
    return (u * p) @ u.T, s, p
  if kind == 'directcopy':
    s_max = jnp.maximum(s[-1], jnp.finfo(jnp.float32).tiny)
    w = 0.5 * (correlation + correlation.T) / s_max + eps * jnp.eye(s.shape[0])
    return w, s, s / s_max + eps
  raise ConfigError(f'unknown set-predictor rule {kind!r}: expected one of {KINDS}.')


def predictor_from_correlation(correlation, eps: float = 0.1):
  """DirectPred: W_p = U diag(max(√(s⁺/s_max) + ε, 10⁻⁴)) Uᵀ for F̂ = U diag(s) Uᵀ. [d, d] → [d, d], symmetric."""
  return set_predictor(correlation, 'directpred', eps)[0]


def directcopy_predictor(correlation, eps: float = 0.1):
  """DirectCopy: W_p = F̂ / s_max + ε·I. [d, d] → [d, d], symmetric."""
  return set_predictor(correlation, 'directcopy', eps)[0]
