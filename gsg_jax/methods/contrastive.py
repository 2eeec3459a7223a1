"""Contrastive losses over the global batch: InfoNCE (SimCLR's NT-Xent), DCL, DHEL and KCL.

Each loss is a pure function of two views' projections ``z1, z2`` [B, D],
ℓ2-normalised inside (u_i = z1_i/‖z1_i‖, v_i = z2_i/‖z2_i‖), returning a
scalar. With s(a, b) = a·b/τ, and the rows of the two views together (2B):

* ``infonce`` (NT-Xent; Chen et al. 2020, simclr-pytorch's ``NTXent``): for
  every one of the 2B rows, the positive is the other view of its image and
  the denominator holds every other row (the positive included, negatives
  from both views):
      ℓ = (1/2B) Σ_{rows a} [ −s(a, a⁺) + log Σ_{b ≠ a} exp s(a, b) ].
* ``dcl`` (Yeh et al. 2022): the same with the positive removed from the
  denominator, Σ_{b ∉ {a, a⁺}}; averaged over both views' rows.
* ``dhel`` (Koromilas et al. 2024, their ``losses.py``): uniformity within
  each view only, no cross-view negatives,
      ℓ = (1/B) Σ_i [ −s(u_i, v_i) + log Σ_{j≠i} exp s(u_i, u_j) + log Σ_{j≠i} exp s(v_i, v_j) ];
  ``include_augs=False`` drops the last term (the code's one-view variant).
* ``kcl`` (kernel contrastive loss, their ``losses.py``/``utils.py``):
      ℓ = −2·mean_i k(u_i, v_i) + γ·w·[ mean_{i<j} k(u_i, u_j) + mean_{i<j} k(v_i, v_j) ]
  with d = ‖a − b‖ and k = exp(−t d²) (``gaussian``), −log(1 + t d²)
  (``log``) or t/√(t² + d²) (``imq``, t playing the code's c). w = 1, except
  w = ½ for ``log``: the authors' code halves the log kernel in the energy
  term only, and this follows it.

Global batch and memory. Under ``jax.jit`` with the batch split over a
device mesh, these functions see the global [B, D] arrays, so the negatives
of every row are the whole global batch. The similarities are built as
[B, B] blocks a·bᵀ whose rows follow the sharding of ``a`` (the right
operand, B×D, is gathered), and every reduction over a row's negatives is a
row-wise log-sum-exp: the logits stay sharded by rows, never replicated
(checked on the compiled HLO of 8 simulated devices: each device's blocks
are [B/8, B]). One evaluation of InfoNCE/DCL holds four [B, B] blocks (DHEL
and KCL two), B²/n entries each on each of n devices, and the registry
adapter below evaluates the loss twice, so memory grows as 8B²/n floats
(plus the gathered B×D projections): B = 4096 on 8 devices is 16.8 M float32
logits (67 MB) per device. The self-similarities (and, for DCL, the positive) are
masked by a large negative before the log-sum-exp, never by −inf, so every
gradient is finite (masked entries get exactly 0).

Registry adapters (``*_loss``) take the train step's [B, 2, D] predictions
p and targets z and return (loss, aux) with

    L = ½ [ ℓ(p₁, z₂) + ℓ(p₂, z₁) ],

with no stop-gradient: these losses take gradients through both views
(``cuts_target_gradient=False`` in ``gsg_jax.methods.LOSSES``). With the
``online`` target and predictor ``none`` (p = z, SimCLR's setting) this is
½[ℓ(z₁, z₂) + ℓ(z₂, z₁)] = ℓ(z₁, z₂), as every loss above is symmetric in
its two views (DHEL's ``include_augs=False`` is not: the adapter then
averages both directions). With a predictor, each view's prediction is
contrasted with the other view's projection. With the ``ema`` target, z
comes from the EMA network and carries no gradient: the gradient reaches
the online predictions only, through their alignment with the EMA
positives, their contrast with the EMA negatives (MoCo without a queue) and
the terms among the predictions themselves; the terms among the EMA
projections alone are constants.
"""

import jax
import jax.numpy as jnp

from gsg_jax.errors import ConfigError
from gsg_jax.methods.similarity import cosine_similarity, l2_normalize

KERNELS = ('gaussian', 'log', 'imq')
_MASKED = -1e9  # A logit that contributes exp(−1e9 − max) = 0 to a log-sum-exp, with a zero gradient.
_HIGHEST = jax.lax.Precision.HIGHEST


def _gram(a, b):
  """a·bᵀ, [B, B]: rows follow ``a``'s sharding (``b`` is gathered)."""
  return jnp.matmul(a, b.T, precision=_HIGHEST)


def _row_logsumexp(logits, exclude=None):
  """log Σ_j exp(logits_ij) over each row, leaving out the entries where ``exclude`` is True."""
  if exclude is not None:
    logits = jnp.where(exclude, _MASKED, logits)
  return jax.nn.logsumexp(logits, axis=-1)


def _normalized_pair(z1, z2):
  u, v = l2_normalize(z1), l2_normalize(z2)
  return u, v, jnp.eye(u.shape[0], dtype=bool)


