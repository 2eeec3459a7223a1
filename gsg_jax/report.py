"""Compare trained runs: a Markdown table and three plots.

    python -m gsg_jax.report RUN [RUN ...] [--out=DIR]

or ``make_report(workdirs, out_dir) -> str`` (the Markdown). Each run's
``eval/latest.json`` is used (``gsg_jax.evaluate.evaluate_run`` with its
default protocols is run first when it is missing or lacks the kNN, fast
linear or diagnostics metrics). Written to ``out_dir`` (default ``./report``):

* ``report.md``: method, dataset, backbone, epochs, batch size, kNN top-1
  (k = 20), linear top-1 (standard protocol when evaluated, else the fast
  probe, marked "(fast)"), effective rank of the held-out features, collapse flag;
* ``loss_knn.png``: training loss (left) and kNN top-1 (right) against epoch,
  all runs on shared axes, from each run's ``metrics.jsonl``;
* ``spectra.png``: singular values of the held-out features (left) and
  projections (right), each divided by its largest, log scale;
* ``embedding.png``: 2-D PCA of the held-out backbone features coloured by
  class, one panel per run.

Every figure is FIGURE_SIZE_PX = 1200 × 500 pixels (``figsize`` 12 × 5 inches
at ``dpi`` 100, saved without ``bbox_inches='tight'`` so the size is exact).
"""

import json
import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
FIGURE_SIZE_PX = (1200, 500)  # width × height in pixels.


def _figure(ncols: int):
  fig, axes = plt.subplots(1, ncols, figsize=(FIGURE_SIZE_PX[0] / DPI, FIGURE_SIZE_PX[1] / DPI), dpi=DPI,
                           squeeze=False)
  return fig, axes[0]


def _save(fig, path: str):
  fig.savefig(path, dpi=DPI)  # No bbox_inches='tight': keeps the stated pixel size.
  plt.close(fig)


_NEEDED = ('knn_top1@20', 'fast_linear_top1', 'features/effective_rank', 'features/singular_values')


def load_eval(workdir: str) -> dict:
  """``<workdir>/eval/latest.json``, running the evaluation first if it is missing or incomplete."""
  path = os.path.join(workdir, 'eval', 'latest.json')
  embedding = os.path.join(workdir, 'eval', 'embedding_latest.npz')
  if os.path.exists(path) and os.path.exists(embedding):
    with open(path) as f:
      result = json.load(f)
    if all(k in result.get('metrics', {}) for k in _NEEDED):
      return result
  from gsg_jax.evaluate import evaluate_run
  return evaluate_run(workdir)  # Default protocols; metrics saved earlier at the same step are kept.


def load_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          pass  # A line cut short by a crash.
  return rows


def run_label(result: dict, workdir: str) -> str:
  return f"{result['method']} [{os.path.basename(os.path.normpath(workdir))}]"


def _fmt(value, spec='.2f'):
  return '–' if value is None else format(value, spec)


