r"""The linear-network theory of Tian, Chen & Ganguli (ICML 2021): the equations and their closed forms.

This module holds what the paper derives (the vector fields, their fixed
points, rates and thresholds); ``simulation.py`` integrates the fields and
``figures.py`` sets the two against each other. Everything below is derived
here and checked by ``tests/test_linear_dynamics.py``.

Model and loss
--------------
An input x̄ with E[x̄x̄ᵀ] = X is augmented twice, x₁ = x̄ + e₁, x₂ = x̄ + e₂, with
independent zero-mean noise of covariance X'. Online network W (n2×n1),
linear predictor W_p (n2×n2), target network W_a (n2×n1), and

    L = ½ E‖W_p W x₁ − sg(W_a x₂)‖²
      = ½ tr(W_pW(X+X')WᵀW_pᵀ) − tr(W_pWXW_aᵀ) + ½ tr(W_a(X+X')W_aᵀ)

(E[x₁x₁ᵀ] = X + X', E[x₁x₂ᵀ] = X). Gradient flow with weight decay η, the
predictor's relative learning rate α_p and an EMA target of rate β gives the
paper's equations, with G = −W_pW(X+X') + W_aX:

    Ẇ_p = −α_p ∂L/∂W_p − ηW_p = α_p G Wᵀ − ηW_p
    Ẇ   = −∂L/∂W − ηW         = W_pᵀ G − ηW
    Ẇ_a = β(W − W_a)

``field`` takes the two gradients with ``jax.grad`` of ``expected_loss``; the
tests check them against these closed forms (``closed_form_field``).

Balancing. d/dt(α_p WWᵀ − W_pᵀW_p) = −2η(α_p WWᵀ − W_pᵀW_p) exactly (the G
terms cancel), so ‖WWᵀ − W_pᵀW_p/α_p‖ decays as e^{−2ηt} under weight decay.

No stop-gradient. The target is the online network itself (W_a ≡ W) and the
gradient flows through both branches:

    Ẇ = W_pᵀ(−W_pW(X+X') + WX) + (W_pWX − W(X+X')) − ηW,
    vec(Ẇ) = −(H + η) vec(W),   H = X' ⊗ (I + W_pᵀW_p) + X ⊗ (W_p − I)ᵀ(W_p − I)

(column-stacking vec). H ⪰ λ_min(X')·I, so ‖W(t)‖ ≤ ‖W(0)‖ e^{−(λ_min(X')+η)t}
whatever W_p does: collapse.

No predictor. The predictor is removed, i.e. W_p ≡ I (the online output is
compared with the target directly; the paper's linear model has no other
reading, since W_p = 0 would make the output zero). With X = I, X' = σ²I every
entry of (W, W_a) then obeys d/dt(w, w_a) = [[−(1+σ²+η), 1], [β, −β]](w, w_a),
whose trace is negative and determinant β(σ²+η) positive: W → 0 at the rate
of the larger eigenvalue, for any η ≥ 0 when σ² > 0.

Per-mode dynamics
-----------------
With X = I, X' = σ²I, W_a = τW, and W_p symmetric with the eigenbasis of
F = WXWᵀ (the paper's eigenspace alignment), each eigenpair (p_j of W_p, s_j
of F) follows

    ṗ = α_p s [τ − (1+σ²)p] − ηp,     ṡ = 2p s [τ − (1+σ²)p] − 2ηs.

Then d/dt(s − p²/α_p) = −2η(s − p²/α_p): the parabola s = p²/α_p is invariant,
and attracting when η > 0. Fixed points: with s ≠ 0, ṡ = 0 gives
p[τ − (1+σ²)p] = η and then ṗ = 0 gives s = p²/α_p, so

    (1+σ²)p² − τp + η = 0,   p*± = [τ ± √(τ² − 4η(1+σ²))] / (2(1+σ²)),

p*₊ stable, p*₋ a saddle; with s = 0 the only fixed point is the origin
(stable for η > 0; for η = 0 the whole axis s = 0 and the line
p = τ/(1+σ²) are fixed). On the parabola ṗ = −p[(1+σ²)p² − τp + η], so a mode
with p < p*₋ collapses (s → 0) and one with p > p*₋ goes to p*₊. Above
η = τ²/(4(1+σ²)) there are no roots and every mode collapses.

DirectPred
----------
W_p is not trained but set every step from a moving estimate of F = WXWᵀ,
F̂ ← ρF̂ + (1−ρ)F, by ``gsg_jax.methods.directpred.predictor_from_correlation``
(eigenvalues √(s_j/s_max) + ε). That rule divides by s_max, which is harmless
with the cosine loss of real training but not here: its top eigenvalue is
always 1 + ε > τ/(1+σ²) (for τ ≤ 1), so the top mode shrinks, the ratios s_j/s_max tend to
one and everything collapses (the ``directpred_normalized`` variant shows
it). The L2 model needs the scale the parabola gives, p_j = √s_j for α_p = 1,
so the ``directpred`` variant (``simulation.set_predictor``) uses
W_p = √s_max · predictor_from_correlation(F̂, ε), eigenvalues √s_j + ε√s_max. At its fixed point every mode has
p_j = p*₊, and the ε floor ε√s_max lifts weak modes above p*₋, so none
collapses (with ε = 0 the weak modes below p*₋ die as with a learned
predictor).

``simulation.py`` integrates everything with Euler steps (``dt``) in
``lax.scan``; sweeps are ``vmap``-ed.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ----------------------------------------------------------------------------- per mode


def mode_field(p, s, eta, tau=1.0, alpha_p=1.0, sigma2=0.5):
  """(ṗ, ṡ) of one eigenmode."""
  g = tau - (1.0 + sigma2) * p
  return alpha_p * s * g - eta * p, 2.0 * p * s * g - 2.0 * eta * s


def collapse_threshold(tau=1.0, sigma2=0.5):
  """η above which no mode survives: τ²/(4(1+σ²))."""
  return tau**2 / (4.0 * (1.0 + sigma2))


def fixed_points(eta, tau=1.0, sigma2=0.5):
  """(p*₋, p*₊), the roots of (1+σ²)p² − τp + η; NaN above the threshold."""
  disc = tau**2 - 4.0 * eta * (1.0 + sigma2)
  root = np.sqrt(disc) if disc >= 0 else np.nan
  return (tau - root) / (2 * (1 + sigma2)), (tau + root) / (2 * (1 + sigma2))


def stability(p, s, eta, tau=1.0, alpha_p=1.0, sigma2=0.5):
  """'stable', 'unstable' or 'marginal' from the Jacobian of the mode field at (p, s)."""
  jac = jax.jacfwd(lambda v: jnp.stack(mode_field(v[0], v[1], eta, tau, alpha_p, sigma2)))
  real = np.linalg.eigvals(np.asarray(jac(jnp.array([p, s], jnp.float32)))).real
  if np.any(real > 1e-6):
    return 'unstable'
  return 'stable' if np.all(real < -1e-6) else 'marginal'


def predicted_survival(p0, eta, tau=1.0, sigma2=0.5):
  """True where a mode starting on the parabola at p0 goes to p*₊ (False: collapses)."""
  p_minus, _ = fixed_points(eta, tau, sigma2)
  return np.isfinite(p_minus) & (np.asarray(p0) > p_minus)


# ----------------------------------------------------------------------------- matrices


def expected_loss(w_p, w, target, x, x_aug):
  """½ E‖W_p W x₁ − target x₂‖², expectations in closed form (E[x₁x₁ᵀ] = X + X', E[x₁x₂ᵀ] = X)."""
  a = w_p @ w
  return 0.5 * (
    jnp.trace(a @ (x + x_aug) @ a.T) - 2.0 * jnp.trace(a @ x @ target.T) + jnp.trace(target @ (x + x_aug) @ target.T)
  )


def field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta, stop_gradient=True):
  """(Ẇ, Ẇ_p, Ẇ_a) from jax.grad of ``expected_loss``.

  With stop-gradient the target is W_a, which gets no gradient; without, the target is W itself
  (W_a ignored, Ẇ_a = Ẇ keeps W_a = W) and the gradient flows through both branches.
  """

  def loss(w_p, w):
    target = lax.stop_gradient(w_a) if stop_gradient else w  # sg(W_a): W_a is not an argument anyway.
    return expected_loss(w_p, w, target, x, x_aug)

  g_p, g = jax.grad(loss, argnums=(0, 1))(w_p, w)
  dw = -g - eta * w
  return dw, -alpha_p * g_p - eta * w_p, (beta * (w - w_a) if stop_gradient else dw)


def closed_form_field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta):
  """The paper's equations (stop-gradient), written out."""
  g = -w_p @ w @ (x + x_aug) + w_a @ x
  return w_p.T @ g - eta * w, alpha_p * g @ w.T - eta * w_p, beta * (w - w_a)


def closed_form_no_stop_gradient(w, w_p, x, x_aug, eta):
  """Ẇ without stop-gradient (W_a ≡ W), derived in the module docstring."""
  return w_p.T @ (-w_p @ w @ (x + x_aug) + w @ x) + (w_p @ w @ x - w @ (x + x_aug)) - eta * w


def no_predictor_rate(eta, beta, sigma2=0.5):
  """Largest eigenvalue of [[−(1+σ²+η), 1], [β, −β]]: with W_p ≡ I, X = I, X' = σ²I, ‖W‖ ∝ e^{rate·t} at late t."""
  a = 1.0 + sigma2 + eta
  return 0.5 * (-(a + beta) + np.sqrt((a - beta) ** 2 + 4.0 * beta))
