"""Compare trained runs: a Markdown table and three plots.

    python -m gsg_jax.report RUN [RUN ...] [--out=DIR]

or ``make_report(workdirs, out_dir) -> str`` (the Markdown). Each run's
``eval/latest.json`` is used (``gsg_jax.evaluation.run.evaluate_run`` with
the run's ``config.eval.protocols`` is run first when it is missing or lacks
one of them). Written to ``out_dir`` (default ``./report``):

* ``report.md``: method, dataset, backbone, epochs, batch size, training
  time, then the report columns of the evaluators the runs ran
  (``gsg_jax.evaluation.evaluator``: kNN top-1 at the run's k and T, the fast
  and standard linear probes, effective rank, collapse flag, ...), each
  figure with a floor beside it (raw pixels / random-init encoder on the same
  splits; the fast probe's beside linear figures), and whether the row beats
  raw pixels (**no** marks one that does not);
* ``loss_knn.png``: training loss (left) and kNN top-1 (right) against epoch,
  all runs on shared axes, from each run's ``metrics.jsonl``, with the kNN
  floors (raw pixels, random init) that the training monitor logged dashed;
* ``spectra.png``: singular values of the held-out features (left) and
  projections (right), each divided by its largest, log scale;
* ``embedding.png``: 2-D PCA of the held-out backbone features coloured by
  class (named where the data has names: the built-in dataset's shapes), one
  panel per run;
* ``embedding_tsne.png`` (and ``embedding_umap.png`` when ``umap-learn`` is
  installed): the same features, up to ``TSNE_MAX_POINTS`` of them, by
  t-SNE (UMAP), which keeps neighbourhoods that a linear projection merges.

Every figure is FIGURE_SIZE_PX = 1200 × 500 pixels (``figsize`` 12 × 5 inches
at ``dpi`` 100, saved without ``bbox_inches='tight'`` so the size is exact).
"""

import importlib.util
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gsg_jax import storage
from gsg_jax.errors import ConfigError
from gsg_jax.run_dir import load_metrics  # noqa: F401 (the one reader of metrics.jsonl; also report's API)

DPI = 100
FIGURE_SIZE_PX = (1200, 500)  # width × height in pixels.
TSNE_MAX_POINTS = 1000  # t-SNE's cost grows faster than linearly: a fixed random subsample keeps a report quick.
TSNE_EXACT_MAX_POINTS = 200


def _figure(ncols: int):
  fig, axes = plt.subplots(1, ncols, figsize=(FIGURE_SIZE_PX[0] / DPI, FIGURE_SIZE_PX[1] / DPI), dpi=DPI, squeeze=False)
  return fig, axes[0]


def _save(fig, path: str):
  storage.save_figure(fig, path, DPI)  # No bbox_inches='tight': keeps the stated pixel size.
  plt.close(fig)


def load_eval(workdir: str) -> dict:
  """``<workdir>/eval/latest.json``, running the evaluation first if it is missing or incomplete."""
  if _has_complete_eval(workdir):
    return storage.read_json(storage.join(workdir, 'eval', 'latest.json'))
  from gsg_jax.evaluation.run import evaluate_run

  return evaluate_run(workdir)  # The run's protocols; metrics saved earlier at the same step are kept.


def run_label(result: dict, workdir: str) -> str:
  return f'{result["method"]} [{storage.basename(workdir)}]'


def _fmt(value, spec='.2f'):
  return '–' if value is None else format(value, spec)


def _cell(m: dict, column) -> str:
  value = m.get(column.key)
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  return _fmt(value, column.format) if isinstance(value, (int, float)) or value is None else str(value)


def _floors_cell(m: dict, key: str) -> str:
  raw, init = (m.get(f'floors/{kind}/{key}') for kind in ('raw_pixels', 'random_init'))
  return '–' if raw is None and init is None else f'{_fmt(raw)} / {_fmt(init)}'


