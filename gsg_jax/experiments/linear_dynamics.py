r"""The linear-network theory of Tian, Chen & Ganguli (ICML 2021), simulated.

``python -m gsg_jax.experiments.linear_dynamics --out=DIR [--quick] [--config.KEY=VALUE ...]``
writes phase_portraits.png, collapse_threshold.png, matrix_dynamics.png,
directpred.png and results.json (the numbers behind every figure) to DIR.

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
so the ``directpred`` variant uses W_p = √s_max · predictor_from_correlation(F̂, ε),
eigenvalues √s_j + ε√s_max. At its fixed point every mode has
p_j = p*₊, and the ε floor ε√s_max lifts weak modes above p*₋, so none
collapses (with ε = 0 the weak modes below p*₋ die as with a learned
predictor).

Everything integrates with Euler steps (``dt``) in ``lax.scan``; sweeps are
``vmap``-ed.
"""

import functools
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from gsg_jax import storage
from gsg_jax.experiments import jsonable
from gsg_jax.methods.directpred import predictor_from_correlation

PREDICTORS = ('learned', 'identity', 'directpred', 'directpred_normalized')


def get_config(preset=None):
  """Defaults; ``preset='quick'`` shortens every run (a smoke test, under ~30 s)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tau = 1.0  # Paper: W_a = τW, τ → 1 once the EMA has caught up with W.
  c.alpha_p = 1.0  # Predictor's relative learning rate; 1 = same as W.
  c.sigma2 = 0.5  # X' = σ²I: augmentation weaker than the signal (X = I); puts the collapse
  # threshold τ²/(4(1+σ²)) = 1/6 between η = 0.01 (survives) and η = 1 (collapses).
  c.dt = 0.01  # Euler step.

  # Per-mode (p, s) dynamics.
  c.phase_etas = (0.0, 0.01, 1.0)  # One phase portrait each: no decay, weak decay, above threshold.
  c.threshold_etas = tuple(np.round(np.arange(0.0, 0.3001, 0.0125), 4).tolist())  # η grid across 1/6.
  c.num_p0 = 41  # Initial points on the parabola, p0 ∈ p0_range.
  c.p0_range = (-0.5, 1.5)  # Covers both sides of p*₋ and p*₊ for every η.
  c.mode_time = 200.0  # Long enough for the slowest η < threshold (rate p*₊√disc ≥ 0.06) to settle.

  # Matrix dynamics (linear BYOL).
  c.n1 = 10  # Input dimension (small, for a quick simulation).
  c.n2 = 10  # Output dimension.
  c.init_scale = 0.3  # Entries ~ N(0, init_scale²/n): W_p's eigenvalues fill a disc of radius ≈ 0.3, so some
  # modes start below p*₋ (Re p < 0: 2 of 10 at seed 0) and collapse.
  c.beta = 0.4  # EMA rate.
  c.eta = 0.04  # Weight decay of the main run, the variants and DirectPred.
  c.weight_decays = (0.0, 0.01, 0.04, 0.1, 0.2)  # Sweep across the threshold 1/6.
  c.betas = (0.1, 0.4, 1.0, 4.0)  # EMA sweep, slow to fast (β = ∞ would be W_a = W).
  c.matrix_time = 200.0  # e^{−2·0.04·200} ≈ 1e-7: balancing settles for η = 0.04.
  c.record_every = 100  # Euler steps between recorded metrics.

  # DirectPred: the paper's ρ = 0.3, ε = 0.1 (as gsg_jax.methods.directpred).
  c.rho = 0.3
  c.eps = 0.1
  c.directpred_time = 400.0  # Weak modes grow slowly (rate ≈ 2[p(τ − (1+σ²)p) − η] with p ≈ ε√s_max).
  c.directpred_s0_range = (1e-4, 0.3)  # F's initial eigenvalues (log-spaced); p*₋² = 1.8e-3 at η = 0.04
  # falls between two of them, 0.1 decade from the nearest.

  if preset == 'quick':
    c.threshold_etas = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
    c.num_p0 = 21
    c.mode_time = 100.0
    c.weight_decays = (0.0, 0.04, 0.2)
    c.betas = (0.1, 0.4, 4.0)
    c.matrix_time = 100.0
    c.directpred_time = 150.0
  elif preset is not None:
    raise ValueError(f'unknown preset {preset!r}: expected quick or none.')
  return c


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


def _integrate(step, state, steps, record_every, observe):
  """Euler-steps ``state`` ``steps`` times; returns (final state, observe(state) at t = 0, k·record_every·dt, ...)."""

  def chunk(state, _):
    state = lax.fori_loop(0, record_every, lambda _, st: step(st), state)
    return state, observe(state)

  state_out, records = lax.scan(chunk, state, None, length=steps // record_every)
  first = observe(state)
  return state_out, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, records)


@functools.partial(jax.jit, static_argnames=('steps', 'record_every'))
def simulate_modes(p0, s0, eta, tau, alpha_p, sigma2, dt, steps, record_every):
  """Euler-integrate broadcast arrays of modes; returns trajectories (p, s), each [records, ...]."""
  p0, s0, eta = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float32) for a in (p0, s0, eta)))

  def step(state):
    p, s = state
    dp, ds = mode_field(p, s, eta, tau, alpha_p, sigma2)
    return p + dt * dp, s + dt * ds

  return _integrate(step, (p0, s0), steps, record_every, lambda st: st)[1]


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


def matrix_metrics(w, w_p, x, alpha_p):
  """Alignment ‖[F, W_p]‖/(‖F‖‖W_p‖), balancing ‖WWᵀ − W_pᵀW_p/α_p‖, ‖W‖, and F's eigenvalues (ascending)."""
  f = w @ x @ w.T
  tiny = jnp.finfo(jnp.float32).tiny
  norm = jnp.linalg.norm
  return {
    'alignment': norm(f @ w_p - w_p @ f) / jnp.maximum(norm(f) * norm(w_p), tiny),
    'balancing': norm(w @ w.T - w_p.T @ w_p / alpha_p),
    'w_norm': norm(w),
    'f_eigenvalues': jnp.linalg.eigvalsh(0.5 * (f + f.T)),
  }


