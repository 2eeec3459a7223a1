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
four views a, c → A and b, d → B (one batched matmul with a kernel per
view). Each tower has its own W, b and BatchNorm; the predictor is shared. With the ``online`` target and the
``negcos`` loss,

    L = ½ D(p₁, sg z₂) + ½ D(p₂, sg z₁),    z₁ = A(x₁), z₂ = B(x₂),

so A's gradient is ½∇_A D(Wₚ A x₁, sg B x₂), the authors' online step, and
B's is ½∇_B D(Wₚ B x₂, sg A x₁), their target step. Training A on even and B on
odd steps (``run.alternate_towers``) is their alternating optimisation. A
single view (evaluation, V = 1) goes through tower A, the online encoder,
whose W the recovery metric reads.
"""

import functools
from typing import Any, Optional

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
  affine (statistics per view, over the batch), so all views go through one batched matmul.
  """

  m: int
  towers: int = 1
  batch_norm: bool = False
  predictor: Optional[nn.Module] = None
  kernel_std: float = 0.05  # Replaced by ``data.init_kernel`` in the experiments.
  momentum: float = 0.9  # Running BatchNorm statistics (PyTorch's 0.1), for evaluation mode only.
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, *, train: bool, num_views: int = 1, with_predictor: bool = True) -> dict[str, Any]:
    if self.towers not in (1, 2):
      raise ConfigError(f'towers={self.towers}: expected 1 or 2.')
    x = x.astype(jnp.float32)
    p, batch = x.shape[-1], x.shape[0] // num_views
    tower = np.arange(num_views) % self.towers  # Tower of each view (static).
    params = _Group(
      functools.partial(_Tower, p, self.m, self.batch_norm, self.kernel_std), self.towers, name='backbone'
    )()
    bias = jnp.stack(_Group(functools.partial(_Threshold, p, self.m), self.towers, name='projector')())[tower]
    pick = lambda key: jnp.stack([t[key] for t in params])[tower]  # [V, ...]
    xv = x.reshape(batch, num_views, p)
    if self.towers == 1:
      h = xv @ params[0]['kernel']
    else:
      h = jnp.einsum('bvp,vpm->bvm', xv, pick('kernel'))
    if self.batch_norm:
      if train:
        mean, var = jnp.mean(h, 0), jnp.var(h, 0)  # [V, m]: per view.
        if not self.is_initializing():
          for t, stats in enumerate(params):
            views = tower == t
            if views.any():
              stats['mean'].value = self.momentum * stats['mean'].value + (1 - self.momentum) * mean[views].mean(0)
              stats['var'].value = self.momentum * stats['var'].value + (1 - self.momentum) * var[views].mean(0)
      else:
        mean = jnp.stack([t['mean'].value for t in params])[tower]
        var = jnp.stack([t['var'].value for t in params])[tower]
      h = (h - mean) * jax.lax.rsqrt(var + self.epsilon) * pick('scale') + pick('offset')
    else:
      h = h + bias
    z = sym_relu(h, bias).reshape(batch * num_views, self.m)
    out = {'features': z, 'projection': z}
    if with_predictor:
      out['prediction'] = z if self.predictor is None else self.predictor(z, train=train, num_views=num_views)
    return out


def encoder_matrix(params, tower: int = 0):
  """W [m, p] of a tower (rows = neurons), from the network's ``params``."""
  return params['backbone'][f'tower_{tower}']['kernel'].T