def markdown_table(results: list[dict], labels: list[str], train_seconds: list[float | None] | None = None) -> str:
  """One row per run: the report columns of its evaluators, a floor cell beside each figure that has floors, whether
  it beats raw pixels, and its training wall time (``summary.json``'s, evaluations during training included)."""
  from gsg_jax.evaluation.evaluator import columns

  cols = columns({p for r in results for p in r.get('protocols', [])})
  headers = []
  for c in cols:
    headers.append(c.header + (f' (k, T: {_knn_settings(results)})' if c.key == 'knn_top1' else ''))
    if c.floor:
      headers.append('floors: raw / init' + ('' if c.floor == c.key else f' ({c.floor})'))
  lines = [
    '| run | method | dataset | backbone | epochs | batch size | train time | '
    + ' | '.join(headers)
    + ' | beats raw pixels |',
    '|---|---|---|---|---|---|---|' + '---|' * (len(headers) + 1),
  ]
  for result, label, seconds in zip(results, labels, train_seconds or [None] * len(results)):
    m = result.get('metrics', {})
    cells = []
    for c in cols:
      cells.append(_cell(m, c))
      if c.floor:
        cells.append(_floors_cell(m, c.floor))
    beats = result.get('beats_raw_pixels')
    lines.append(
      f'| {label} | {result["method"]} | {result["dataset"]} | {result["backbone"]} '
      f'| {result["epochs"]:.3g} | {result["batch_size"]} | {_minutes(seconds)} | '
      + ' | '.join(cells)
      + f' | {"–" if beats is None else ("yes" if beats else "**no**")} |'
    )
  return '\n'.join(lines)


def _knn_settings(results) -> str:
  settings = sorted({(s['k'], s['temperature']) for r in results for s in [r.get('settings', {}).get('knn')] if s})
  return '; '.join(f'{k}, {t:g}' for k, t in settings) or '–'


def _minutes(seconds: float | None) -> str:
  return '–' if seconds is None else f'{seconds / 60:.1f} min'


def train_seconds(workdir: str) -> float | None:
  """The run's training wall time from ``summary.json``, None before it finished."""
  return (storage.read_json_if_present(storage.join(workdir, 'summary.json')) or {}).get('train_seconds')


FLOOR_KINDS = (('raw_pixels', 'raw pixels', 'black'), ('random_init', 'random init', 'dimgray'))


def knn_floors(rows: list[dict]) -> dict[str, float]:
  """{kind: kNN top-1} of the floors the training monitor logged with its evaluations (``floors/<kind>/knn_top1``)."""
  floors = {}
  for row in rows:
    for kind, _, _ in FLOOR_KINDS:
      value = row.get(f'floors/{kind}/knn_top1')
      if row.get('kind') == 'eval' and value is not None:
        floors.setdefault(kind, value)
  return floors