def _set_predictor(f_hat, predictor, eps):
  """W_p from F̂ (see the module docstring): the repo's rule, rescaled by √s_max for 'directpred'."""
  w_p = predictor_from_correlation(f_hat, eps)
  if predictor == 'directpred':
    w_p = w_p * jnp.sqrt(jnp.maximum(jnp.max(jnp.linalg.eigvalsh(0.5 * (f_hat + f_hat.T))), 0.0))
  return w_p


@functools.partial(jax.jit, static_argnames=('steps', 'record_every', 'predictor', 'stop_gradient'))
def simulate_matrix(
  w0,
  w_p0,
  x,
  x_aug,
  eta,
  alpha_p,
  beta,
  dt,
  steps,
  record_every,
  predictor='learned',
  stop_gradient=True,
  rho=0.3,
  eps=0.1,
):
  """Euler-integrate linear BYOL from (W0, W_p0), W_a = W0; returns (final (W, W_p, W_a), metric records).

  ``predictor``: 'learned' (the Ẇ_p equation), 'identity' (W_p ≡ I), 'directpred' or
  'directpred_normalized' (W_p set each step from F̂ ← ρF̂ + (1−ρ)WXWᵀ, F̂₀ = W0XW0ᵀ).
  """
  if predictor not in PREDICTORS:
    raise ValueError(f'unknown predictor {predictor!r}: expected one of {PREDICTORS}.')
  direct = predictor.startswith('directpred')
  f_hat0 = w0 @ x @ w0.T
  if predictor == 'identity':
    w_p0 = jnp.eye(w0.shape[0], dtype=w0.dtype)
  elif direct:
    w_p0 = _set_predictor(f_hat0, predictor, eps)

  def step(state):
    w, w_p, w_a, f_hat = state
    if direct:
      f_hat = rho * f_hat + (1.0 - rho) * (w @ x @ w.T)
      w_p = _set_predictor(f_hat, predictor, eps)
    dw, dw_p, dw_a = field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta, stop_gradient)
    if predictor == 'learned':
      w_p = w_p + dt * dw_p
    return w + dt * dw, w_p, w_a + dt * dw_a, f_hat

  state, records = _integrate(
    step, (w0, w_p0, w0, f_hat0), steps, record_every, lambda st: matrix_metrics(st[0], st[1], x, alpha_p)
  )
  return state[:3], records


