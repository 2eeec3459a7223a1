r"""The four stages of the linear-dynamics experiment: each simulates, draws one figure and returns its numbers.

* ``phase_portraits``: the per-mode field, its fixed points and the invariant parabola, with trajectories;
* ``collapse_threshold_figure``: simulated per-mode end points against the closed-form p*± and the threshold;
* ``matrix_dynamics_figure``: linear BYOL over weight decays and EMA rates, alignment, balancing, collapse;
* ``directpred_figure``: DirectPred against a learned predictor, W_p = I and the rule without rescaling.

Each takes (config, output folder), writes ``<stage>.png`` there and returns the numbers behind the figure (the
command, ``run.py``, gathers them into results.json). matplotlib is imported when a stage draws.
"""

import numpy as np

from gsg_jax import storage
from gsg_jax.experiments.linear_dynamics.simulation import (
  collapse_sweep,
  graded_init,
  mode_args,
  mode_steps,
  run_matrix,
  simulate_modes,
  surviving_modes,
)
from gsg_jax.experiments.linear_dynamics.theory import (
  collapse_threshold,
  fixed_points,
  mode_field,
  no_predictor_rate,
  predicted_survival,
  stability,
)


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
      steps=mode_steps(cfg.mode_time, cfg, record_every),
      record_every=record_every,
      **mode_args(cfg),
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