def plot_loss_knn(workdirs, labels, path: str):
  """Loss and kNN top-1 against epoch; every run's kNN floors (raw pixels, random init) dashed beside its curve."""
  fig, (ax_loss, ax_knn) = _figure(2)
  drawn = {}  # (kind, value) -> label: runs on the same data share their floors' lines.
  for workdir, label in zip(workdirs, labels):
    # The last record of each step: a resumed run re-logs the steps a crashed part logged past its checkpoint.
    rows = list({(r.get('kind'), r.get('step')): r for r in load_metrics(workdir)}.values())
    rows.sort(key=lambda r: r.get('step', 0))
    train = [r for r in rows if r.get('kind') == 'train' and r.get('loss') is not None]
    evals = [r for r in rows if r.get('kind') == 'eval' and r.get('knn_top1') is not None]
    if train:
      ax_loss.plot([r['epoch'] for r in train], [r['loss'] for r in train], marker='.', label=label)
    if evals:
      ax_knn.plot([r['epoch'] for r in evals], [r['knn_top1'] for r in evals], marker='o', label=label)
    for kind, name, colour in FLOOR_KINDS:
      value = knn_floors(rows).get(kind)
      if value is not None and (kind, round(value, 6)) not in drawn:
        floor_label = f'floor: {name}' if len(workdirs) == 1 else f'floor: {name} [{storage.basename(workdir)}]'
        drawn[(kind, round(value, 6))] = floor_label
        ax_knn.axhline(value, color=colour, linestyle='--', linewidth=1.2, label=floor_label)
  ax_loss.set(title='Training loss', xlabel='epoch', ylabel='loss')
  ax_knn.set(title='kNN top-1 on held-out images (dashed: floors)', xlabel='epoch', ylabel='kNN top-1 (%)')
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
    ax.set(title=f'Singular-value spectrum of held-out {name}', xlabel='index i', ylabel='σ_i / σ_1 (log scale)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize='small')
  fig.tight_layout()
  _save(fig, path)


def run_class_names(workdir: str) -> list[str] | None:
  """The class names of a run's data where the data has them (the built-in dataset's shapes), else None."""
  config = storage.read_json_if_present(storage.join(workdir, 'config.json')) or {}
  if config.get('data', {}).get('source') == 'builtin':
    from gsg_jax.data.synthetic import SHAPES

    return list(SHAPES)
  return None


def plot_embeddings(workdirs, labels, path: str):
  fig, axes = _figure(len(workdirs))
  for ax, workdir, label in zip(axes, workdirs, labels):
    d = storage.load_npz(storage.join(workdir, 'eval', 'embedding_latest.npz'))
    emb, classes = d['embedding'], d['labels']
    _scatter_by_class(ax, emb, classes, run_class_names(workdir))
    ax.set(title=f'PCA of held-out features: {label}', xlabel='PC 1', ylabel='PC 2')
  fig.tight_layout()
  _save(fig, path)


def _scatter_by_class(ax, points, classes, class_names=None):
  """Points coloured by class; the legend names each class where ``class_names`` has it, else its index."""
  cmap = plt.get_cmap('tab10')
  for c in np.unique(classes):
    mask = classes == c
    name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else f'class {int(c)}'
    ax.scatter(points[mask, 0], points[mask, 1], color=cmap(int(c) % 10), s=6, alpha=0.8, label=name)
  ax.legend(fontsize='x-small', markerscale=2, loc='best')


def heldout_features(workdir: str, step: int, max_points: int = TSNE_MAX_POINTS):
  """(features [n, D], labels [n]) of at most ``max_points`` of the run's held-out images, a fixed random subset.

  The features are ``eval/embedding_latest.npz``'s ``features`` (with their
  ``feature_labels``) when the evaluation stored them, else the encoder's at ``step``
  (``gsg_jax.encoder.load_encoder``) on the run's held-out split.
  """
  subset = lambda n: np.sort(np.random.default_rng(0).permutation(n)[:max_points])
  d = storage.load_npz(storage.join(workdir, 'eval', 'embedding_latest.npz'))
  if 'features' in d:
    labels = d.get('feature_labels', d['labels'])
    keep = subset(len(labels))
    return d['features'][keep].astype(np.float32), labels[keep]
  from gsg_jax import data
  from gsg_jax.encoder import load_encoder

  encoder = load_encoder(workdir, step)
  heldout = data.load_dataset(encoder.config.data).heldout
  keep = subset(len(heldout))
  return encoder(heldout.images[keep]), heldout.labels[keep]


def nonlinear_2d(features: np.ndarray, method: str = 'tsne', seed: int = 0) -> np.ndarray:
  """[n, D] → [n, 2] by t-SNE (scikit-learn; perplexity min(30, (n − 1)/3), PCA init; exact up to
  ``TSNE_EXACT_MAX_POINTS`` points, Barnes-Hut above) or UMAP (umap-learn)."""
  features = np.asarray(features, np.float32)
  if method == 'umap':
    import umap

    return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(features), np.float32)
  from sklearn.manifold import TSNE

  perplexity = max(1.0, min(30.0, (len(features) - 1) / 3))  # t-SNE needs perplexity < n.
  # Below a few hundred points the exact O(n²) gradient is cheaper than Barnes-Hut's tree and thread overhead.
  method = 'exact' if len(features) <= TSNE_EXACT_MAX_POINTS else 'barnes_hut'
  tsne = TSNE(2, perplexity=perplexity, init='pca', method=method, random_state=seed)
  return tsne.fit_transform(features).astype(np.float32)


def plot_nonlinear_embeddings(features, labels, path: str, method: str = 'tsne', class_names=None):
  """One panel per run of ``features`` = [(features, classes), ...], by ``nonlinear_2d``; ``class_names``: one list
  (or None) per run, for the legends."""
  name = {'tsne': 't-SNE', 'umap': 'UMAP'}[method]
  fig, axes = _figure(len(features))
  for i, (ax, (points, classes), label) in enumerate(zip(axes, features, labels)):
    if len(points) >= 3:
      _scatter_by_class(ax, nonlinear_2d(points, method), classes, class_names[i] if class_names else None)
    else:
      ax.text(0.5, 0.5, f'{len(points)} held-out images: too few', ha='center', transform=ax.transAxes)
    ax.set(title=f'{name} of held-out features: {label}', xlabel=f'{name} 1', ylabel=f'{name} 2')
  fig.tight_layout()
  _save(fig, path)


