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
groups, hence this small module. Running statistics (used at evaluation) are
the average of the per-view statistics, updated with PyTorch's convention
``running = momentum · running + (1 − momentum) · batch`` (flax momentum 0.9
is PyTorch's 0.1); the variance kept is the biased one (PyTorch keeps the
unbiased one: a factor N/(N−1), negligible at the batch sizes used here).
"""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp


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
      mean = grouped.mean(axes, keepdims=True)
      var = jnp.square(grouped - mean).mean(axes, keepdims=True)
      y = ((grouped - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))).reshape(x.shape)
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * mean.reshape(-1, features).mean(0)
        running_var.value = m * running_var.value + (1 - m) * var.reshape(-1, features).mean(0)

    if self.use_scale:
      y = y * self.param('scale', self.scale_init, (features,), jnp.float32)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    return y.astype(self.dtype)