def _two_view_rows(z1, z2, temperature, drop_positive: bool):
  """Mean over the 2B rows of [−s(a, a⁺) + log Σ exp s(a, b)], b over both views minus a (and a⁺ if dropped)."""
  u, v, eye = _normalized_pair(z1, z2)
  positive = jnp.sum(u * v, axis=-1) / temperature
  cross = eye if drop_positive else None
  lse_u = jnp.logaddexp(
    _row_logsumexp(_gram(u, u) / temperature, eye), _row_logsumexp(_gram(u, v) / temperature, cross)
  )
  lse_v = jnp.logaddexp(
    _row_logsumexp(_gram(v, v) / temperature, eye), _row_logsumexp(_gram(v, u) / temperature, cross)
  )
  return jnp.mean(0.5 * (lse_u + lse_v) - positive)


def infonce(z1, z2, temperature: float = 0.5):
  """SimCLR's NT-Xent over the 2B rows of both views (positive in the denominator). Scalar."""
  return _two_view_rows(z1, z2, temperature, drop_positive=False)


def dcl(z1, z2, temperature: float = 0.5):
  """Decoupled contrastive loss: NT-Xent without the positive in the denominator, over both views' rows."""
  return _two_view_rows(z1, z2, temperature, drop_positive=True)


def dhel(z1, z2, temperature: float = 0.3, include_augs: bool = True):
  """Decoupled hyperspherical energy loss: alignment plus within-view log-sum-exp energies. Scalar."""
  u, v, eye = _normalized_pair(z1, z2)
  loss = -jnp.sum(u * v, axis=-1) / temperature + _row_logsumexp(_gram(u, u) / temperature, eye)
  if include_augs:
    loss = loss + _row_logsumexp(_gram(v, v) / temperature, eye)
  return jnp.mean(loss)


def _kernel(squared_distance, kernel: str, t: float):
  if kernel == 'gaussian':
    return jnp.exp(-t * squared_distance)
  if kernel == 'log':
    return -jnp.log1p(t * squared_distance)
  if kernel == 'imq':
    return t / jnp.sqrt(t * t + squared_distance)
  raise ConfigError(f'kcl kernel={kernel!r} is invalid: expected one of {KERNELS}.')


def _mean_pairwise_kernel(x, kernel: str, t: float):
  """mean_{i<j} k(x_i, x_j) for unit rows x (‖a − b‖² = 2 − 2a·b), = the mean over i ≠ j by symmetry."""
  n = x.shape[0]
  squared = jnp.maximum(2.0 - 2.0 * _gram(x, x), 0.0)
  values = jnp.where(jnp.eye(n, dtype=bool), 0.0, _kernel(squared, kernel, t))
  return jnp.sum(values) / (n * (n - 1))


def kcl(z1, z2, t: float = 2.0, gamma: float = 16.0, kernel: str = 'gaussian'):
  """Kernel contrastive loss: −2·alignment kernel + γ·(within-view pairwise kernel energies). Scalar."""
  if kernel not in KERNELS:
    raise ConfigError(f'kcl kernel={kernel!r} is invalid: expected one of {KERNELS}.')
  u, v, _ = _normalized_pair(z1, z2)
  alignment = jnp.mean(_kernel(jnp.sum((u - v) ** 2, axis=-1), kernel, t))
  energy_weight = 0.5 if kernel == 'log' else 1.0  # The authors' log_kernel carries −0.5; log_align does not.
  energy = _mean_pairwise_kernel(u, kernel, t) + _mean_pairwise_kernel(v, kernel, t)
  return -2.0 * alignment + gamma * energy_weight * energy


def checker(name: str):
  """The hyperparameter check of loss ``name`` (``config.method.<name>``), run by ``build_method``."""

  def check(temperature=None, t=None, kernel=None, **_):
    for key, value in (('temperature', temperature), ('t', t)):
      if value is not None and not value > 0:
        raise ConfigError(f'config.method.{name}.{key}={value!r} is invalid: expected positive.')
    if kernel is not None and kernel not in KERNELS:
      raise ConfigError(f'config.method.{name}.kernel={kernel!r} is invalid: expected one of {KERNELS}.')

  return check


def _adapter(loss):
  """The registry form of ``loss``: fn(predictions [B, 2, D], targets [B, 2, D], rng, **hp) -> (loss, aux)."""

  def fn(predictions, targets, rng=None, **hyperparameters):
    del rng  # The views' pairing is fixed.
    p1, p2 = predictions[:, 0], predictions[:, 1]
    z1, z2 = targets[:, 0], targets[:, 1]
    value = 0.5 * (loss(p1, z2, **hyperparameters) + loss(p2, z1, **hyperparameters))
    positive_cos = 0.5 * jnp.mean(cosine_similarity(p1, z2) + cosine_similarity(p2, z1))
    return value, {'contrastive/positive_cos': positive_cos}

  fn.__name__ = f'{loss.__name__}_loss'
  fn.__doc__ = f'½[{loss.__name__}(p₁, z₂) + {loss.__name__}(p₂, z₁)], no stop-gradient; aux: the mean positive cosine.'
  return fn


infonce_loss = _adapter(infonce)
dcl_loss = _adapter(dcl)
dhel_loss = _adapter(dhel)
kcl_loss = _adapter(kcl)