def markdown_table(results: list[dict], labels: list[str]) -> str:
  lines = ['| run | method | dataset | backbone | epochs | batch size | kNN top-1 (%) | linear top-1 (%) '
           '| effective rank | collapsed |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for result, label in zip(results, labels):
    m = result.get('metrics', {})
    knn = m.get('knn_top1@20', m.get('knn_top1'))
    if m.get('linear_top1') is not None:
      linear = _fmt(m['linear_top1'])
    elif m.get('fast_linear_top1') is not None:
      linear = _fmt(m['fast_linear_top1']) + ' (fast)'
    else:
      linear = '–'
    collapsed = m.get('collapsed')
    lines.append(f"| {label} | {result['method']} | {result['dataset']} | {result['backbone']} "
                 f"| {result['epochs']:.3g} | {result['batch_size']} | {_fmt(knn)} | {linear} "
                 f"| {_fmt(m.get('features/effective_rank'), '.1f')} "
                 f"| {'–' if collapsed is None else ('yes' if collapsed else 'no')} |")
  return '\n'.join(lines)


def plot_loss_knn(workdirs, labels, path: str):
  fig, (ax_loss, ax_knn) = _figure(2)
  for workdir, label in zip(workdirs, labels):
    rows = load_metrics(workdir)
    train = [r for r in rows if r.get('kind') == 'train' and r.get('loss') is not None]
    evals = [r for r in rows if r.get('kind') == 'eval' and r.get('knn_top1') is not None]
    if train:
      ax_loss.plot([r['epoch'] for r in train], [r['loss'] for r in train], marker='.', label=label)
    if evals:
      ax_knn.plot([r['epoch'] for r in evals], [r['knn_top1'] for r in evals], marker='o', label=label)
  ax_loss.set(title='Training loss', xlabel='epoch', ylabel='loss')
  ax_knn.set(title='kNN top-1 on held-out images', xlabel='epoch', ylabel='kNN top-1 (%)')
  for ax in (ax_loss, ax_knn):
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
  fig.tight_layout()
  _save(fig, path)


def plot_spectra(results, labels, path: str):
  fig, axes = _figure(2)
  for ax, name in zip(axes, ('features', 'projections')):
    for result, label in zip(results, labels):
      sigma = np.asarray(result.get('metrics', {}).get(f'{name}/singular_values', []), np.float64)
      if sigma.size and sigma[0] > 0:
        normalised = np.maximum(sigma / sigma[0], 1e-12)
        ax.semilogy(np.arange(1, len(sigma) + 1), normalised, label=label)
    ax.set(title=f'Singular-value spectrum of held-out {name}', xlabel='index i',
           ylabel='σ_i / σ_1 (log scale)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize='small')
  fig.tight_layout()
  _save(fig, path)


def plot_embeddings(workdirs, labels, path: str):
  fig, axes = _figure(len(workdirs))
  for ax, workdir, label in zip(axes, workdirs, labels):
    with np.load(os.path.join(workdir, 'eval', 'embedding_latest.npz')) as d:
      emb, classes = d['embedding'], d['labels']
    cmap = plt.get_cmap('tab10')
    for c in np.unique(classes):
      mask = classes == c
      ax.scatter(emb[mask, 0], emb[mask, 1], color=cmap(int(c) % 10), s=6, alpha=0.8, label=f'class {int(c)}')
    ax.legend(fontsize='x-small', markerscale=2, loc='best')
    ax.set(title=f'PCA of held-out features: {label}', xlabel='PC 1', ylabel='PC 2')
  fig.tight_layout()
  _save(fig, path)


def make_report(workdirs, out_dir: str) -> str:
  """Evaluate (if needed) and compare the runs in ``workdirs``; writes report.md and the PNGs to ``out_dir``."""
  workdirs = [os.path.abspath(w) for w in workdirs]
  if not workdirs:
    raise ValueError('make_report needs at least one run directory.')
  os.makedirs(out_dir, exist_ok=True)
  results = [load_eval(w) for w in workdirs]
  labels = [run_label(r, w) for r, w in zip(results, workdirs)]
  plot_loss_knn(workdirs, labels, os.path.join(out_dir, 'loss_knn.png'))
  plot_spectra(results, labels, os.path.join(out_dir, 'spectra.png'))
  plot_embeddings(workdirs, labels, os.path.join(out_dir, 'embedding.png'))
  text = '\n'.join([
      '# Run comparison', '', markdown_table(results, labels), '',
      'kNN: weighted, k = 20, T = 0.1. Linear: standard protocol when evaluated, otherwise the fast probe '
      'on frozen features. Effective rank of held-out backbone features; collapsed: projections\' '
      'normalised std < 0.1/√D.', '',
      f'Figures ({FIGURE_SIZE_PX[0]}×{FIGURE_SIZE_PX[1]} px): ![loss and kNN](loss_knn.png) '
      '![spectra](spectra.png) ![embedding](embedding.png)', ''])
  with open(os.path.join(out_dir, 'report.md'), 'w') as f:
    f.write(text)
  return text


def main(argv=None):
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+', help='run directories')
  parser.add_argument('--out', default='report', help='output directory (default ./report)')
  args = parser.parse_args(argv)
  from gsg_jax.training.outputs import quiet_library_logs
  quiet_library_logs()
  print(make_report(args.runs, args.out))
  print(f'Written to {os.path.abspath(args.out)}', file=sys.stderr)


if __name__ == '__main__':
  main()