def init_weights(seed, n1, n2, scale):
  """W0 [n2, n1] and W_p0 [n2, n2] with N(0, scale²/fan_in) entries."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return (scale / np.sqrt(n1) * jax.random.normal(k1, (n2, n1)), scale / np.sqrt(n2) * jax.random.normal(k2, (n2, n2)))


def graded_init(seed, n1, n2, s0, alpha_p=1.0):
  """W0 = U diag(√s0) Vᵀ (F = W0W0ᵀ has eigenvalues s0, n2 ≤ n1 of them) and W_p0 = U diag(√(α_p s0)) Uᵀ:
  every mode starts aligned and on its parabola, so the per-mode theory applies mode by mode."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  u = jnp.linalg.qr(jax.random.normal(k1, (n2, n2)))[0]
  v = jnp.linalg.qr(jax.random.normal(k2, (n1, n1)))[0][:, :n2]
  root = jnp.sqrt(jnp.asarray(s0, jnp.float32))
  return (u * root) @ v.T, (u * (np.sqrt(alpha_p) * root)) @ u.T


def isotropic_inputs(cfg):
  """X = I, X' = σ²I."""
  return jnp.eye(cfg.n1), cfg.sigma2 * jnp.eye(cfg.n1)


def run_matrix(cfg, etas, betas, time_, predictor='learned', stop_gradient=True, eps=None, init=None):
  """``simulate_matrix`` vmapped over paired (η, β) from ``init`` (default: ``init_weights`` of the config).

  Returns (final (W, W_p, W_a), records) as numpy, each with a leading sweep axis.
  """
  w0, w_p0 = init_weights(cfg.seed, cfg.n1, cfg.n2, cfg.init_scale) if init is None else init
  x, x_aug = isotropic_inputs(cfg)
  steps = int(round(time_ / cfg.dt)) // cfg.record_every * cfg.record_every
  sim = functools.partial(
    simulate_matrix, steps=steps, record_every=cfg.record_every, predictor=predictor, stop_gradient=stop_gradient
  )
  out = jax.vmap(
    lambda eta, beta: sim(
      w0, w_p0, x, x_aug, eta, cfg.alpha_p, beta, cfg.dt, rho=cfg.rho, eps=cfg.eps if eps is None else eps
    )
  )(jnp.asarray(etas, jnp.float32), jnp.asarray(betas, jnp.float32))
  return jax.tree.map(np.asarray, out)


def no_predictor_rate(eta, beta, sigma2=0.5):
  """Largest eigenvalue of [[−(1+σ²+η), 1], [β, −β]]: with W_p ≡ I, X = I, X' = σ²I, ‖W‖ ∝ e^{rate·t} at late t."""
  a = 1.0 + sigma2 + eta
  return 0.5 * (-(a + beta) + np.sqrt((a - beta) ** 2 + 4.0 * beta))


def surviving_modes(f_eigenvalues, floor=1e-3):
  """Number of eigenvalues of F above ``floor`` (a collapsed mode decays to 0)."""
  return int(np.sum(np.asarray(f_eigenvalues) > floor))


# ----------------------------------------------------------------------------- experiments


def _mode_args(cfg):
  return dict(tau=cfg.tau, alpha_p=cfg.alpha_p, sigma2=cfg.sigma2, dt=cfg.dt)


def _mode_steps(time_, cfg, record_every):
  return int(round(time_ / cfg.dt)) // record_every * record_every


