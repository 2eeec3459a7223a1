r"""The one-layer SymReLU encoder of the landscape experiments, as a network for the train-step core.

Encoder (the authors' ``models/model_utils.py`` and ``models/sparse_contrastive_*.py``)
----------------------------------------------------------------------------------------
With pre-activation h and bias b ∈ R^m,

    SymReLU(h, b) = ReLU(h) − ReLU(2b − h),

applied to h = W x + b, it is ReLU(Wx + b) − ReLU(−Wx + b): a neuron fires
with the sign of ⟨w_j, x⟩ when |⟨w_j, x⟩| > −b_j. With BatchNorm (optional),
h = BN(W x + b) = BN(W x) in training mode (the bias cancels inside the batch
statistics, as in the authors' torch code, where it then only sets the
threshold 2b), BN with statistics per view (over the batch) and a learnt
scale and offset.
W: m×p (one row w_j per neuron; Flax's kernel is Wᵀ), b ~ U(−1/√p, 1/√p)
(torch's ``nn.Linear`` default, which the authors keep), W set by
``data.init_kernel`` (random N(0, 1/(p·d)) or the warm start).

Network call (``gsg_jax.training.step``)
----------------------------------------
``apply(variables, rows, train, num_views=V, with_predictor, mutable)``
returns ``{'features', 'projection', 'prediction'}`` with
features = projection = SymReLU output and prediction = predictor(projection)
(the predictor module comes from the predictor component: ``linear``,
``directpred``; ``none`` gives p = z). The parameters are split into the two
groups that the library's EMA target copies: ``backbone/tower_t`` (``kernel``
= Wᵀ [p, m]; with BatchNorm its ``scale``, ``offset`` and running ``mean``,
``var``) and ``projector/tower_t`` (``bias`` b, SymReLU's threshold); the
predictor (``predictor/linear``) stays outside.

Towers (the authors' separate online and target encoders)
---------------------------------------------------------
``towers = 2`` holds two independent encoders, A (``tower_0``) and B
(``tower_1``), and sends view v of every sample through tower v mod 2: with
two views x₁ → A, x₂ → B as the authors' ``Wo(x1)``, ``Wt(x2)``; with GSG's
four views a, c → A and b, d → B (one matmul per tower over its
views). Each tower has its own W, b and BatchNorm; the predictor is shared. With the ``online`` target and the
``negcos`` loss,

    L = ½ D(p₁, sg z₂) + ½ D(p₂, sg z₁),    z₁ = A(x₁), z₂ = B(x₂),

so A's gradient is ½∇_A D(Wₚ A x₁, sg B x₂), the authors' online step, and
B's is ½∇_B D(Wₚ B x₂, sg A x₁), their target step. Training A on even and B on
odd steps (``run.alternate_towers``) is their alternating optimisation. A
single view (evaluation, V = 1) goes through tower A, the online encoder,
whose W the recovery metric reads.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.errors import ConfigError


def sym_relu(h, b):
  """SymReLU(h, b) = ReLU(h) − ReLU(2b − h) (= ReLU(Wx + b) − ReLU(−Wx + b) for h = Wx + b)."""
  return jax.nn.relu(h) - jax.nn.relu(2.0 * b - h)


def _torch_bias_init(fan_in: int):
  bound = 1.0 / jnp.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class _Tower(nn.Module):
  """One tower's parameters: ``kernel`` [p, m] (= Wᵀ) and, with BatchNorm, its ``scale`` and ``offset``."""

  p: int
  m: int
  batch_norm: bool
  kernel_std: float

  @nn.compact
  def __call__(self):
    out = {'kernel': self.param('kernel', nn.initializers.normal(self.kernel_std), (self.p, self.m), jnp.float32)}
    if self.batch_norm:
      out['scale'] = self.param('scale', nn.initializers.ones, (self.m,), jnp.float32)
      out['offset'] = self.param('offset', nn.initializers.zeros, (self.m,), jnp.float32)
      out['mean'] = self.variable('batch_stats', 'mean', jnp.zeros, (self.m,), jnp.float32)
      out['var'] = self.variable('batch_stats', 'var', jnp.ones, (self.m,), jnp.float32)
    return out


class _Threshold(nn.Module):
  """One tower's SymReLU bias b [m], torch's ``nn.Linear`` bias init U(−1/√p, 1/√p)."""

  p: int
  m: int

  @nn.compact
  def __call__(self):
    return self.param('bias', _torch_bias_init(self.p), (self.m,), jnp.float32)


class _Group(nn.Module):
  """A named group (``backbone``, ``projector``) holding one parameter module per tower."""

  make: Any
  towers: int

  @nn.compact
  def __call__(self):
    return [self.make(name=f'tower_{t}')() for t in range(self.towers)]


