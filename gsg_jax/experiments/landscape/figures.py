"""The figures of the landscape experiments, drawn from the results that ``run.run`` assembles.

* ``recovery_curves.png``: per objective of the ``grid`` study, min/median/max over latents of
  max_j |cos(w_j, M_i)| against the epoch, mean over seeds with the seed range as a band, at the setting
  nearest ``figure_mask_prob``/``figure_sparsity`` (InfoNCE: its complementary masks);
* ``support_and_collapse.png``: output variance and std of f/‖f‖ (collapse), support match, false
  support and sparsity gap over training, same setting, mean over seeds;
* ``end_vs_mask.png`` / ``end_vs_sparsity.png``: the end value of min_i max_j |cos| against the mask
  probability (a panel per sparsity; InfoNCE, mask-free, as a horizontal line) and against the sparsity
  (a panel per mask probability), mean ± std over seeds;
* ``warm_start.png``: end min_i max_j |cos| against the warm-start level c, per sparsity, with the value
  at initialisation: does each objective stay near the ground truth?
"""

import numpy as np

from gsg_jax import storage
from gsg_jax.experiments.landscape.claims import matches
from gsg_jax.experiments.landscape.objectives import Objective, stored


def _select(res, **fixed):
  return [r for r in res['runs'] if all(r[k] == v for k, v in fixed.items() if k in r and v != '*')]


def _nearest(values, target):
  values = sorted({v for v in values if v is not None})
  return min(values, key=lambda v: abs(v - target)) if values else None


def _curve_runs(res, mask_prob, sparsity):
  """The runs of the curve figures: the setting nearest (mask_prob, sparsity), random init where there is one."""
  runs = res['runs']
  q = _nearest([r['sparsity'] for r in runs], sparsity)
  mp = _nearest([r['mask_prob'] for r in runs], mask_prob)
  runs = _select(res, sparsity=q, mask_prob=mp)
  return [r for r in runs if r['c'] is None] or runs