def _mark_fixed_points(ax, eta, cfg):
  """Draws the fixed points of the mode field on ``ax`` (filled: stable, open: unstable); returns them."""
  if eta == 0:  # Not isolated: the axis s = 0 and the line p = τ/(1+σ²).
    p_line = cfg.tau / (1 + cfg.sigma2)
    ax.plot([-0.6, 0], [0, 0], 'k-', lw=5, label='stable fixed points', clip_on=False)
    ax.plot([p_line, 1.4], [0, 0], 'k-', lw=5, clip_on=False)
    ax.plot([0, p_line], [0, 0], 'k:', lw=3, label='unstable fixed points', clip_on=False)
    ax.axvline(p_line, color='k', lw=2, alpha=0.5, label=r'fixed line $p=\tau/(1+\sigma^2)$ (marginal)')
    return [
      {'p': 'any', 's': 0.0, 'kind': 'stable for p < 0 or p > τ/(1+σ²), unstable between'},
      {'p': p_line, 's': 'any', 'kind': stability(p_line, 0.5, eta, cfg.tau, cfg.alpha_p, cfg.sigma2)},
    ]
  points = []
  for p, s in [(0.0, 0.0)] + [
    (p, p**2 / cfg.alpha_p) for p in fixed_points(eta, cfg.tau, cfg.sigma2) if np.isfinite(p)
  ]:
    kind = stability(p, s, eta, cfg.tau, cfg.alpha_p, cfg.sigma2)
    points.append({'p': p, 's': s, 'kind': kind})
    ax.plot(p, s, 'o', ms=9, mec='k', mew=1.5, mfc='k' if kind == 'stable' else 'w', zorder=5, clip_on=False)
  ax.plot([], [], 'o', mfc='k', mec='k', label='stable fixed point')
  ax.plot([], [], 'o', mfc='w', mec='k', label='unstable fixed point')
  return points


def phase_portraits(cfg, out):
  """Streamlines, fixed points, the invariant parabola and a few trajectories for each η in ``phase_etas``."""
  import matplotlib.pyplot as plt

  etas = list(cfg.phase_etas)
  p_grid, s_grid = np.meshgrid(np.linspace(-0.6, 1.4, 60), np.linspace(0.0, 1.4, 60))
  starts = np.array([[-0.5, 1.0], [0.15, 1.3], [1.3, 0.25], [0.35, 0.03], [-0.3, 0.02]])  # Off the parabola.
  record_every = 20
  fig, axes = plt.subplots(1, len(etas), figsize=(5.4 * len(etas), 4.8), squeeze=False)
  results = []
  for ax, eta in zip(axes[0], etas):
    dp, ds = (np.asarray(v) for v in mode_field(p_grid, s_grid, eta, cfg.tau, cfg.alpha_p, cfg.sigma2))
    ax.streamplot(p_grid, s_grid, dp, ds, density=1.0, color='0.6', linewidth=0.6, arrowsize=0.7)
    pp = np.linspace(-0.6, 1.4, 200)
    ax.plot(pp, pp**2 / cfg.alpha_p, 'C3--', lw=1.8, label=r'invariant parabola $s=p^2/\alpha_p$')
    traj_p, traj_s = simulate_modes(
      starts[:, 0],
      starts[:, 1],
      eta,
      steps=_mode_steps(cfg.mode_time, cfg, record_every),
      record_every=record_every,
      **_mode_args(cfg),
    )
    for j in range(len(starts)):
      ax.plot(
        np.asarray(traj_p[:, j]),
        np.asarray(traj_s[:, j]),
        'C0',
        lw=1.4,
        label=f'trajectories, t ≤ {cfg.mode_time:g}' if j == 0 else None,
      )
      ax.plot(*starts[j], 'C0s', ms=4)
    points = _mark_fixed_points(ax, eta, cfg)
    p_minus, _ = fixed_points(eta, cfg.tau, cfg.sigma2)
    if eta > 0 and np.isfinite(p_minus) and p_minus < 0.1:  # p*₋ sits next to the origin: zoom in.
      inset = ax.inset_axes([0.62, 0.62, 0.35, 0.33])
      inset.set_in_layout(False)
      lim = 2.5 * p_minus
      zp, zs = np.meshgrid(np.linspace(-lim, lim, 30), np.linspace(0, lim**2, 30))
      zdp, zds = (np.asarray(v) for v in mode_field(zp, zs, eta, cfg.tau, cfg.alpha_p, cfg.sigma2))
      inset.streamplot(zp, zs, zdp, zds, density=0.6, color='0.6', linewidth=0.5, arrowsize=0.5)
      inset.plot(zp[0], zp[0] ** 2 / cfg.alpha_p, 'C3--', lw=1.2)
      _mark_fixed_points(inset, eta, cfg)
      inset.set(xlim=(-lim, lim), ylim=(0, lim**2))
      inset.set_title(rf'zoom: $p^*_-$ = {p_minus:.4f}', fontsize=7)
      inset.tick_params(labelsize=6)
      inset.locator_params(nbins=3)
    title = rf'$\eta$ = {eta}' + (
      ' (above the collapse threshold)' if eta > collapse_threshold(cfg.tau, cfg.sigma2) else ''
    )
    ax.set(xlim=(-0.6, 1.4), ylim=(0, 1.4), xlabel='p (eigenvalue of $W_p$)', ylabel='s (eigenvalue of F)', title=title)
    ax.legend(loc='upper left', fontsize=7, framealpha=0.9)
    results.append({'eta': eta, 'fixed_points': points})
  fig.suptitle(rf'Per-mode dynamics, $\tau$={cfg.tau}, $\alpha_p$={cfg.alpha_p}, $\sigma^2$={cfg.sigma2}')
  fig.tight_layout()
  storage.save_figure(fig, storage.join(out, 'phase_portraits.png'), dpi=110)
  plt.close(fig)
  return results


