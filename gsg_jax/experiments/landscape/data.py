r"""The sparse-coding data model of Pokle, Tian, Li & Risteski (AISTATS 2022) and its masked views.

Data (the authors' ``data_model/gen_sparse_coding_data.py``, re-written)
------------------------------------------------------------------------
    x = M z + ε,    M ∈ R^{p×d} column-orthonormal,   z ∈ {−1, 0, +1}^d,   ε ~ N(0, σ₀² I_p)

* M: the Q factor of the QR decomposition of a standard Gaussian p×d matrix.
* z (``latent='sparse'``), sparsity level q: every sample has exactly
  k₋ = ⌈dq/2⌉ entries −1 and k₊ = max(⌈dq⌉, ⌈dq/2⌉ + 1) − k₋ entries +1,
  placed by a fresh random permutation per sample (the ceilings are taken in
  floating point, as ``np.ceil(d*q)`` in the authors' code). For d = 10:
  q = 0.1 → (1, 1), 0.2 → (1, 1), 0.3 → (2, 1).
* z (``latent='one_hot'``): one entry ±1 (random position, random sign per
  sample), the rest 0. The authors' ``gen_z(one_hot_latent=True)`` draws the
  sign once for the whole data set and ``gen_z_one_hot`` uses +1 only; the
  issue asks for a random sign, which is what this does, per sample.
* ε: σ₀ = √(log d)/d (natural log; the authors' default, "following Yuanzhi").
* n = 3000 samples, drawn once per seed. With ``np.random.default_rng(seed)``
  M is the first draw, so every sparsity level of a seed shares M, as in the
  authors' runs (``np.random.seed(i+1)`` before ``gen_M``).

Encoder initialisation (their ``gen_Winit``; kernel in Flax's layout [p, m])
---------------------------------------------------------------------------
* random (``c=None``): entries N(0, 1/(p·d)) (standard deviation 1/√(p·d));
* warm start (``c`` > 0): M_S + N(0, p^{−c}) entrywise, i.e. noise of standard
  deviation p^{−c/2} (``np.random.normal(0, 1.0/p**(c/2))``), with M_S the m
  columns of M drawn uniformly with replacement when m > d, M itself when
  m = d (the first m columns of a random permutation when m < d, where the
  authors' code would fail on the shapes);
* ``c = inf``: W = M_S exactly (the noise vanishes as c → ∞).

Views (their ``dataset/*.py``)
------------------------------
* ``independent`` (non-contrastive runs, ``MaskedSparseContrastiveDataset``):
  x_v = D_v x with D_v = diag(δ), δ_j ~ Bernoulli(1 − mask probability)
  i.i.d. over coordinates, views and samples; no rescaling. Any number of
  views (GSG takes four).
* ``complementary`` (the contrastive run, ``DependentMaskContrastiveDataset``):
  x₁ = 2 D x, x₂ = 2 (I − D) x with D ~ Bernoulli(½), so ½(x₁ + x₂) = x. The
  mask probability plays no role. Views come in pairs (2k views: k pairs).

The view maker is the train-step core's (``gsg_jax.training.step``): a batch
is ``{'x': [B, p], 'keep_prob': scalar}`` (``keep_prob`` = 1 − mask
probability, a traced value so that runs with different mask probabilities
share one compiled, vmapped program) and the rows come out example-major,
row b·V + v = view v of sample b.

Bernoulli draws use 16 random bits per coordinate (two per 32-bit word of
``jax.random.bits``, compared with round(keep·2¹⁶)), not a float uniform:
exact for keep ∈ {¼, ½, ¾}, 0.100006 for keep = 0.1, and half the random
words; drawing the masks was most of the cost of a step on a CPU.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.errors import ConfigError

LATENTS = ('sparse', 'one_hot')
VIEW_KINDS = ('independent', 'complementary')


def sparsity_counts(d: int, q: float) -> tuple[int, int]:
  """(number of −1 entries, number of +1 entries) per sample at sparsity level ``q`` (authors' formula)."""
  s1 = int(np.ceil(d * q / 2))
  s2 = int(max(np.ceil(d * q), np.ceil(d * q / 2) + 1))
  return s1, s2 - s1


def default_noise_std(d: int) -> float:
  """σ₀ = √(log d)/d."""
  return float(np.sqrt(np.log(d)) / d)


def dictionary(rng: np.random.Generator, p: int, d: int) -> np.ndarray:
  """M [p, d] with orthonormal columns: Q of the QR decomposition of a Gaussian matrix."""
  if p < d:
    raise ConfigError(f'p={p} < d={d}: M cannot have orthonormal columns.')
  q, _ = np.linalg.qr(rng.normal(size=(p, d)))
  return q


def latents(rng: np.random.Generator, n: int, d: int, q: float, latent: str = 'sparse') -> np.ndarray:
  """z [n, d] in {−1, 0, +1}: exact counts per sample (``sparse``) or one ±1 (``one_hot``)."""
  if latent == 'one_hot':
    z = np.zeros((n, d), np.int8)
    z[np.arange(n), rng.integers(0, d, n)] = rng.choice(np.array([-1, 1], np.int8), n)
    return z
  if latent != 'sparse':
    raise ConfigError(f'latent={latent!r}: expected one of {LATENTS}.')
  num_neg, num_pos = sparsity_counts(d, q)
  if num_neg + num_pos > d:
    raise ConfigError(f'sparsity {q} needs {num_neg + num_pos} non-zeros out of d={d}.')
  template = np.zeros(d, np.int8)
  template[:num_neg] = -1
  template[num_neg : num_neg + num_pos] = 1
  return rng.permuted(np.tile(template, (n, 1)), axis=1)


def make_dataset(
  seed: int, p: int, d: int, n: int, q: float, latent: str = 'sparse', noise_std: float | None = None
) -> dict:
  """{'x' [n, p] float32, 'z' [n, d] int8, 'M' [p, d] float32} for one seed and sparsity level."""
  rng = np.random.default_rng(seed)
  m_dict = dictionary(rng, p, d)
  z = latents(rng, n, d, q, latent)
  sigma = default_noise_std(d) if noise_std is None else noise_std
  x = z @ m_dict.T + rng.normal(0.0, sigma, (n, p))
  return {'x': x.astype(np.float32), 'z': z, 'M': m_dict.astype(np.float32)}


def init_kernel(rng: np.random.Generator, m_dict: np.ndarray, m: int, c: float | None = None) -> np.ndarray:
  """Encoder kernel [p, m] (column j = neuron j's weights w_j): random, warm start M_S + N(0, p^{−c}), or M_S."""
  p, d = m_dict.shape
  if c is None:
    return rng.normal(0.0, np.sqrt(1.0 / (p * d)), (p, m)).astype(np.float32)
  if c <= 0:
    raise ConfigError(f'warm-start c={c} must be > 0 (None: random init, inf: W = M_S).')
  if m > d:
    m_s = m_dict[:, rng.choice(d, m)]
  elif m == d:
    m_s = m_dict
  else:
    m_s = m_dict[:, rng.permutation(d)[:m]]
  if np.isinf(c):
    return m_s.astype(np.float32)
  return (m_s + rng.normal(0.0, 1.0 / p ** (c / 2), (p, m))).astype(np.float32)


def bernoulli16(rng, keep_prob, shape):
  """Bernoulli(``keep_prob``) booleans of ``shape`` from 16-bit random integers: P = round(keep·2¹⁶)/2¹⁶.

  Each 32-bit word of ``jax.random.bits`` gives two draws (its low and high halves): half the words of
  one draw per word, and a fifth of the time of ``jax.random.bits(..., jnp.uint16)`` on a CPU.
  """
  size = int(np.prod(shape))
  words = jax.random.bits(rng, ((size + 1) // 2,), jnp.uint32)
  halves = jnp.stack([words & jnp.uint32(0xFFFF), words >> 16], axis=-1).reshape(-1)[:size]
  threshold = jnp.round(jnp.asarray(keep_prob, jnp.float32) * 65536.0).astype(jnp.uint32)
  return (halves < threshold).reshape(shape)


@dataclasses.dataclass(frozen=True)
class MaskViews:
  """Random-mask views of ``batch['x']`` [B, p]: ``independent`` or ``complementary`` (module docstring)."""

  kind: str = 'independent'

  def __post_init__(self):
    if self.kind not in VIEW_KINDS:
      raise ConfigError(f'views={self.kind!r}: expected one of {VIEW_KINDS}.')

  def masks(self, rng, keep_prob, batch_size: int, num_views: int, p: int):
    """The diagonal masks [B, V, p] (float32): δ for ``independent``, (2D, 2(1 − D)) pairs for ``complementary``."""
    if self.kind == 'independent':
      return bernoulli16(rng, keep_prob, (batch_size, num_views, p)).astype(jnp.float32)
    if num_views % 2:
      raise ConfigError(f'complementary views come in pairs: num_views={num_views} is odd.')
    d = bernoulli16(rng, 0.5, (batch_size, num_views // 2, 1, p)).astype(jnp.float32)
    return (2.0 * jnp.concatenate([d, 1.0 - d], axis=2)).reshape(batch_size, num_views, p)

  def __call__(self, batch, rng, num_views: int):
    """[B, p] → [B·V, p], example-major."""
    x = batch['x']
    keep = batch.get('keep_prob', 1.0)
    views = x[:, None, :] * self.masks(rng, keep, x.shape[0], num_views, x.shape[-1])
    return views.reshape(-1, x.shape[-1])

  def row_shape(self, input_shape):
    return tuple(input_shape)

  def preprocess_eval(self, inputs):
    return inputs