class SymReLUNetwork(nn.Module):
  """One-layer SymReLU encoder(s) + optional predictor, with the step core's network call.

  Rows [B·V, p] are viewed as [B, V, p]; view v uses tower v mod T's kernel, bias and BatchNorm
  affine (statistics per view, over the batch). ``frozen_tower`` = t puts tower t's parameters under
  stop-gradient, so that autodiff emits no backward matmul for them (an alternating step's idle tower);
  ``guide`` adds ``out['guide']``: tower A applied to every view (stop-gradient), the image-based guide
  of GSG's two-encoder arms.
  """

  m: int
  towers: int = 1
  batch_norm: bool = False
  predictor: nn.Module | None = None
  kernel_std: float = 0.05  # Replaced by ``data.init_kernel`` in the experiments.
  momentum: float = 0.9  # Running BatchNorm statistics (PyTorch's 0.1), for evaluation mode only.
  epsilon: float = 1e-5
  frozen_tower: int = -1  # -1: every tower trains.
  guide: bool = False

  def _encode(self, xv, kernels, biases, affines, stats, views_of_tower, train):
    """SymReLU(BN(x W_t) or x W_t + b_t) per view, [B, V, m]; tower t takes views ``views_of_tower[t]``."""
    num_views = xv.shape[1]
    order = np.argsort(np.concatenate(views_of_tower))  # Back to view order after the per-tower blocks.
    h = jnp.concatenate([xv[:, v] @ k for v, k in zip(views_of_tower, kernels) if len(v)], axis=1)[:, order]
    tower = np.zeros(num_views, int)
    for t, v in enumerate(views_of_tower):
      tower[v] = t
    bias = jnp.stack(biases)[tower]
    if self.batch_norm:
      if train:
        mean, var = jnp.mean(h, 0), jnp.var(h, 0)  # [V, m]: per view.
      else:
        mean = jnp.stack([s['mean'].value for s in stats])[tower]
        var = jnp.stack([s['var'].value for s in stats])[tower]
      scale = jnp.stack([a[0] for a in affines])[tower]
      offset = jnp.stack([a[1] for a in affines])[tower]
      h = (h - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + offset
      return sym_relu(h, bias), (mean, var, tower)
    return sym_relu(h + bias, bias), None

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1, with_predictor: bool = True) -> dict[str, Any]:
    if self.towers not in (1, 2):
      raise ConfigError(f'towers={self.towers}: expected 1 or 2.')
    x = x.astype(jnp.float32)
    p, batch = x.shape[-1], x.shape[0] // num_views
    params = _Group(
      functools.partial(_Tower, p, self.m, self.batch_norm, self.kernel_std), self.towers, name='backbone'
    )()
    biases = _Group(functools.partial(_Threshold, p, self.m), self.towers, name='projector')()
    frozen = lambda t, a: jax.lax.stop_gradient(a) if t == self.frozen_tower else a
    kernels = [frozen(t, params[t]['kernel']) for t in range(self.towers)]
    bias = [frozen(t, b) for t, b in enumerate(biases)]
    affines = (
      [(frozen(t, s['scale']), frozen(t, s['offset'])) for t, s in enumerate(params)] if self.batch_norm else None
    )
    xv = x.reshape(batch, num_views, p)
    views = [np.arange(t, num_views, self.towers) for t in range(self.towers)]  # View v → tower v mod T.
    z, bn = self._encode(xv, kernels, bias, affines, params, views, train)
    if bn is not None and train and not self.is_initializing():
      mean, var, tower = bn
      for t, stats in enumerate(params):
        mask = tower == t
        if mask.any():
          stats['mean'].value = self.momentum * stats['mean'].value + (1 - self.momentum) * mean[mask].mean(0)
          stats['var'].value = self.momentum * stats['var'].value + (1 - self.momentum) * var[mask].mean(0)
    out = {'features': z.reshape(batch * num_views, self.m)}
    out['projection'] = out['features']
    if self.guide and self.towers == 2:
      every_view = [np.arange(num_views), np.arange(0)]
      g, _ = self._encode(xv, kernels, bias, affines, params, every_view, train)
      out['guide'] = jax.lax.stop_gradient(g.reshape(batch * num_views, self.m))
    if with_predictor:
      z = out['projection']
      out['prediction'] = z if self.predictor is None else self.predictor(z, train=train, num_views=num_views)
    return out


def encoder_matrix(params, tower: int = 0):
  """W [m, p] of a tower (rows = neurons), from the network's ``params``."""
  return params['backbone'][f'tower_{tower}']['kernel'].T
