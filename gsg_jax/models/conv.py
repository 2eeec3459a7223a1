"""A strided convolution whose input gradient is computed by phases: ``lax.conv_general_dilated`` for ``nn.Conv``.

The input gradient of a convolution with stride s is the transposed convolution of the output gradient dy. XLA
writes it as a convolution of dy dilated by s (s − 1 zeros between its pixels), and XLA:CPU's kernel runs that
convolution over the zeros: at stride 2 it does 4× the useful work, and took 2.5–3.5× PyTorch's time on this
project's stride-2 layers (``benchmarks/results/throughput/layer_peer.json``). Split by phase instead: an input
pixel at padded position t = s·m + q (q = t mod s) receives only the kernel taps k ≡ q (mod s),

    ∂x[t − lo] = z_q[m] = Σ_j dy[m − j] · wᵀ[q + s·j],

so each phase q (one per spatial axis, s² in 2-D) is an ordinary stride-1 convolution of dy with its taps of w,
reversed, in and out channels swapped; the s² results interleave into ∂x. Together they do exactly the useful
multiply-adds. The forward pass and the weight gradient stay XLA's.

On other platforms (GPU, TPU) the input gradient stays XLA's own (``lax.platform_dependent``): their libraries
have native transposed convolutions. Only NHWC/HWIO convolutions with a stride above 1 and no dilation or groups,
Flax's defaults, take this path; everything else is ``lax.conv_general_dilated`` itself. A custom VJP has no
forward-mode derivative: ``jax.jvp`` through a strided layer raises (nothing in the project uses it).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """``lax.conv_general_dilated``, with the phase-split input gradient for strided NHWC convolutions."""
  plain = functools.partial(
    lax.conv_general_dilated,
    window_strides=window_strides,
    padding=padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  strides = tuple(window_strides)
  simple = (
    lhs.ndim == 4
    and max(strides) > 1
    and all(d == 1 for d in (lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1)))
    and feature_group_count == 1
    and batch_group_count == 1
    and preferred_element_type is None
    and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  )
  if not simple:
    return plain(lhs, rhs)
  pads = padding
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  return _strided(lhs, rhs, strides, tuple(tuple(p) for p in pads), precision)


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  wanted = lax.conv_dimension_numbers(lhs_shape, rhs_shape, DIMENSIONS)
  given = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return given == wanted


def _conv(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=DIMENSIONS, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided(x, w, strides, pads, precision):
  return _conv(x, w, strides, pads, precision)


def _strided_fwd(x, w, strides, pads, precision):
  return _conv(x, w, strides, pads, precision), (x, w)


def _strided_bwd(strides, pads, precision, residuals, dy):
  x, w = residuals
  conv = functools.partial(_conv, strides=strides, pads=pads, precision=precision)
  dw = jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]
  xla_dx = lambda dy, w: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]
  phase_dx = functools.partial(input_gradient_by_phases, x_shape=x.shape, strides=strides, pads=pads)
  dx = lax.platform_dependent(dy, w, cpu=functools.partial(phase_dx, precision=precision), default=xla_dx)
  return dx, dw


_strided.defvjp(_strided_fwd, _strided_bwd)


def input_gradient_by_phases(dy, w, *, x_shape, strides, pads, precision=None):
  """∂x of the NHWC/HWIO convolution of an input of ``x_shape`` with ``w`` at ``strides`` and ``pads``, given its
  output gradient ``dy``, phase by phase (the module docstring)."""
  batch, height, width, c_in = x_shape
  (s_h, s_w), ((lo_h, _), (lo_w, _)) = strides, pads
  k_h, k_w = w.shape[:2]
  # Phases m cover the padded positions lo .. lo + size − 1 of the input.
  m_h, m_w = (lo_h + height - 1) // s_h + 1, (lo_w + width - 1) // s_w + 1
  dy = dy[:, :m_h, :m_w]  # Output rows past m read only the high padding.
  rows = []
  for q_h in range(s_h):
    row = []
    for q_w in range(s_w):
      taps = w[q_h::s_h, q_w::s_w]  # [J_h, J_w, in, out]: the taps k ≡ q.
      j_h, j_w = taps.shape[:2]
      if j_h == 0 or j_w == 0:  # A kernel smaller than the stride: this phase gets nothing.
        row.append(jnp.zeros((batch, m_h, m_w, c_in), dy.dtype))
        continue
      kernel = jnp.swapaxes(taps[::-1, ::-1], 2, 3)  # Reversed taps; in and out channels swapped.
      padded = jnp.pad(dy, ((0, 0), (j_h - 1, m_h - dy.shape[1]), (j_w - 1, m_w - dy.shape[2]), (0, 0)))
      row.append(lax.conv_general_dilated(padded, kernel, (1, 1), 'VALID', dimension_numbers=DIMENSIONS,
                                          precision=precision))  # fmt: skip
    rows.append(jnp.stack(row, axis=3))  # [B, m_h, m_w, s_w, C]
  grid = jnp.stack(rows, axis=2)  # [B, m_h, s_h, m_w, s_w, C]
  full = grid.reshape(batch, m_h * s_h, m_w * s_w, c_in)
  return full[:, lo_h : lo_h + height, lo_w : lo_w + width]
