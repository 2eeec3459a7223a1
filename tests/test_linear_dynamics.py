"""The linear-network theory of Tian, Chen & Ganguli (2021), checked on small instances.

gsg_jax/experiments/linear_dynamics/theory.py derives every claim tested here; the config is
configs/linear_dynamics.py.
"""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsg_jax.experiments.linear_dynamics import simulation, theory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAU, SIGMA2, DT = 1.0, 0.5, 0.01
QUICK = '--config=configs/linear_dynamics.py:quick'


def linear_dynamics_config(preset=None):
  spec = importlib.util.spec_from_file_location(
    'linear_dynamics_config', os.path.join(REPO, 'configs', 'linear_dynamics.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def small_config(n=6, **overrides):
  c = linear_dynamics_config()
  c.n1 = c.n2 = n
  for key, value in overrides.items():
    c[key] = value
  return c


def random_spd(key, n, scale):
  a = jax.random.normal(key, (n, n))
  return scale * (a @ a.T / n + 0.1 * jnp.eye(n))


# ----------------------------------------------------------------------------- per mode


@pytest.mark.parametrize('alpha_p', [1.0, 2.5])
def test_parabola_is_invariant_and_attracting(alpha_p):
  rng = np.random.default_rng(0)
  p, s = rng.uniform(-1, 2, 100), rng.uniform(0, 2, 100)
  for eta in (0.0, 0.01, 0.3, 1.0):  # d/dt (s − p²/α_p) = −2η (s − p²/α_p), exactly.
    dp, ds = theory.mode_field(p, s, eta, TAU, alpha_p, SIGMA2)
    np.testing.assert_allclose(ds - 2 * p * dp / alpha_p, -2 * eta * (s - p**2 / alpha_p), rtol=1e-9, atol=1e-12)
  # Along simulated trajectories that start off the parabola, its distance decays as e^{−2ηt}
  # (up to the Euler step's −dt²ṗ²/α_p per step).
  eta, starts = 0.05, np.array([[-0.5, 1.0], [0.2, 1.2], [1.2, 0.1], [0.4, 0.9]])
  p_t, s_t = simulation.simulate_modes(
    starts[:, 0], starts[:, 1], eta, TAU, alpha_p, SIGMA2, DT, steps=2000, record_every=100
  )
  t = DT * 100 * np.arange(p_t.shape[0])
  distance = np.asarray(s_t) - np.asarray(p_t) ** 2 / alpha_p
  predicted = distance[0] * np.exp(-2 * eta * t)[:, None]
  np.testing.assert_allclose(distance, predicted, atol=0.03)
  assert np.all(np.abs(distance[-1]) < 0.2 * np.abs(distance[0]))


def test_fixed_points_closed_form_and_stability():
  threshold = theory.collapse_threshold(TAU, SIGMA2)
  assert threshold == pytest.approx(1 / 6)
  for eta in (0.01, 0.04, 0.1, 0.16):
    p_minus, p_plus = theory.fixed_points(eta, TAU, SIGMA2)
    assert 0 < p_minus < p_plus
    for p in (p_minus, p_plus):
      assert (1 + SIGMA2) * p**2 - TAU * p + eta == pytest.approx(0, abs=1e-12)
      np.testing.assert_allclose(theory.mode_field(p, p**2, eta, TAU, 1.0, SIGMA2), 0, atol=1e-12)
    assert theory.stability(p_plus, p_plus**2, eta, TAU, 1.0, SIGMA2) == 'stable'
    assert theory.stability(p_minus, p_minus**2, eta, TAU, 1.0, SIGMA2) == 'unstable'
    assert theory.stability(0.0, 0.0, eta, TAU, 1.0, SIGMA2) == 'stable'
  for eta in (0.17, 1.0):
    assert np.all(np.isnan(theory.fixed_points(eta, TAU, SIGMA2)))


def test_modes_on_the_parabola_end_where_the_closed_form_says():
  etas = np.array([0.0, 0.01, 0.04, 0.1, 0.2, 1.0])
  p0 = np.linspace(-0.5, 1.5, 41)
  p_t, s_t = simulation.simulate_modes(
    p0[None, :], p0[None, :] ** 2, etas[:, None], TAU, 1.0, SIGMA2, DT, steps=20000, record_every=20000
  )
  p_end, s_end = np.asarray(p_t[-1]), np.asarray(s_t[-1])
  counts = {'survive': 0, 'collapse': 0}
  for i, eta in enumerate(etas):
    p_minus, p_plus = theory.fixed_points(eta, TAU, SIGMA2)
    survive = theory.predicted_survival(p0, eta, TAU, SIGMA2)
    clear = ~np.isfinite(p_minus) | (np.abs(p0 - p_minus) > 0.02)  # A start next to the saddle escapes slowly.
    for j in np.flatnonzero(clear):
      if survive[j]:
        assert abs(p_end[i, j] - p_plus) < 1e-3, (eta, p0[j], p_end[i, j], p_plus)
        # With η = 0 nothing pulls s back to the parabola: the Euler drift (−dt²ṗ² a step; ~1e-2 from p0 = 1.5) stays.
        assert abs(s_end[i, j] - p_plus**2) < (1e-3 if eta > 0 else 2e-2), (eta, p0[j], s_end[i, j])
      else:
        assert s_end[i, j] < 1e-3, (eta, p0[j], s_end[i, j])
      counts['survive' if survive[j] else 'collapse'] += 1
    if eta > theory.collapse_threshold(TAU, SIGMA2):
      assert not survive.any() and np.all(s_end[i] < 1e-3)
  assert counts['survive'] > 50 and counts['collapse'] > 50


# ----------------------------------------------------------------------------- matrices


def test_jax_grad_dynamics_equal_the_closed_form_equations():
  keys = jax.random.split(jax.random.PRNGKey(1), 5)
  n1, n2, eta, alpha_p, beta = 5, 4, 0.07, 1.7, 0.4
  w = jax.random.normal(keys[0], (n2, n1))
  w_p = jax.random.normal(keys[1], (n2, n2))
  w_a = jax.random.normal(keys[2], (n2, n1))
  x, x_aug = random_spd(keys[3], n1, 1.0), random_spd(keys[4], n1, 0.3)
  with jax.default_matmul_precision('highest'):
    got = theory.field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta)
    want = theory.closed_form_field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta)
    for g, c in zip(got, want):
      np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4)
    # Balancing: d/dt(α_p WWᵀ − W_pᵀW_p) = −2η(α_p WWᵀ − W_pᵀW_p), whatever W_a, X, X'.
    dw, dw_p, _ = got
    lhs = alpha_p * (dw @ w.T + w @ dw.T) - (dw_p.T @ w_p + w_p.T @ dw_p)
    np.testing.assert_allclose(lhs, -2 * eta * (alpha_p * w @ w.T - w_p.T @ w_p), rtol=1e-4, atol=1e-3)

    # Without stop-gradient (target W, gradient through it): the derived closed form and its H form.
    dw_nosg, dw_p_nosg, _ = theory.field(w, w_p, w_a, x, x_aug, eta, alpha_p, beta, stop_gradient=False)
    np.testing.assert_allclose(
      dw_nosg, theory.closed_form_no_stop_gradient(w, w_p, x, x_aug, eta), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
      dw_p_nosg, theory.closed_form_field(w, w_p, w, x, x_aug, eta, alpha_p, beta)[1], rtol=1e-4, atol=1e-4
    )
    assert np.abs(dw_nosg - theory.field(w, w_p, w, x, x_aug, eta, alpha_p, beta)[0]).max() > 0.1  # The cut matters.
  w64, w_p64, x64, x_aug64 = (np.asarray(a, np.float64) for a in (w, w_p, x, x_aug))
  eye = np.eye(n2)
  h = np.kron(x_aug64, eye + w_p64.T @ w_p64) + np.kron(x64, (w_p64 - eye).T @ (w_p64 - eye))
  np.testing.assert_allclose(
    np.asarray(dw_nosg).flatten('F'), -(h + eta * np.eye(n1 * n2)) @ w64.flatten('F'), rtol=1e-4, atol=1e-3
  )
  assert np.linalg.eigvalsh(h).min() >= np.linalg.eigvalsh(x_aug64).min() - 1e-9