def write_all(results: dict, cfg, workdir: str) -> None:
  """Every figure whose study is in ``results``, into ``workdir``."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  grid = results['studies'].get('grid') or next(iter(results['studies'].values()), None)
  if grid:
    names = list(grid)
    mp, q = cfg.figure_mask_prob, cfg.figure_sparsity
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
      res = grid[name]
      runs = _curve_runs(res, mp, q)
      epochs = np.asarray(res['epochs'])
      for key, color in (('max', 'C2'), ('median', 'C0'), ('min', 'C3')):
        y = np.array([r['curves'][key] for r in runs], float)
        ax.plot(epochs, y.mean(0), color=color, label=f'{key} over latents')
        ax.fill_between(epochs, y.min(0), y.max(0), color=color, alpha=0.2)
      ax.set(title=name, ylim=(0, 1.02), xlabel='epoch', ylabel=r'max$_j$|cos(w$_j$, M$_i$)|')
      ax.grid(alpha=0.3)
    for ax in axes.flat[len(names) :]:
      ax.axis('off')
    axes.flat[0].legend(fontsize=7, loc='lower right')
    fig.suptitle(
      f'Dictionary recovery (mask {mp}, sparsity {q}; InfoNCE: complementary masks); '
      f'mean over {cfg.num_seeds} seeds, band = seed range'
    )
    fig.tight_layout()
    storage.save_figure(fig, storage.join(workdir, 'recovery_curves.png'), dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 5, figsize=(23, 3.8))
    for i, name in enumerate(names):
      res = grid[name]
      runs = _curve_runs(res, mp, q)
      epochs = np.asarray(res['epochs'])
      for ax, key in zip(axes, ('output_variance', 'normalized_std', 'match', 'false_support', 'sparsity_gap')):
        y = np.array([r['curves'][key] for r in runs], float).mean(0)
        style = dict(color=f'C{i % 10}', ls='-' if i < 10 else '--', label=name)
        if key == 'output_variance':
          ax.semilogy(epochs, np.maximum(y, 1e-12), **style)
        else:
          ax.plot(epochs, y, **style)
    for ax, title in zip(
      axes,
      (
        'output variance (collapse check)',
        'std of f/|f| (collapse: 0, healthy ~1/sqrt(m))',
        'support match',
        'false support',
        'sparsity gap',
      ),
    ):
      ax.set(title=title, xlabel='epoch')
      ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6)
    fig.suptitle(f'Collapse and support recovery (mask {mp}, sparsity {q}), mean over seeds')
    fig.tight_layout()
    storage.save_figure(fig, storage.join(workdir, 'support_and_collapse.png'), dpi=100)
    plt.close(fig)

    _end_plot(plt, grid, 'mask_prob', 'sparsity', 'mask probability', storage.join(workdir, 'end_vs_mask.png'))
    _end_plot(plt, grid, 'sparsity', 'mask_prob', 'sparsity level q', storage.join(workdir, 'end_vs_sparsity.png'))
  warm = results['studies'].get('warm_start')
  if warm:
    sparsities = sorted({r['sparsity'] for res in warm.values() for r in res['runs']})
    fig, axes = plt.subplots(1, len(sparsities), figsize=(5 * len(sparsities), 3.8), squeeze=False)
    for ax, q in zip(axes[0], sparsities):
      for i, (name, res) in enumerate(warm.items()):
        cs = sorted({r['c'] for r in res['runs']})
        end = [np.array([r['end']['min'] for r in _select(res, sparsity=q, c=c)], float) for c in cs]
        start = [np.mean([r['curves']['min'][0] for r in _select(res, sparsity=q, c=c)]) for c in cs]
        ax.errorbar(
          cs, [e.mean() for e in end], [e.std() for e in end], color=f'C{i % 10}', marker='o', capsize=3, label=name
        )
        if i == 0:
          ax.plot(cs, start, 'k:', label='at initialisation')
      ax.set(
        title=f'warm start, sparsity {q}', xlabel='c (noise std p$^{-c/2}$)', ylabel='end min max|cos|', ylim=(0, 1.02)
      )
      ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    storage.save_figure(fig, storage.join(workdir, 'warm_start.png'), dpi=100)
    plt.close(fig)


def _end_plot(plt, grid, x_key, panel_key, xlabel, path):
  panels = sorted({r[panel_key] for res in grid.values() for r in res['runs'] if r[panel_key] is not None})
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.8), squeeze=False)
  for ax, v in zip(axes[0], panels):
    for i, (name, res) in enumerate(grid.items()):
      style = dict(color=f'C{i % 10}', ls='-' if i < 10 else '--')
      complementary = getattr(stored(res['objective']), 'contrastive', False)  # One mask per pair: no mask axis.
      if complementary and x_key == 'mask_prob':
        e = np.array([r['end']['min'] for r in _select(res, sparsity=v)], float)
        if e.size:
          ax.axhline(e.mean(), label=f'{name} (complementary masks)', **style)
        continue
      runs = _select(res, **{panel_key: (None if complementary else v)})
      xs = sorted({r[x_key] for r in runs if r[x_key] is not None})
      ends = [np.array([r['end']['min'] for r in runs if r[x_key] == x], float) for x in xs]
      if xs:
        ax.errorbar(xs, [e.mean() for e in ends], [e.std() for e in ends], marker='o', capsize=3, label=name, **style)
    ax.set(
      title=f'{panel_key} {v}', xlabel=xlabel, ylabel='end min$_i$ max$_j$|cos| (mean ± std over seeds)', ylim=(0, 1.02)
    )
    ax.grid(alpha=0.3)
  axes[0, -1].legend(fontsize=6)
  fig.tight_layout()
  storage.save_figure(fig, path, dpi=100)
  plt.close(fig)


def _mean_curve(res, key, **fixed):
  runs = [r for r in res['runs'] if matches(r, **fixed)]
  return np.asarray(res['epochs']), np.array([r['curves'][key] for r in runs], float)


def write_report_figures(results: dict, long_results, out: str) -> None:
  """The report's figures: full-rank study, InfoNCE probes, GSG pair fractions, 8000-epoch runs vs reduced."""
  import types

  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  studies = results['studies']
  cfg = types.SimpleNamespace(
    **{
      'figure_mask_prob': 0.5,
      'figure_sparsity': 0.1,
      'num_seeds': '',
      **{
        k: v for k, v in results.get('config', {}).items() if k in ('figure_mask_prob', 'figure_sparsity', 'num_seeds')
      },
    }
  )
  write_all(results, cfg, out)
  full = studies.get('fullrank', {}).get('fullrank')
  if full:
    keys = sorted({(r['loss'], r['norm']) for r in full['runs']})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, (loss, norm) in zip(axes[0], keys):
      for i, c in enumerate(sorted({r['c'] for r in full['runs']})):
        epochs, y = _mean_curve(full, 'min', loss=loss, norm=norm, c=c)
        ax.plot(epochs, y.mean(0), color=f'C{i}', label=f'c={c}: min')
        ax.fill_between(epochs, y.min(0), y.max(0), color=f'C{i}', alpha=0.2)
        ax.plot(epochs, _mean_curve(full, 'median', loss=loss, norm=norm, c=c)[1].mean(0), color=f'C{i}', ls=':')
      dictionary = next(r['dictionary'] for r in full['runs'] if r['loss'] == loss)
      ax.set(
        title=f'{loss} loss, M={dictionary}, {norm} norm',
        xlabel='epoch',
        ylim=(0, 1.02),
        ylabel='max|cos| (min: solid, median: dotted)',
      )
      ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle('Full rank p = d = m = 20, warm start, alternating, weight normalisation (band: seed range)')
    fig.tight_layout()
    storage.save_figure(fig, storage.join(out, 'fullrank.png'), dpi=100)
    plt.close(fig)
  probes = [(s, n, r) for s, objs in studies.items() if s.startswith('infonce_') for n, r in objs.items()]
  base = studies.get('grid', {}).get(Objective('infonce').name)
  if probes or base:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    entries = ([('grid (baseline)', base, {'sparsity': 0.1})] if base else []) + [(s, r, {}) for s, _, r in probes]
    for i, (label, res, fixed) in enumerate(entries):
      for ax, key in zip(axes, ('min', 'median')):
        epochs, y = _mean_curve(res, key, **fixed)
        ax.plot(epochs, y.mean(0), color=f'C{i}', label=label)
    for ax, key in zip(axes, ('min', 'median')):
      ax.set(title=f'InfoNCE: {key} over latents of max|cos|', xlabel='epoch', ylim=(0, 1.02))
      ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    storage.save_figure(fig, storage.join(out, 'infonce_probes.png'), dpi=100)
    plt.close(fig)
  gsg = {n: r for n, r in studies.get('grid', {}).items() if getattr(stored(n), 'loss', None) == 'gsg'}
  if gsg:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    pairs = ('pair_11', 'pair_12', 'pair_21', 'pair_22')
    for i, (name, res) in enumerate(gsg.items()):
      vals = [np.nanmean([r['end'].get(k, np.nan) for r in res['runs']]) for k in pairs]
      ax.bar(np.arange(4) + 0.8 * i / len(gsg), vals, width=0.8 / len(gsg), label=name)
    ax.axhline(0.25, color='k', ls=':')
    ax.set_xticks(np.arange(4) + 0.4 - 0.4 / len(gsg), ['a–c', 'a–d', 'b–c', 'b–d'])
    ax.set(title='GSG: fraction of samples per chosen cross-image pair (end of training)', ylabel='fraction')
    ax.legend(fontsize=7)
    fig.tight_layout()
    storage.save_figure(fig, storage.join(out, 'gsg_pairs.png'), dpi=100)
    plt.close(fig)
  long_grid = (long_results or {}).get('studies', {}).get('grid', {})
  if long_grid:
    names = list(long_grid)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
      res = long_grid[name]
      fixed = {'sparsity': 0.1} if res['runs'][0]['mask_prob'] is None else {'sparsity': 0.1, 'mask_prob': 0.5}
      for key, color in (('max', 'C2'), ('median', 'C0'), ('min', 'C3')):
        epochs, y = _mean_curve(res, key, **fixed)
        ax.plot(epochs, y.mean(0), color=color, label=f'{key}, 8000 epochs (1 seed)')
        short = studies.get('grid', {}).get(name)
        if short:
          e2, y2 = _mean_curve(short, key, seed=res['runs'][0]['seed'], **fixed)
          ax.plot(e2, y2.mean(0), color=color, ls='--', lw=2.5, alpha=0.6, label=f'{key}, reduced run (same seed)')
      ax.set(title=name, xlabel='epoch', ylim=(0, 1.02))
      ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    storage.save_figure(fig, storage.join(out, 'long_vs_reduced.png'), dpi=100)
    plt.close(fig)
