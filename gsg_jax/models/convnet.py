"""A small ConvNet that trains in minutes on a laptop CPU.

Four 3×3 conv-BN-ReLU layers with ``width, 2·width, 4·width, 8·width``
channels; the last three downsample by 2 with a stride-2 convolution; global
average pooling gives a ``8·width`` feature vector. At width 32 and 32×32
input it is about 100× cheaper than ResNet-18.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gsg_jax.models.normalization import ViewBatchNorm
from gsg_jax.models.resnet import conv_init


class ConvNet(nn.Module):
  width: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    x = x.astype(self.dtype)
    for i, strides in enumerate((1, 2, 2, 2)):
      x = nn.Conv(self.width * 2**i, (3, 3), strides, use_bias=False, kernel_init=conv_init, dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    return jnp.mean(x, axis=(1, 2))
