"""Representation diagnostics: spectrum, collapse, alignment/uniformity, predictor eigenspaces.

Features are [N, D] jax or NumPy arrays. Sums over samples run under
``jax.jit`` as a ``lax.scan`` over row chunks (the last one padded and
masked), so N can be large; pairwise quantities never hold more than
``chunk_size × N`` entries. Matmuls use full float32 precision (no TF32 on
GPUs). The single metrics return jax scalars/arrays (usable inside jit); the
report functions return Python floats. The rank, RankMe and Wasserstein
uniformity of the last section finish in NumPy (float64) and return Python
numbers; the Wasserstein uniformity looks at ≤ 2,048 rows (≈ 2.1 M pairs).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.methods.similarity import l2_normalize

_HIGHEST = jax.lax.Precision.HIGHEST


def _chunked_sum(fn, x, chunk_size: int):
  """Σ over row chunks of ``fn(chunk, valid, rows)``; padding rows (valid False) must contribute 0.

  ``rows`` holds the chunk's global row indices. ``fn`` may return any pytree.
  """
  n = x.shape[0]
  size = max(min(chunk_size, n), 1)
  num = -(-n // size)
  padded = jnp.pad(x, [(0, num * size - n)] + [(0, 0)] * (x.ndim - 1))
  rows = jnp.arange(num * size).reshape(num, size)
  chunks = (padded.reshape((num, size) + x.shape[1:]), rows < n, rows)
  shapes = jax.eval_shape(fn, *(c[0] for c in chunks))
  init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  add = lambda total, chunk: (jax.tree.map(jnp.add, total, fn(*chunk)), None)
  return jax.lax.scan(add, init, chunks)[0]


def _mean(x, chunk_size: int):
  return _chunked_sum(lambda c, valid, _: jnp.sum(jnp.where(valid[:, None], c, 0), 0), x, chunk_size) / x.shape[0]


def _second_moment(x, chunk_size: int, mean=None):
  """Σ_i (x_i − m)(x_i − m)ᵀ, [D, D] (m = 0 when ``mean`` is None)."""

  def gram(c, valid, _):
    c = jnp.where(valid[:, None], c if mean is None else c - mean, 0)
    return jnp.matmul(c.T, c, precision=_HIGHEST)

  return _chunked_sum(gram, x, chunk_size)


@functools.partial(jax.jit, static_argnames=('chunk_size', 'centered'))
def singular_values(x, chunk_size: int = 4096, centered: bool = True):
  """Singular values σ_1 ≥ … ≥ σ_r, r = min(N, D), of the *centred* features X − 1μᵀ (``centered=False``: of X).

  For N ≤ D a direct SVD. For N > D (the usual case) the eigenvectors v_j of
  the centred Gram matrix G = Σ_i (x_i − μ)(x_i − μ)ᵀ are found first and then
  σ_j = ‖(X − 1μᵀ) v_j‖ is measured directly, which keeps small singular
  values as accurate as an SVD's instead of taking √λ_j(G).
  """
  x = jnp.asarray(x, jnp.float32)
  n, d = x.shape
  if n <= d:
    return jnp.linalg.svd(x - x.mean(0) if centered else x, compute_uv=False)
  mean = _mean(x, chunk_size) if centered else jnp.zeros((d,), x.dtype)
  _, vectors = jnp.linalg.eigh(_second_moment(x, chunk_size, mean))

  def squared_norms(c, valid, _):
    return jnp.sum(jnp.where(valid[:, None], jnp.matmul(c - mean, vectors, precision=_HIGHEST), 0) ** 2, 0)

  return jnp.sort(jnp.sqrt(_chunked_sum(squared_norms, x, chunk_size)))[::-1]


@functools.partial(jax.jit, static_argnames='chunk_size')
def effective_rank(x, chunk_size: int = 4096):
  """Effective rank (Roy & Vetterli 2007) of the centred features: exp(H(p)).

      p_i = σ_i / Σ_j σ_j,   H(p) = −Σ_i p_i log p_i   (0 log 0 = 0),

  σ the singular values of X − 1μᵀ. Between 1 and min(N, D); D for isotropic
  data, 1 for a rank-one set (and, by convention, for an all-equal set).
  """
  sigma = singular_values(x, chunk_size)
  p = sigma / jnp.maximum(jnp.sum(sigma), jnp.finfo(sigma.dtype).tiny)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0)))


@functools.partial(jax.jit, static_argnames='chunk_size')
def normalized_std(x, chunk_size: int = 4096):
  """SimSiam's collapse signal: the std over samples of the ℓ2-normalised features, averaged over dimensions.

      z_i = x_i / ‖x_i‖,   s = (1/D) Σ_d sqrt( (1/N) Σ_i (z_id − z̄_d)² )

  (population std, ddof = 0; two passes, so a collapsed set gives 0, not
  rounding noise). ≈ 1/√D for isotropic features, 0 when all z_i coincide.
  """
  z = l2_normalize(jnp.asarray(x, jnp.float32))
  mean = _mean(z, chunk_size)
  squares = _chunked_sum(lambda c, valid, _: jnp.sum(jnp.where(valid[:, None], c - mean, 0) ** 2, 0), z, chunk_size)
  return jnp.mean(jnp.sqrt(squares / z.shape[0]))


@functools.partial(jax.jit, static_argnames='alpha')
def alignment(x, y, alpha: float = 2.0):
  """Alignment of positive pairs (Wang & Isola 2020): E_i ‖f(x_i) − f(y_i)‖₂^α, f = ℓ2-normalisation.

  Rows i of ``x`` and ``y`` [N, D] are the two views of one sample. 0 for
  identical views, at most 2^α.
  """
  fx, fy = l2_normalize(jnp.asarray(x, jnp.float32)), l2_normalize(jnp.asarray(y, jnp.float32))
  return jnp.mean(jnp.sum((fx - fy) ** 2, axis=-1) ** (alpha / 2))


@functools.partial(jax.jit, static_argnames=('t', 'chunk_size'))
def uniformity(x, t: float = 2.0, chunk_size: int = 1024):
  """Uniformity (Wang & Isola 2020): log of the mean Gaussian potential over distinct pairs,

      log [ 1/(N(N−1)) Σ_{i≠j} exp(−t ‖f(x_i) − f(x_j)‖²) ],   f = ℓ2-normalisation.

  0 for a collapsed set, more negative the more uniform on the sphere. Needs N ≥ 2.
  ‖a − b‖² is computed as ‖a‖² + ‖b‖² − 2⟨a, b⟩ (clipped at 0), ``chunk_size`` rows at a time.
  """
  z = l2_normalize(jnp.asarray(x, jnp.float32))
  n = z.shape[0]
  norms = jnp.sum(z * z, axis=-1)

  def potential(c, valid, rows):
    squared = jnp.sum(c * c, -1)[:, None] + norms[None, :] - 2 * jnp.matmul(c, z.T, precision=_HIGHEST)
    keep = valid[:, None] & (rows[:, None] != jnp.arange(n)[None, :])
    return jnp.sum(jnp.where(keep, jnp.exp(-t * jnp.maximum(squared, 0)), 0))

  return jnp.log(_chunked_sum(potential, z, chunk_size) / (n * (n - 1)))


@jax.jit
def _eigenspace_terms(w, f):
  """Eigenvalues of F (descending), |cos(W u_j, u_j)| per eigenvector, and ‖offdiag(UᵀWU)‖_F / ‖UᵀWU‖_F."""
  eigenvalues, u = jnp.linalg.eigh(0.5 * (f + f.T))
  eigenvalues, u = eigenvalues[::-1], u[:, ::-1]
  wu = jnp.matmul(w, u, precision=_HIGHEST)
  m = jnp.matmul(u.T, wu, precision=_HIGHEST)
  cosines = jnp.abs(jnp.diag(m)) / jnp.maximum(jnp.linalg.norm(wu, axis=0), 1e-12)
  off_diagonal = jnp.where(jnp.eye(m.shape[0], dtype=bool), 0, m)
  ratio = jnp.linalg.norm(off_diagonal) / jnp.maximum(jnp.linalg.norm(m), 1e-12)
  return eigenvalues, cosines, ratio


def eigenspace_alignment(predictor_matrix, inputs, top_k: int = 10, chunk_size: int = 4096, correlation=None) -> dict:
  """How well a linear predictor W [D, D] aligns with the eigenbasis of its inputs (Tian, Chen & Ganguli 2021).

  W acts on column vectors, p = W z (a Flax Dense kernel is its transpose).
  With F = E[z zᵀ] = (1/N) Σ_i z_i z_iᵀ (uncentred, as in DirectPred) and
  F = U Λ Uᵀ, eigenvalues λ_1 ≥ … ≥ λ_D:

      cos_j = |u_jᵀ W u_j| / ‖W u_j‖        (1 iff u_j is an eigenvector of W; sign-agnostic)
      off_diagonal_ratio = ‖offdiag(UᵀWU)‖_F / ‖UᵀWU‖_F   (0 iff W is diagonal in F's eigenbasis)

  cos_j is 0 where W u_j = 0. Returns Python floats: ``alignment_all`` (mean
  cos_j over all j), ``alignment_top_k`` (over the top min(top_k, D)
  eigenvalues), ``off_diagonal_ratio``. Eigenvectors of (near-)repeated
  eigenvalues are not unique, so the per-vector cosines are only meaningful
  for a well-separated spectrum; a W that commutes with F scores 1 and 0 regardless.
  ``correlation``: F itself (e.g. DirectPred's moving F̂), in place of ``inputs``.
  """
  w = jnp.asarray(predictor_matrix, jnp.float32)
  if correlation is None:
    inputs = jnp.asarray(inputs, jnp.float32)
    correlation = jax.jit(_second_moment, static_argnums=1)(inputs, chunk_size) / inputs.shape[0]
  _, cosines, ratio = _eigenspace_terms(w, jnp.asarray(correlation, jnp.float32))
  return {
    'alignment_all': float(jnp.mean(cosines)),
    'alignment_top_k': float(jnp.mean(cosines[: min(top_k, cosines.shape[0])])),
    'off_diagonal_ratio': float(ratio),
  }


def mlp_jacobian(apply_fn, x_mean):
  """Jacobian ∂apply_fn(x)/∂x at ``x_mean`` [D_in], as a [D_out, D_in] matrix (forward mode).

  ``apply_fn`` maps a batch [B, D_in] → [B, D_out] (BatchNorm, if any, in
  inference mode); it is evaluated on the batch of one ``x_mean[None]``. The
  result is the local linear map W of an MLP predictor for ``eigenspace_alignment``.
  """
  x_mean = jnp.asarray(x_mean, jnp.float32)
  return jax.jit(jax.jacfwd(lambda v: apply_fn(v[None])[0]))(x_mean)


def collapse_report(features, projections, chunk_size: int = 4096) -> dict:
  """Effective rank and normalised std of backbone features and projections, plus a collapse flag.

  Keys: ``features/effective_rank``, ``features/normalized_std``,
  ``projections/effective_rank``, ``projections/normalized_std`` (Python
  floats; see ``effective_rank`` and ``normalized_std``) and ``collapsed``
  (bool): the projections' normalised std is below 0.1/√D, D the projection
  dimension — a tenth of the 1/√D that isotropic ℓ2-normalised outputs have,
  i.e. the outputs have shrunk into a narrow cone (complete collapse gives 0).
  """
  report = {}
  for name, x in (('features', features), ('projections', projections)):
    x = jnp.asarray(x, jnp.float32)
    report[f'{name}/effective_rank'] = float(effective_rank(x, chunk_size))
    report[f'{name}/normalized_std'] = float(normalized_std(x, chunk_size))
  dim = jnp.shape(projections)[-1]
  report['collapsed'] = bool(report['projections/normalized_std'] < 0.1 / dim**0.5)
  return report


# ---------------------------------------------------------------- rank, RankMe, Wasserstein uniformity
# Koromilas et al. (ICML 2024) report these for the contrastive losses (their DHEL-KCL metrics.py).


def numerical_rank(x, tol: float = 1e-5, chunk_size: int = 4096) -> int:
  """Rank of the sample covariance C = (X − 1μᵀ)ᵀ(X − 1μᵀ)/(N − 1): how many eigenvalues λ_j(C) exceed ``tol``.

  λ_j = σ_j²/(N − 1), σ_j the singular values of the centred features
  (``singular_values``). The absolute tolerance 1e-5 is Koromilas et al.'s
  (``np.linalg.matrix_rank(np.cov(Z.T), tol=1e-5)``). Needs N ≥ 2.
  """
  sigma = np.asarray(singular_values(jnp.asarray(x, jnp.float32), chunk_size), np.float64)
  return int(np.sum(sigma**2 / (np.shape(x)[0] - 1) > tol))


def rankme(x, eps: float = 1e-7, chunk_size: int = 4096) -> float:
  """RankMe (Garrido et al. 2023, eq. 1): exp(−Σ_k p_k log p_k), p_k = σ_k/‖σ‖₁ + ε.

  σ_k are the singular values of X itself, not centred (as in the paper and
  Koromilas et al.'s code), k ≤ min(N, D). Between about 1 and min(N, D).
  """
  sigma = np.asarray(singular_values(jnp.asarray(x, jnp.float32), chunk_size, centered=False), np.float64)
  p = sigma / max(np.sum(sigma), np.finfo(np.float64).tiny) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def inner_product_samples(dim: int, num_samples: int = 100_000, seed: int = 0) -> np.ndarray:
  """Samples of t = ⟨a, b⟩ for a, b independent and uniform on the unit sphere of R^dim.

  Its density is Γ(dim/2)/(Γ((dim−1)/2)√π) · (1 − t²)^((dim−3)/2) on [−1, 1],
  i.e. (1 + t)/2 ~ Beta((dim−1)/2, (dim−1)/2), which is how they are drawn
  (seeded: the metric is deterministic). Koromilas et al.'s ``DotProdDist``
  is this density with their d = dim − 1 (d = 127 for 128-d projections).
  """
  if dim < 2:
    raise ValueError(f'inner_product_samples: dim={dim}, needs a sphere of dimension >= 1 (dim >= 2).')
  a = (dim - 1) / 2
  return 2.0 * np.random.default_rng(seed).beta(a, a, num_samples) - 1.0


def wasserstein_1d(u, v) -> float:
  """1-Wasserstein distance between the empirical distributions of samples ``u`` and ``v``: ∫ |F_u − F_v| dx."""
  u, v = np.sort(np.ravel(u)), np.sort(np.ravel(v))
  grid = np.sort(np.concatenate([u, v]))
  cdf_u = np.searchsorted(u, grid[:-1], side='right') / u.size
  cdf_v = np.searchsorted(v, grid[:-1], side='right') / v.size
  return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(grid)))


def pairwise_cosines(x, max_points: int = 2048, seed: int = 0) -> np.ndarray:
  """cos(x_i, x_j) for all i < j, in float64; above ``max_points`` rows, of a seeded random subset of that many rows."""
  z = np.asarray(x, np.float64)
  if z.shape[0] > max_points:
    z = z[np.sort(np.random.default_rng(seed).choice(z.shape[0], max_points, replace=False))]
  z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  return (z @ z.T)[np.triu_indices(z.shape[0], k=1)]


def wasserstein_uniformity(x, num_samples: int = 100_000, max_points: int = 2048, seed: int = 0) -> float:
  """Koromilas et al.'s uniformity: W₁ between the pairwise cosines of the ℓ2-normalised rows of ``x`` [N, D]
  (``pairwise_cosines``) and samples of the inner product of two uniform points on the sphere of R^D.

  D is the data's own dimension (the authors' code fixes d = 127). 0 for
  points as spread as uniform ones; about 1 for a collapsed set (all
  cosines 1). The authors draw 10,000 samples; 100,000 here, seeded.
  """
  cosines = pairwise_cosines(x, max_points, seed)
  return wasserstein_1d(cosines, inner_product_samples(np.shape(x)[1], num_samples, seed))


def rank_report(features, projections, chunk_size: int = 4096) -> dict:
  """``{features,projections}/rank`` (``numerical_rank``), ``.../rankme`` (``rankme``) and
  ``projections/wasserstein_uniformity`` (``wasserstein_uniformity``), as Python numbers."""
  report = {}
  for name, x in (('features', features), ('projections', projections)):
    report[f'{name}/rank'] = numerical_rank(x, chunk_size=chunk_size)
    report[f'{name}/rankme'] = rankme(x, chunk_size=chunk_size)
  report['projections/wasserstein_uniformity'] = wasserstein_uniformity(projections)
  return report