def collapse_sweep(cfg):
  """Final (p, s) of modes started on the parabola at ``num_p0`` points, for every η in ``threshold_etas``."""
  etas = np.asarray(cfg.threshold_etas, np.float64)
  p0 = np.linspace(*cfg.p0_range, cfg.num_p0)
  steps = _mode_steps(cfg.mode_time, cfg, 1000)
  traj_p, traj_s = simulate_modes(
    p0[None, :], (p0**2 / cfg.alpha_p)[None, :], etas[:, None], steps=steps, record_every=1000, **_mode_args(cfg)
  )
  return etas, p0, np.asarray(traj_p[-1]), np.asarray(traj_s[-1])


def collapse_threshold_figure(cfg, out, floor=1e-3):
  """Simulated end points against p*± and the threshold τ²/(4(1+σ²))."""
  import matplotlib.pyplot as plt

  etas, p0, p_end, s_end = collapse_sweep(cfg)
  threshold = collapse_threshold(cfg.tau, cfg.sigma2)
  roots = np.array([fixed_points(e, cfg.tau, cfg.sigma2) for e in etas])
  predicted = np.array([predicted_survival(p0, e, cfg.tau, cfg.sigma2) for e in etas])
  survived = s_end > floor
  err = np.where(survived, np.abs(p_end - roots[:, 1:2]), np.nan)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
  fine = np.linspace(0, etas.max(), 400)
  fine_roots = np.array([fixed_points(e, cfg.tau, cfg.sigma2) for e in fine])
  ax1.plot(fine, fine_roots[:, 1], 'k-', label=r'$p^*_+$ (stable, closed form)')
  ax1.plot(fine, fine_roots[:, 0], 'k--', label=r'$p^*_-$ (unstable, closed form)')
  e_rep = np.repeat(etas, len(p0))
  ax1.scatter(e_rep[survived.ravel()], p_end[survived], s=18, c='C0', label='simulated end p (survived)')
  ax1.scatter(e_rep[~survived.ravel()], p_end[~survived], s=18, c='C3', marker='x', label='simulated end p (collapsed)')
  ax1.axvline(threshold, color='C2', ls=':', label=rf'threshold $\tau^2/(4(1+\sigma^2))$ = {threshold:.3f}')
  ax1.set(xlabel=r'weight decay $\eta$', ylabel='p', title='Fixed points: closed form vs simulation')
  ax1.legend(fontsize=7)
  ax2.plot(etas, predicted.mean(1), 'k-', label='predicted (p0 > $p^*_-$)')
  ax2.plot(etas, survived.mean(1), 'C0o', label=f'simulated (s > {floor:g} at t = {cfg.mode_time:g})')
  ax2.axvline(threshold, color='C2', ls=':')
  ax2.set(
    xlabel=r'weight decay $\eta$',
    ylabel='fraction of modes that survive',
    title=f'{len(p0)} modes on the parabola, p0 in [{p0[0]}, {p0[-1]}]',
  )
  ax2.legend(fontsize=8)
  fig.tight_layout()
  storage.save_figure(fig, storage.join(out, 'collapse_threshold.png'), dpi=110)
  plt.close(fig)
  return {
    'threshold': threshold,
    'etas': etas,
    'p0': p0,
    'p_minus': roots[:, 0],
    'p_plus': roots[:, 1],
    'p_end': p_end,
    's_end': s_end,
    'predicted_survival': predicted,
    'simulated_survival': survived,
    'mismatches': int(np.sum(predicted != survived)),
    'max_abs_p_end_minus_p_plus_survivors': float(np.nanmax(err)) if np.any(survived) else None,
  }