def make_report(workdirs, out_dir: str) -> str:
  """Evaluate (if needed) and compare the runs in ``workdirs``; writes report.md and the PNGs to ``out_dir``."""
  workdirs, out_dir = [storage.resolve(w) for w in workdirs], storage.resolve(out_dir)
  if not workdirs:
    raise ConfigError('make_report needs at least one run directory.')
  storage.makedirs(out_dir)
  results = [load_eval(w) for w in workdirs]
  labels = [run_label(r, w) for r, w in zip(results, workdirs)]
  plot_loss_knn(workdirs, labels, storage.join(out_dir, 'loss_knn.png'))
  plot_spectra(results, labels, storage.join(out_dir, 'spectra.png'))
  plot_embeddings(workdirs, labels, storage.join(out_dir, 'embedding.png'))
  features = [heldout_features(w, r['step']) for w, r in zip(workdirs, results)]
  nonlinear = ['tsne'] + (['umap'] if importlib.util.find_spec('umap') else [])
  for method in nonlinear:
    plot_nonlinear_embeddings(
      features, labels, storage.join(out_dir, f'embedding_{method}.png'), method, [run_class_names(w) for w in workdirs]
    )
  text = '\n'.join(
    [
      '# Run comparison',
      '',
      markdown_table(results, labels, [train_seconds(w) for w in workdirs]),
      '',
      "kNN: weighted, at each run's k and T. Fast linear: the fast probe on frozen features; linear: the "
      'standard protocol. Floors: raw pixels / random-init encoder, same splits and protocol (the fast probe '
      'beside every linear figure); beats raw pixels: kNN and linear top-1 both above the raw-pixel floors. '
      "Effective rank of held-out backbone features; collapsed: projections' normalised std < 0.1/√D.",
      '',
      f'Figures ({FIGURE_SIZE_PX[0]}×{FIGURE_SIZE_PX[1]} px): ![loss and kNN](loss_knn.png) '
      '![spectra](spectra.png) ![embedding](embedding.png) '
      + ' '.join(f'![{m}](embedding_{m}.png)' for m in nonlinear),
      '',
    ]
  )
  storage.write_text(storage.join(out_dir, 'report.md'), text)
  return text


def check_runs(workdirs) -> list[str]:
  """The run directories, resolved, each checked before any work: one that does not exist, is a file, or holds
  neither an evaluation nor a checkpoint to evaluate is a one-line ``UserError``."""
  from gsg_jax.run_dir import find_run

  if not workdirs:
    raise ConfigError('no run directories given: gsg-report RUN [RUN ...] [--out=DIR].')
  resolved = [storage.resolve(w) for w in workdirs]
  for workdir in resolved:
    if not _has_complete_eval(workdir):
      find_run(workdir)  # Raises what is missing: the folder, its config.json, or a checkpoint.
  return resolved


def _has_complete_eval(workdir: str) -> bool:
  """An ``eval/latest.json`` of every protocol the run's config names, with the embedding beside it."""
  from gsg_jax.evaluation.run import configured_protocols
  from gsg_jax.run_dir import load_config

  result = (
    storage.read_json_if_present(storage.join(workdir, 'eval', 'latest.json')) if storage.isdir(workdir) else None
  )
  if not result or not storage.exists(storage.join(workdir, 'eval', 'embedding_latest.npz')):
    return False
  return set(configured_protocols(load_config(workdir))) <= set(result.get('protocols', []))


def main(argv):
  from absl import flags

  from gsg_jax.training.outputs import quiet_library_logs

  out = flags.FLAGS.out
  workdirs = check_runs(argv[1:])
  storage.ensure_writable_dir(out, '--out')
  quiet_library_logs()
  print(make_report(workdirs, out))
  print(f'Written to {storage.resolve(out)}', file=sys.stderr)


def run():
  """The ``gsg-report`` command: ``gsg-report RUN [RUN ...] [--out=DIR]``."""
  from absl import flags

  from gsg_jax import cli

  flags.DEFINE_string('out', 'report', 'Output folder for report.md and the figures.')
  cli.run(main)


if __name__ == '__main__':
  run()