def test_balancing_residual_decays_as_exp_minus_2_eta_t():
  cfg = small_config(init_scale=1.0, record_every=100)
  _, rec = simulation.run_matrix(cfg, [0.0, 0.1], [0.4, 0.4], 20.0)
  t = DT * 100 * np.arange(rec['balancing'].shape[1])
  np.testing.assert_allclose(rec['balancing'][1], rec['balancing'][1, 0] * np.exp(-0.2 * t), rtol=0.02)
  np.testing.assert_allclose(rec['balancing'][0], rec['balancing'][0, 0], rtol=0.02)  # η = 0: no balancing.


def test_learned_predictor_aligns_balances_and_reaches_the_mode_fixed_point():
  cfg = small_config(record_every=1000)
  etas = [0.0, 0.04, 0.2]
  (_, w_p, _), rec = simulation.run_matrix(cfg, etas, [cfg.beta] * 3, 200.0)
  _, p_plus = theory.fixed_points(0.04, TAU, SIGMA2)
  # η = 0.04: aligned and balanced; each mode either collapsed or at the per-mode fixed point p*₊, s*₊ = p*₊².
  assert rec['alignment'][1, -1] < 1e-3 < rec['alignment'][1, 0]
  assert rec['balancing'][1, -1] < 1e-3 < rec['balancing'][1, 0]
  s = rec['f_eigenvalues'][1, -1]
  alive = s > 1e-3
  assert alive.sum() >= 2 and np.all(np.abs(s[alive] - p_plus**2) < 1e-3) and np.all(s[~alive] < 1e-6)
  p = np.linalg.eigvals(w_p[1])
  np.testing.assert_allclose(np.sort(p.real)[-alive.sum() :], p_plus, atol=1e-3)
  assert np.abs(p.imag).max() < 1e-3
  # η = 0 keeps its imbalance and does not align the collapsed directions; η = 0.2 > 1/6 collapses.
  assert rec['balancing'][0, -1] > 0.9 * rec['balancing'][0, 0] and rec['alignment'][0, -1] > 1e-2
  assert rec['w_norm'][2, -1] < 1e-6 * rec['w_norm'][2, 0]