def matrix_dynamics_figure(cfg, out):
  """η sweep and β sweep of linear BYOL; collapse without predictor / stop-gradient."""
  import matplotlib.pyplot as plt

  etas, betas = list(cfg.weight_decays), list(cfg.betas)
  _, rec_eta = run_matrix(cfg, etas, [cfg.beta] * len(etas), cfg.matrix_time)
  _, rec_beta = run_matrix(cfg, [cfg.eta] * len(betas), betas, cfg.matrix_time)
  variants = {
    'predictor + stop-grad': run_matrix(cfg, [cfg.eta], [cfg.beta], cfg.matrix_time)[1],
    r'no predictor ($W_p=I$)': run_matrix(cfg, [cfg.eta], [cfg.beta], cfg.matrix_time, 'identity')[1],
    'no stop-gradient': run_matrix(cfg, [cfg.eta], [cfg.beta], cfg.matrix_time, stop_gradient=False)[1],
  }
  t = cfg.dt * cfg.record_every * np.arange(rec_eta['w_norm'].shape[1])
  fig, axes = plt.subplots(2, 4, figsize=(19, 8))
  for row, (rec, values, name) in enumerate([(rec_eta, etas, r'\eta'), (rec_beta, betas, r'\beta')]):
    for i, v in enumerate(values):
      label = rf'${name}$={v}'
      axes[row, 0].semilogy(t, rec['alignment'][i] + 1e-12, label=label)
      axes[row, 1].semilogy(t, rec['balancing'][i] + 1e-12, label=label)
      axes[row, 2].semilogy(t, rec['w_norm'][i], label=label)
    for i, eta in enumerate(etas if row == 0 else [cfg.eta] * len(betas)):  # Theory: R(t) = R(0) e^{−2ηt}.
      axes[row, 1].semilogy(
        t,
        rec['balancing'][i, 0] * np.exp(-2 * eta * t) + 1e-12,
        'k:',
        lw=1,
        label=r'$R(0)e^{-2\eta t}$' if i == 0 else None,
      )
    fixed = rf'$\beta$={cfg.beta}' if row == 0 else rf'$\eta$={cfg.eta}'
    axes[row, 0].set(title=rf'alignment $\|[F,W_p]\|/(\|F\|\|W_p\|)$, {fixed}', xlabel='t')
    axes[row, 1].set(title=rf'balancing $\|WW^T - W_p^TW_p/\alpha_p\|$, {fixed}', xlabel='t')
    axes[row, 2].set(title=rf'$\|W\|_F$, {fixed}', xlabel='t')
    for ax in axes[row, :3]:
      ax.legend(fontsize=7)
  ax = axes[0, 3]
  for i, eta in enumerate(etas):
    ax.semilogy(np.full(cfg.n2, i), np.maximum(rec_eta['f_eigenvalues'][i, -1], 1e-12), 'o', c=f'C{i}', alpha=0.7)
    _, p_plus = fixed_points(eta, cfg.tau, cfg.sigma2)
    if np.isfinite(p_plus):
      ax.hlines(p_plus**2 / cfg.alpha_p, i - 0.3, i + 0.3, colors='k')
  ax.set(
    xticks=range(len(etas)),
    xticklabels=[str(e) for e in etas],
    xlabel=r'$\eta$',
    title=r'final eig. of F, floor 1e-12 (bars: $s^*_+=p^{*2}_+/\alpha_p$)',
    ylim=(3e-13, 10),
  )
  ax = axes[1, 3]
  for name, rec in variants.items():
    ax.semilogy(t, rec['w_norm'][0], label=name)
  w0_norm = variants['no stop-gradient']['w_norm'][0, 0]
  ax.semilogy(
    t,
    w0_norm * np.exp(no_predictor_rate(cfg.eta, cfg.beta, cfg.sigma2) * t),
    'C1:',
    label=r'no predictor, theory: $e^{\lambda_{max} t}$',
  )
  ax.semilogy(
    t, w0_norm * np.exp(-(cfg.sigma2 + cfg.eta) * t), 'C2:', label=r'no stop-grad, bound $e^{-(\sigma^2+\eta)t}$'
  )
  ax.set(title=rf'collapse: $\|W\|_F$, $\eta$={cfg.eta}, $\beta$={cfg.beta}', xlabel='t', ylim=(1e-20, 1e2))
  ax.legend(fontsize=8)
  fig.suptitle(f"Linear BYOL, n1 = {cfg.n1}, n2 = {cfg.n2}, X = I, X' = {cfg.sigma2} I, dt = {cfg.dt}")
  fig.tight_layout()
  storage.save_figure(fig, storage.join(out, 'matrix_dynamics.png'), dpi=100)
  plt.close(fig)

  def finals(rec, values, key):
    return [
      {
        key: v,
        'alignment': float(rec['alignment'][i, -1]),
        'balancing': float(rec['balancing'][i, -1]),
        'w_norm': float(rec['w_norm'][i, -1]),
        'surviving_modes': surviving_modes(rec['f_eigenvalues'][i, -1]),
        'f_eigenvalues': rec['f_eigenvalues'][i, -1],
      }
      for i, v in enumerate(values)
    ]

  return {
    'time': t,
    'eta_sweep': finals(rec_eta, etas, 'eta'),
    'beta_sweep': finals(rec_beta, betas, 'beta'),
    'eta_sweep_curves': {k: rec_eta[k] for k in ('alignment', 'balancing', 'w_norm')},
    'beta_sweep_curves': {k: rec_beta[k] for k in ('alignment', 'balancing', 'w_norm')},
    'variants': {
      name: {
        'w_norm_initial': float(rec['w_norm'][0, 0]),
        'w_norm_final': float(rec['w_norm'][0, -1]),
        'w_norm_curve': rec['w_norm'][0],
      }
      for name, rec in variants.items()
    },
  }


