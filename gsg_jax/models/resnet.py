"""ResNets: the CIFAR variant of ResNet-18 and the ImageNet ResNet-50.

* CIFAR variant (SimSiam's and the GSG reference's CIFAR backbone): 3×3
  stride-1 stem, no max-pool, so a 32×32 input reaches the last stage at 4×4.
* ImageNet variant: 7×7 stride-2 stem and a 3×3 stride-2 max-pool.
* ``width`` is the number of channels of the first stage (64 in the papers);
  stage ``i`` has ``width · 2^i``, times 4 at the output of bottlenecks.
* The last BatchNorm of every residual branch starts with scale 0 (Goyal et
  al. 2017), so each block starts as the identity.
* As torchvision's ResNet (the reference's backbone, built with
  ``zero_init_residual=True``): every convolution is initialised Kaiming
  normal, fan_out, N(0, 2/(k²·out_channels)); BatchNorm scale 1, offset 0;
  a k×k convolution is padded by k//2 on every side and the max-pool by 1
  (XLA's 'SAME' pads a stride-2 layer on the bottom/right only, which shifts
  the sampling grid by one pixel against PyTorch's).

The output is the globally average-pooled feature vector (512 for ResNet-18,
2048 for ResNet-50 at width 64): the representation that kNN and the linear
probe judge.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsg_jax.models.normalization import ViewBatchNorm

ModuleDef = Any
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')  # Kaiming normal, as torchvision.


def torch_conv(features: int, kernel_size, strides=1, **kwargs) -> nn.Conv:
  """A bias-free ``nn.Conv`` padded as PyTorch's ``Conv2d(padding=k // 2)``, Kaiming-initialised."""
  padding = [(k // 2, k // 2) for k in kernel_size]
  return nn.Conv(features, kernel_size, strides, padding=padding, use_bias=False, kernel_init=conv_init, **kwargs)


@jax.custom_jvp
def relu_add(residual, y):
  """relu(residual + y), the output of a residual block, computed as max(residual, −y) + y.

  The two are equal bit for bit: where residual > −y both round residual + y once, elsewhere both give +0; the
  derivative is relu's, (∂residual + ∂y)·[out > 0]. Why this form: XLA fuses the elementwise ops that produce a
  block's output into each of its consumers unless the last op reads more than one full-size array. With relu
  last, XLA:CPU recomputed each block output, and the residual chain behind it (up to three convolution outputs
  with their BatchNorms), inside the transposed copy that feeds the next weight gradient, reading three arrays with
  a 64 KiB stride: 3–16 times slower than a copy that reads one stored array. With the add last the output is
  stored once and every consumer reads it.
  """
  return jnp.maximum(residual, -y) + y


@relu_add.defjvp
def _relu_add_jvp(primals, tangents):
  out = relu_add(*primals)
  return out, jnp.where(out > 0, tangents[0] + tangents[1], jnp.zeros_like(out))


class BasicBlock(nn.Module):
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name='shortcut_conv')(residual)
      residual = self.norm(name='shortcut_norm')(residual)
    return relu_add(residual, y)


class Bottleneck(nn.Module):
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    residual = x
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name='shortcut_conv')(residual)
      residual = self.norm(name='shortcut_norm')(residual)
    return relu_add(residual, y)


class ResNet(nn.Module):
  """ResNet backbone. ``__call__(x, train, num_views) -> [N, features]``."""

  stage_sizes: Sequence[int]
  block: ModuleDef
  width: int = 64
  cifar_stem: bool = True
  remat: bool = False  # Recompute block activations in the backward pass: less memory, ~1/3 more compute.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1):
    conv = functools.partial(torch_conv, dtype=self.dtype)
    norm = functools.partial(ViewBatchNorm, use_running_average=not train, num_views=num_views, dtype=self.dtype)
    x = x.astype(self.dtype)
    if self.cifar_stem:
      x = conv(self.width, (3, 3), name='stem_conv')(x)
      x = nn.relu(norm(name='stem_norm')(x))
    else:
      x = conv(self.width, (7, 7), (2, 2), name='stem_conv')(x)
      x = nn.relu(norm(name='stem_norm')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block = nn.remat(self.block) if self.remat else self.block
    index = 0
    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        # Named explicitly so that remat (which renames the module class) keeps the parameter tree:
        # a checkpoint written without remat restores with it, and the other way round.
        x = block(self.width * 2**stage, strides, conv=conv, norm=norm, name=f'{self.block.__name__}_{index}')(x)
        index += 1
    return jnp.mean(x, axis=(1, 2))


def resnet18(**kwargs) -> ResNet:
  return ResNet((2, 2, 2, 2), BasicBlock, **kwargs)


def resnet50(**kwargs) -> ResNet:
  return ResNet((3, 4, 6, 3), Bottleneck, **kwargs)