def test_no_predictor_collapses_at_the_predicted_rate():
  cfg = small_config(record_every=500)
  _, rec = simulation.run_matrix(cfg, [0.0, 0.04], [0.4, 0.4], 100.0, predictor='identity')
  t = DT * 500 * np.arange(rec['w_norm'].shape[1])
  late = t >= 50
  for i, eta in enumerate([0.0, 0.04]):
    slope = np.polyfit(t[late], np.log(rec['w_norm'][i, late]), 1)[0]
    assert slope == pytest.approx(theory.no_predictor_rate(eta, 0.4, SIGMA2), rel=0.02)
    assert rec['w_norm'][i, -1] < 1e-3 * rec['w_norm'][i, 0]


def test_no_stop_gradient_collapses_at_least_as_fast_as_the_bound():
  cfg = small_config(record_every=100)
  _, rec = simulation.run_matrix(cfg, [0.04], [0.4], 20.0, stop_gradient=False)
  _, rec_sg = simulation.run_matrix(cfg, [0.04], [0.4], 20.0)
  t = DT * 100 * np.arange(rec['w_norm'].shape[1])
  w_norm = rec['w_norm'][0]
  assert np.all(w_norm <= w_norm[0] * np.exp(-(SIGMA2 + 0.04) * t) * (1 + 1e-4))
  assert w_norm[-1] < 1e-4 * w_norm[0]
  assert rec_sg['w_norm'][0, -1] > w_norm[0]  # Same start, with stop-gradient: grows.


# ----------------------------------------------------------------------------- DirectPred


def _graded(cfg, s0):
  return simulation.graded_init(cfg.seed, cfg.n1, cfg.n2, s0, cfg.alpha_p)


def test_directpred_keeps_every_mode_where_a_learned_predictor_loses_the_weak_ones():
  cfg = small_config(n=4, record_every=1000)
  s0 = np.geomspace(1e-4, 0.3, 4)  # √s0 of the second is 10% below p*₋ = 0.0427 (η = 0.04).
  p_minus, p_plus = theory.fixed_points(cfg.eta, TAU, SIGMA2)
  assert np.sum(np.sqrt(s0) > p_minus) == 2
  init = _graded(cfg, s0)
  np.testing.assert_allclose(np.linalg.eigvalsh(init[0] @ init[0].T), s0, rtol=1e-4)
  runs = {
    name: simulation.run_matrix(cfg, [cfg.eta], [cfg.beta], 400.0, init=init, **kw)[1]
    for name, kw in {
      'learned': {},
      'direct': dict(predictor='directpred'),
      'direct_eps0': dict(predictor='directpred', eps=0.0),
    }.items()
  }
  direct = runs['direct']
  np.testing.assert_allclose(direct['f_eigenvalues'][0, -1], (p_plus / (1 + cfg.eps)) ** 2, rtol=0.02)
  assert direct['w_norm'][0].min() > 0.5 * direct['w_norm'][0, 0]
  for name in ('learned', 'direct_eps0'):  # The two weak modes die, the two strong ones reach s*₊ = p*₊².
    s = runs[name]['f_eigenvalues'][0, -1]
    assert np.all(s[:2] < 1e-4) and np.all(np.abs(s[2:] - p_plus**2) < 1e-3), (name, s)