def directpred_figure(cfg, out):
  """DirectPred against a learned predictor, W_p = I and the rule without rescaling, at η = cfg.eta.

  All start from ``graded_init`` (F's eigenvalues log-spaced over ``directpred_s0_range``), so modes
  start on both sides of p*₋; one more DirectPred run starts from ``matrix_dynamics``'s random init.
  """
  import matplotlib.pyplot as plt

  s0 = np.geomspace(*cfg.directpred_s0_range, cfg.n2)
  graded = graded_init(cfg.seed, cfg.n1, cfg.n2, s0, cfg.alpha_p)
  runs = {
    'learned predictor': dict(predictor='learned'),
    rf'DirectPred, $\epsilon$={cfg.eps}': dict(predictor='directpred'),
    r'DirectPred, $\epsilon$=0': dict(predictor='directpred', eps=0.0),
    'DirectPred rule as is (normalised by $s_{max}$)': dict(predictor='directpred_normalized'),
    r'no predictor ($W_p=I$)': dict(predictor='identity'),
  }
  records = {
    name: run_matrix(cfg, [cfg.eta], [cfg.beta], cfg.directpred_time, init=graded, **kw)[1] for name, kw in runs.items()
  }
  random_init = run_matrix(cfg, [cfg.eta], [cfg.beta], cfg.directpred_time, 'directpred')[1]
  t = cfg.dt * cfg.record_every * np.arange(random_init['w_norm'].shape[1])
  p_minus, p_plus = fixed_points(cfg.eta, cfg.tau, cfg.sigma2)
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
  for i, (name, rec) in enumerate(records.items()):
    style = dict(c=f'C{i}', lw=3.5 - 0.5 * i, label=name)  # Thinner on top: overlapping curves stay visible.
    axes[0].semilogy(t, rec['w_norm'][0], **style)
    axes[1].plot(t, (rec['f_eigenvalues'][0] > 1e-3).sum(-1), **style)
    axes[2].semilogy(
      np.arange(cfg.n2) + 0.06 * i, np.maximum(rec['f_eigenvalues'][0, -1][::-1], 1e-14), 'o-', c=f'C{i}', label=name
    )
  axes[0].semilogy(t, random_init['w_norm'][0], 'k--', lw=1, label=f'DirectPred, $\\epsilon$={cfg.eps}, random init')
  axes[2].semilogy(np.arange(cfg.n2), s0[::-1], 'kx', label='initial eigenvalues $s_0$')
  axes[2].axhline(p_minus**2 / cfg.alpha_p, color='C3', ls=':', label=r'$p^{*2}_-/\alpha_p$ (learned: dies below)')
  axes[2].axhline(p_plus**2 / cfg.alpha_p, color='k', ls=':', label=r'$s^*_+ = p^{*2}_+/\alpha_p$ (learned)')
  axes[2].axhline((p_plus / (1 + cfg.eps)) ** 2, color='k', ls='--', label=r'$(p^*_+/(1+\epsilon))^2$ (DirectPred)')
  axes[0].set(title=rf'$\|W\|_F$, $\eta$={cfg.eta}, $\beta$={cfg.beta}', xlabel='t')
  axes[1].set(title='modes alive (eigenvalues of F > 1e-3)', xlabel='t', ylim=(-0.3, cfg.n2 + 0.3))
  axes[2].set(title=f'eigenvalues of F at t = {t[-1]:g} (graded init)', xlabel='mode (descending)', ylim=(1e-14, 10))
  for ax in axes:
    ax.legend(fontsize=7)
  fig.tight_layout()
  storage.save_figure(fig, storage.join(out, 'directpred.png'), dpi=110)
  plt.close(fig)

  def summary(rec):
    return {
      'w_norm_final': float(rec['w_norm'][0, -1]),
      'w_norm_min': float(rec['w_norm'][0].min()),
      'surviving_modes': surviving_modes(rec['f_eigenvalues'][0, -1]),
      'f_eigenvalues_final': rec['f_eigenvalues'][0, -1],
      'w_norm_curve': rec['w_norm'][0],
    }

  return {
    'eta': cfg.eta,
    'time': t,
    's0': s0,
    'p_minus_squared': p_minus**2 / cfg.alpha_p,
    'predicted_survivors_learned': int(np.sum(np.sqrt(cfg.alpha_p * s0) > p_minus)),
    's_plus_learned': p_plus**2 / cfg.alpha_p,
    's_directpred_predicted': (p_plus / (1 + cfg.eps)) ** 2,
    'runs': {name: summary(rec) for name, rec in records.items()},
    'directpred_random_init': summary(random_init),
  }


