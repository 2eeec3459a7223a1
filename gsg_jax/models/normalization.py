"""Batch normalisation with statistics computed per view.

A train step pushes the views of a batch through the network as an array of
``B * V`` rows laid out image-major: row ``b * V + v`` is view ``v`` of image
``b`` (all views in one pass, or a few at a time: ``models.train_pass``).
The reference implementations normalise each view over its own batch, so the
statistics here are taken per view:

    mean_v = 1/(B·S) Σ_{b,s} x[b, v, s]        var_v = 1/(B·S) Σ_{b,s} (x[b, v, s] − mean_v)²
    y[b, v, s] = γ · (x[b, v, s] − mean_v) / √(var_v + ε) + β

where ``s`` runs over spatial positions. With ``V = 1`` this is ordinary
BatchNorm. When the batch axis is sharded over a mesh, the reductions over
``b`` run over the *global* batch (XLA inserts the all-reduce), which gives
synchronised-BatchNorm semantics independent of the device count.

flax.linen.BatchNorm normalises over all rows at once and has no notion of
groups, hence this small module. The standardisation's backward pass is
written out (``standardize``: BatchNorm's usual formula), which XLA:CPU
compiles into a faster step than JAX's derivative of the forward pass.
Running statistics (used at evaluation) are the average of the per-view
statistics, updated with PyTorch's convention
``running = momentum · running + (1 − momentum) · batch`` (flax momentum 0.9
is PyTorch's 0.1); the variance kept is the biased one (PyTorch keeps the
unbiased one: a factor N/(N−1), negligible at the batch sizes used here).
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def standardize(x, axes: tuple[int, ...], epsilon: float):
  """(x̂, mean, var) of x over ``axes`` (kept as size-1 axes): x̂ = (x − mean)·r with r = 1/√(var + ε).

  The gradient is written out: for cotangents (g, g_mean, g_var) and n elements per statistic,

      ∂x = r·(g − ⟨g⟩ − x̂·⟨g·x̂⟩) + (g_mean + 2·g_var·(x − mean)) / n,

  with ⟨·⟩ the mean over ``axes``: BatchNorm's usual backward pass. It is evaluated from g and x alone, as

      ⟨g·x̂⟩ = r·(⟨g·x⟩ − mean·⟨g⟩),    ∂x = r·g + b·x + c,
      b = 2·g_var/n − r²·⟨g·x̂⟩,    c = g_mean/n − r·⟨g⟩ − b·mean,

  two reductions that read g and x and one elementwise pass. Why by hand, and why this form: JAX's derivative of the
  forward computation is the same function, but XLA:CPU compiled it into a slower train step
  (``benchmarks/results/throughput/ab_standardize_vjp.json``); and where the backward pass read x̂, XLA kept x̂ from
  the forward pass, written out twice per layer, and the form above is faster again
  (``ab_standardize_from_x.json``). Rounding: mean·⟨g⟩ cancels part of ⟨g·x⟩ when |mean| ≫ √var, as the forward
  pass's own x − mean does; ``tests/test_models.py`` compares both with float64.
  """
  return _standardize_fwd(x, axes, epsilon)[0]


def _standardize_fwd(x, axes, epsilon):
  mean = x.mean(axes, keepdims=True)
  var = jnp.square(x - mean).mean(axes, keepdims=True)
  rstd = jax.lax.rsqrt(var + epsilon)
  return ((x - mean) * rstd, mean, var), (x, mean, rstd)


def _standardize_bwd(axes, epsilon, res, cotangents):
  x, mean, rstd = res
  dxhat, dmean, dvar = cotangents
  n = x.size // mean.size
  g_mean = dxhat.mean(axes, keepdims=True)
  gxhat_mean = rstd * ((dxhat * x).mean(axes, keepdims=True) - mean * g_mean)
  b = 2.0 * dvar / n - rstd * rstd * gxhat_mean
  c = dmean / n - rstd * g_mean - b * mean
  return (rstd * dxhat + b * x + c,)


standardize.defvjp(_standardize_fwd, _standardize_bwd)


class ViewBatchNorm(nn.Module):
  """BatchNorm over rows grouped by view; see the module docstring."""

  num_views: int = 1
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Callable[..., Any] = nn.initializers.ones
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)

    x32 = x.astype(jnp.float32)
    if self.use_running_average:
      y = (x32 - running_mean.value) * jnp.reciprocal(jnp.sqrt(running_var.value + self.epsilon))
    else:
      v = self.num_views
      if x.shape[0] % v:
        raise ValueError(f'ViewBatchNorm: {x.shape[0]} rows are not a whole number of {v} views.')
      grouped = x32.reshape((x.shape[0] // v, v) + x.shape[1:])  # [B, V, ..., C]
      axes = (0,) + tuple(range(2, grouped.ndim - 1))
      y, mean, var = standardize(grouped, axes, self.epsilon)
      y = y.reshape(x.shape)
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * mean.reshape(-1, features).mean(0)
        running_var.value = m * running_var.value + (1 - m) * var.reshape(-1, features).mean(0)

    if self.use_scale:
      y = y * self.param('scale', self.scale_init, (features,), jnp.float32)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    return y.astype(self.dtype)
