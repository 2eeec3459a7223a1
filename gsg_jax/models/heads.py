"""Projector and predictor MLPs (SimSiam / GSG reference layout), and their initialisation.

Projector (``num_layers`` = 3):  Linear-BN-ReLU, Linear-BN-ReLU, Linear, BN
without affine parameters; hidden and output width 2048 in the reference
(``num_layers`` = 2, SimSiam's CIFAR projector: Linear-BN-ReLU, Linear, BN;
``output_bn=False``: the last Linear has a bias and no BN, as BYOL's).
Predictor: Linear-BN-ReLU to a bottleneck (512), then Linear (with bias) back
to the projection width.

Linear layers followed by BN carry no bias (it would be cancelled by the BN).
Both heads normalise per view (see ``normalization``).

Initialisation (``init_scheme``, config key ``model.init``), for a Linear
with ``fan_in`` inputs:

* ``'torch'`` (the reference's: PyTorch's ``nn.Linear`` default,
  ``kaiming_uniform_(a=√5)``): weights and biases ~ U(−1/√fan_in, 1/√fan_in),
  std 1/√(3·fan_in).
* ``'flax'`` (``nn.Dense``'s default): weights ~ lecun_normal (truncated
  normal with std 1/√fan_in, √3 times PyTorch's), biases 0.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsg_jax.errors import ConfigError
from gsg_jax.models.normalization import ViewBatchNorm

INIT_SCHEMES = ('torch', 'flax')


def torch_linear_bias_init(fan_in: int):
  """PyTorch's ``nn.Linear`` bias initialiser, U(−1/√fan_in, 1/√fan_in).

  Flax calls a bias initialiser with the bias's shape only, which does not
  hold the layer's fan_in, so the bound is computed here from the fan_in the
  caller knows (the input width).
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def dense_initializers(scheme: str, fan_in: int) -> dict:
  """``kernel_init`` and ``bias_init`` for an ``nn.Dense`` with ``fan_in`` inputs under ``scheme``."""
  if scheme == 'flax':
    return {'kernel_init': nn.initializers.lecun_normal(), 'bias_init': nn.initializers.zeros}
  if scheme == 'torch':
    # U(−√(3s/fan_in), √(3s/fan_in)) with s = 1/3: PyTorch's bound 1/√fan_in.
    return {
      'kernel_init': nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
      'bias_init': torch_linear_bias_init(fan_in),
    }
  raise ConfigError(f'model.init={scheme!r} is invalid: expected one of {INIT_SCHEMES}.')


class Linear(nn.Module):
  """``nn.Dense`` initialised by ``init_scheme``, with the same parameters (``kernel``, ``bias``).

  The Dense shares this module's scope, so the parameter tree is the one an
  ``nn.Dense`` in its place would have.
  """

  features: int
  use_bias: bool = True
  init_scheme: str = 'torch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(
      self.features, use_bias=self.use_bias, dtype=self.dtype, **dense_initializers(self.init_scheme, x.shape[-1])
    )
    nn.share_scope(self, dense)
    return dense(x)


def _dense(features: int, x, scheme: str, dtype, use_bias: bool = True):
  """An ``nn.Dense`` (auto-named ``Dense_<i>`` in the calling compact module) for input ``x``."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, **dense_initializers(scheme, x.shape[-1]))


class Projector(nn.Module):
  hidden_dim: int = 2048
  output_dim: int = 2048
  num_layers: int = 3
  dtype: Any = jnp.float32
  output_bn: bool = True  # False: the last Linear has a bias and no BN follows (BYOL / DirectPred's code).
  init_scheme: str = 'torch'

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    for _ in range(self.num_layers - 1):
      x = nn.relu(norm()(_dense(self.hidden_dim, x, self.init_scheme, self.dtype, use_bias=False)(x)))
    x = _dense(self.output_dim, x, self.init_scheme, self.dtype, use_bias=not self.output_bn)(x)
    return norm(use_scale=False, use_bias=False)(x) if self.output_bn else x


class Predictor(nn.Module):
  hidden_dim: int = 512
  output_dim: int = 2048
  dtype: Any = jnp.float32
  init_scheme: str = 'torch'

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    x = nn.relu(norm()(_dense(self.hidden_dim, x, self.init_scheme, self.dtype, use_bias=False)(x)))
    return _dense(self.output_dim, x, self.init_scheme, self.dtype)(x)


class LinearPredictor(nn.Module):
  """A bias-free d×d linear predictor, p = W_p f (Tian et al.'s linear predictor; DirectPred sets W_p).

  The parameter is Flax's ``kernel`` = W_pᵀ (rows are inputs), so p = f @ kernel.
  """

  dim: int
  dtype: Any = jnp.float32
  init_scheme: str = 'torch'

  @nn.compact
  def __call__(self, x, *, train: bool = False, num_views: int = 1):
    del train, num_views  # No normalisation.
    return Linear(self.dim, use_bias=False, init_scheme=self.init_scheme, dtype=self.dtype, name='linear')(x)
