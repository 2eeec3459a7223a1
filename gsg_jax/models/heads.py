"""Projector and predictor MLPs (SimSiam / GSG reference layout).

Projector (``num_layers`` = 3):  Linear-BN-ReLU, Linear-BN-ReLU, Linear, BN
without affine parameters; hidden and output width 2048 in the reference
(``output_bn=False``: the last Linear has a bias and no BN, as BYOL's).
Predictor: Linear-BN-ReLU to a bottleneck (512), then Linear (with bias) back
to the projection width.

Linear layers followed by BN carry no bias (it would be cancelled by the BN).
Both heads normalise per view (see ``normalization``).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gsg_jax.models.normalization import ViewBatchNorm


class Projector(nn.Module):
  hidden_dim: int = 2048
  output_dim: int = 2048
  num_layers: int = 3
  dtype: Any = jnp.float32
  output_bn: bool = True  # False: the last Linear has a bias and no BN follows (BYOL / DirectPred's code).

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    for _ in range(self.num_layers - 1):
      x = nn.relu(norm()(nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype)(x)))
    x = nn.Dense(self.output_dim, use_bias=not self.output_bn, dtype=self.dtype)(x)
    return norm(use_scale=False, use_bias=False)(x) if self.output_bn else x


class Predictor(nn.Module):
  hidden_dim: int = 512
  output_dim: int = 2048
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    x = nn.relu(norm()(nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype)(x)))
    return nn.Dense(self.output_dim, dtype=self.dtype)(x)


class LinearPredictor(nn.Module):
  """A bias-free d×d linear predictor, p = W_p f (Tian et al.'s linear predictor; DirectPred sets W_p).

  The parameter is Flax's ``kernel`` = W_pᵀ (rows are inputs), so p = f @ kernel.
  """
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, num_views: int = 1):
    del train, num_views  # No normalisation.
    return nn.Dense(self.dim, use_bias=False, dtype=self.dtype, name='linear')(x)
