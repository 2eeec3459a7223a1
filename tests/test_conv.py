"""gsg_jax.models.conv: the strided convolution whose input gradient is computed by phases."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gsg_jax.models import conv

CASES = [  # (strides, kernel, padding, input size)
  ((2, 2), 3, ((1, 1), (1, 1)), 8),  # ResNet's stride-2 layers.
  ((2, 2), 3, 'SAME', 8),  # The ConvNet's: padded (0, 1).
  ((2, 2), 3, 'SAME', 7),  # An odd size.
  ((2, 2), 1, ((0, 0), (0, 0)), 8),  # ResNet's projection shortcuts: a kernel smaller than the stride.
  ((2, 2), 3, ((1, 1), (1, 1)), 7),
  ((3, 3), 3, ((1, 1), (1, 1)), 10),
  ((2, 2), 5, ((2, 2), (2, 2)), 9),
  ((2, 1), 3, ((1, 1), (1, 1)), 6),  # A stride on one axis only.
  ((2, 2), 7, ((3, 3), (3, 3)), 16),  # ImageNet ResNet's stem.
]


def plain(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=conv.DIMENSIONS)


def phased(x, w, strides, padding):
  return conv.conv_general_dilated(
    x, w, strides, padding, dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, conv.DIMENSIONS)
  )


@pytest.mark.parametrize('strides,kernel,padding,size', CASES)
def test_value_and_gradients_are_xlas(strides, kernel, padding, size):
  keys = jax.random.split(jax.random.key(size * kernel), 3)
  x = jax.random.normal(keys[0], (3, size, size, 4))
  w = jax.random.normal(keys[1], (kernel, kernel, 4, 5))
  want_y = plain(x, w, strides, padding)
  cotangent = jax.random.normal(keys[2], want_y.shape)
  got_y, got_vjp = jax.vjp(functools.partial(phased, strides=strides, padding=padding), x, w)
  _, want_vjp = jax.vjp(functools.partial(plain, strides=strides, padding=padding), x, w)
  np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-5)
  for got, want in zip(got_vjp(cotangent), want_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_cpu_gradient_has_no_dilated_convolution():
  """The point of the module: XLA's input gradient of a stride-2 layer convolves an output gradient dilated with
  zeros (lhs_dilate in the compiled program); the phase-split one does not."""
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 5))

  def program(fn):
    loss = lambda x, w: jnp.sum(jnp.sin(fn(x, w, (2, 2), ((1, 1), (1, 1)))))
    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()

  assert 'lhs_dilate' in program(plain)
  assert 'lhs_dilate' not in program(phased)


def test_other_convolutions_are_laxs_own():
  """Stride 1, dilation and groups take lax.conv_general_dilated's path: its jaxpr has no custom derivative."""
  x = jnp.ones((2, 8, 8, 4))
  dn = lax.conv_dimension_numbers(x.shape, (3, 3, 4, 4), conv.DIMENSIONS)

  def jaxpr(strides, w, **kwargs):
    fn = lambda x, w: conv.conv_general_dilated(x, w, strides, 'SAME', dimension_numbers=dn, **kwargs)
    return str(jax.make_jaxpr(fn)(x, w))

  assert 'custom_vjp' not in jaxpr((1, 1), jnp.ones((3, 3, 4, 4)))
  assert 'custom_vjp' not in jaxpr((2, 2), jnp.ones((3, 3, 4, 4)), rhs_dilation=(2, 2))
  assert 'custom_vjp' not in jaxpr((2, 2), jnp.ones((3, 3, 2, 4)), feature_group_count=2)
  assert 'custom_vjp' in jaxpr((2, 2), jnp.ones((3, 3, 4, 4)))


def test_flax_conv_takes_it():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  layer = lambda **kw: nn.Conv(6, (3, 3), 2, use_bias=False, **kw)
  variables = layer().init(jax.random.key(1), x)
  loss = lambda make: lambda v, x: jnp.sum(jnp.square(make().apply(v, x)))
  want = jax.grad(loss(layer), argnums=(0, 1))(variables, x)
  got = jax.grad(loss(functools.partial(layer, conv_general_dilated=conv.conv_general_dilated)), argnums=(0, 1))(
    variables, x
  )
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)