def run(cfg, out):
  """All four stages; writes the figures and results.json to ``out`` and returns the results."""
  import matplotlib

  matplotlib.use('Agg')
  out = storage.resolve(out)
  storage.makedirs(out)
  results = {'config': cfg.to_dict()}
  stages = [
    ('phase_portraits', phase_portraits),
    ('collapse_threshold', collapse_threshold_figure),
    ('matrix_dynamics', matrix_dynamics_figure),
    ('directpred', directpred_figure),
  ]
  for name, stage in stages:
    start = time.time()
    results[name] = stage(cfg, out)
    print(f'[{name}] done in {time.time() - start:.1f}s -> {storage.join(out, name + ".png")}', flush=True)
  storage.write_json(storage.join(out, 'results.json'), jsonable(results), indent=1)
  return results


def main():
  """The command line: ``python -m gsg_jax.experiments.linear_dynamics --out=DIR [--quick] [--config.KEY=VALUE]``."""
  from absl import flags

  from gsg_jax import cli
  from gsg_jax.errors import ConfigError
  from gsg_jax.training.outputs import quiet_library_logs

  # --quick picks the preset before the --config.* overrides apply on top of it.
  quick = any(a in ('--quick', '--quick=true', '--quick=True', '--quick=1') for a in sys.argv[1:])
  flags.DEFINE_string('out', None, 'Directory for the figures and results.json.')
  flags.DEFINE_bool('quick', False, 'Short runs (a smoke test, under ~30 s).')
  config = cli.define_config_dict('config', get_config('quick' if quick else None))
  flags.mark_flag_as_required('out')

  def command(argv):
    if len(argv) > 1:
      raise ConfigError(f'unexpected arguments: {argv[1:]}')
    if flags.FLAGS.quick != quick:
      raise ConfigError('write --quick (or leave it out).')
    quiet_library_logs()  # Hides JAX's backend-probing INFO lines.
    out = storage.ensure_writable_dir(flags.FLAGS.out, '--out')  # Before any simulation.
    start = time.time()
    run(config.value, out)
    print(f'all done in {time.time() - start:.1f}s', flush=True)

  cli.run(command)


if __name__ == '__main__':
  main()
