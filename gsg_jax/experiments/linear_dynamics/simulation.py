r"""The linear-network model of ``theory.py``, integrated: per-mode and matrix dynamics, Euler steps in ``lax.scan``.

* ``simulate_modes``: broadcast arrays of eigenmodes (p, s) under ``theory.mode_field``;
* ``simulate_matrix``: linear BYOL (W, W_p, W_a) under ``theory.field``, with a learned predictor, W_p ≡ I, or
  DirectPred's W_p set every step from a moving estimate of F (``set_predictor``; ``theory``'s docstring says why
  the ``directpred`` variant rescales the library's rule);
* ``run_matrix``: ``simulate_matrix`` vmapped over a sweep of (η, β) from one initialisation of a config;
* ``collapse_sweep``: the per-mode end points over a grid of weight decays and starts on the parabola.

Nothing here draws: ``figures.py`` plots these runs against ``theory.py``'s closed forms.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gsg_jax.experiments.linear_dynamics.theory import field, mode_field
from gsg_jax.methods.directpred import predictor_from_correlation

PREDICTORS = ('learned', 'identity', 'directpred', 'directpred_normalized')

# ----------------------------------------------------------------------------- per mode


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


def mode_args(cfg):
  """The config's (τ, α_p, σ², dt), as ``simulate_modes`` takes them."""
  return dict(tau=cfg.tau, alpha_p=cfg.alpha_p, sigma2=cfg.sigma2, dt=cfg.dt)


def mode_steps(time_, cfg, record_every):
  """Euler steps for ``time_``, rounded down to a multiple of ``record_every``."""
  return int(round(time_ / cfg.dt)) // record_every * record_every


def collapse_sweep(cfg):
  """Final (p, s) of modes started on the parabola at ``num_p0`` points, for every η in ``threshold_etas``."""
  etas = np.asarray(cfg.threshold_etas, np.float64)
  p0 = np.linspace(*cfg.p0_range, cfg.num_p0)
  steps = mode_steps(cfg.mode_time, cfg, 1000)
  traj_p, traj_s = simulate_modes(
    p0[None, :], (p0**2 / cfg.alpha_p)[None, :], etas[:, None], steps=steps, record_every=1000, **mode_args(cfg)
  )
  return etas, p0, np.asarray(traj_p[-1]), np.asarray(traj_s[-1])


# ----------------------------------------------------------------------------- matrices


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


def set_predictor(f_hat, predictor, eps):
  """W_p from F̂ (see ``theory``'s docstring): the repo's rule, rescaled by √s_max for 'directpred'."""
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
    w_p0 = set_predictor(f_hat0, predictor, eps)

  def step(state):
    w, w_p, w_a, f_hat = state
    if direct:
      f_hat = rho * f_hat + (1.0 - rho) * (w @ x @ w.T)
      w_p = set_predictor(f_hat, predictor, eps)
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


def surviving_modes(f_eigenvalues, floor=1e-3):
  """Number of eigenvalues of F above ``floor`` (a collapsed mode decays to 0)."""
  return int(np.sum(np.asarray(f_eigenvalues) > floor))