def test_without_a_predictor_or_with_the_unscaled_rule_everything_collapses():
  cfg = small_config(n=4, record_every=1000)
  init = _graded(cfg, np.geomspace(1e-4, 0.3, 4))
  for predictor in ('identity', 'directpred_normalized'):
    rec = simulation.run_matrix(cfg, [cfg.eta], [cfg.beta], 100.0, predictor=predictor, init=init)[1]
    assert rec['w_norm'][0, -1] < 1e-4 * rec['w_norm'][0, 0], predictor


# ----------------------------------------------------------------------------- config and command line


def test_quick_preset_shortens_the_runs_and_changes_nothing_else():
  full, quick = linear_dynamics_config(), linear_dynamics_config('quick')
  changed = {k for k in full if full[k] != quick[k]}
  assert changed == {
    'threshold_etas',
    'num_p0',
    'mode_time',
    'weight_decays',
    'betas',
    'matrix_time',
    'directpred_time',
  }
  for key in ('num_p0', 'mode_time', 'matrix_time', 'directpred_time'):
    assert quick[key] < full[key], key
  for key in ('threshold_etas', 'weight_decays', 'betas'):  # Fewer points of the same sweeps ...
    assert set(quick[key]) < set(full[key]), key
  for key in ('threshold_etas', 'weight_decays'):  # ... still on both sides of the collapse threshold 1/6.
    assert min(quick[key]) < theory.collapse_threshold(TAU, SIGMA2) < max(quick[key]), key
  with pytest.raises(ValueError, match="unknown preset 'quik'"):
    linear_dynamics_config('quik')


def test_the_command_runs_the_config_file_by_default():
  from gsg_jax import config_lib
  from gsg_jax.experiments.linear_dynamics import run

  assert os.path.samefile(os.path.join(config_lib.CONFIG_DIR, run.CONFIG), os.path.join(REPO, 'configs', run.CONFIG))
  assert [name for name, _ in run.STAGES] == ['phase_portraits', 'collapse_threshold', 'matrix_dynamics', 'directpred']


@pytest.mark.slow
def test_command_line_writes_figures_and_results(tmp_path):
  overrides = [
    '--config.n1=3',
    '--config.n2=3',
    '--config.threshold_etas=(0.05,0.3)',
    '--config.num_p0=5',
    '--config.mode_time=10',
    '--config.matrix_time=5',
    '--config.directpred_time=5',
    '--config.record_every=50',
    '--config.weight_decays=(0.04,)',
    '--config.directpred_s0_range=(0.001,0.3)',
  ]
  result = subprocess.run(
    [sys.executable, '-m', 'gsg_jax.experiments.linear_dynamics', QUICK, f'--out={tmp_path}', *overrides],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  for stage in ('phase_portraits', 'collapse_threshold', 'matrix_dynamics', 'directpred'):
    assert f'[{stage}] done' in result.stdout
    assert (tmp_path / f'{stage}.png').stat().st_size > 10_000
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['config']['n1'] == 3 and results['config']['mode_time'] == 10
  assert results['config']['betas'] == [0.1, 0.4, 4.0]  # The quick preset's, under the overrides.
  assert results['collapse_threshold']['threshold'] == pytest.approx(1 / 6)
  assert set(results['matrix_dynamics']['variants']) == {
    'predictor + stop-grad',
    r'no predictor ($W_p=I$)',
    'no stop-gradient',
  }
  no_predictor = results['directpred']['runs'][r'no predictor ($W_p=I$)']
  assert no_predictor['w_norm_final'] < 0.7 * no_predictor['w_norm_curve'][0]
