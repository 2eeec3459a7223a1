"""Evaluate a trained run's checkpoint: ``evaluate_run(workdir, step=None, protocols=None) -> dict``.

The command line is ``gsg-evaluate`` (``python -m gsg_jax.evaluate``). The
run's ``config.json`` rebuilds the dataset and network, the checkpoint
(latest, or ``step``) is restored, and the evaluators ``protocols`` names run
(default ``config.eval.protocols``; ``gsg_jax.evaluation.evaluator`` holds the
registry: ``knn``, ``fast_linear``, ``linear``, ``diagnostics``, ``predictor``,
``online_probe``, ``floors``, and any registered from outside). They share
one ``Context``: the held-out outputs are computed once and the memory split
is encoded once for every evaluator that reads it.

The memory split (kNN bank, probes' training set) is the run's whole training
split, read chunk by chunk and streamed from TFDS where the data layer holds
only part of it; the held-out split is the run's. ``memory_data`` and
``heldout_data`` (given together) evaluate against other labelled data
instead: a folder or zip of ``<class>/<image>`` or ``<split>/<class>/<image>``
(``memory_split`` / ``heldout_split`` name the split folders; defaults
``train`` and the first of ``test``, ``val``, ``validation``), or
``tfds:NAME:SPLIT`` (TFDS ``data_dir`` from the run's config); see
``gsg_jax.evaluation.labelled``.

Results go to ``<workdir>/eval/step_<N>.json`` and ``<workdir>/eval/latest.json``
(metrics of protocols evaluated earlier at the same step are kept, newer
values win), with a 2-D PCA of the held-out features (and the features of a
fixed subset of them) in ``eval/embedding_step_<N>.npz`` / ``embedding_latest.npz``
for the report; evaluations on other data go to ``eval/<data tag>/`` instead,
so the run's own ``latest.json`` stays the run's. The JSON records the data
used (``data``), each evaluator's settings (``settings``: kNN's k and T, the
probes' hyperparameters), the metrics, and ``beats_raw_pixels`` where the
floors ran.

User mistakes (a missing run directory or checkpoint, unreadable data, an
unknown protocol) raise ``gsg_jax.errors.UserError`` subclasses (a
FileNotFoundError, PermissionError or ValueError as well).
"""

import hashlib
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax import data, storage
from gsg_jax.errors import ConfigError, MissingPathError, UnusablePathError
from gsg_jax.evaluation import labelled
from gsg_jax.evaluation.context import network_context
from gsg_jax.evaluation.evaluator import get_evaluators, run_evaluators
from gsg_jax.evaluation.floors import beats_raw_pixels
from gsg_jax.evaluation.linear import DEFAULT_PROTOCOL as DEFAULT_LINEAR_PROTOCOL
from gsg_jax.evaluation.linear_probe import resolve_protocol
from gsg_jax.run_dir import find_run, restore  # The one reader of a run directory.
from gsg_jax.training import build_trainer

# What a run's config.json written before config.eval.protocols existed gets (its version's defaults).
DEFAULT_PROTOCOLS = ('knn', 'fast_linear', 'diagnostics', 'predictor', 'floors')
# Held-out feature rows kept beside the PCA for the report's t-SNE/UMAP (its TSNE_MAX_POINTS): a fixed subset,
# so the file stays small for ImageNet's 50,000 × 2,048 features.
EMBEDDING_FEATURES_MAX = 1000


def configured_protocols(config) -> tuple:
  """``config.eval.protocols``: what ``gsg-evaluate``, ``gsg-sweep`` and ``gsg-report`` run by default."""
  return tuple(config.eval.get('protocols', DEFAULT_PROTOCOLS))


def _restore(run, dataset, trainer):
  """The whole train state at ``run.step`` (``run_dir.find_run`` has checked that the step exists)."""
  shape = tuple(dataset.train.image_shape)
  like = jax.eval_shape(lambda key: trainer.init(key, shape), jax.random.key(0))
  like = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
  return restore(run, like)  # A ConfigError for a checkpoint of another config.


def _open_external(memory_data, heldout_data, memory_split, heldout_split, config):
  """(memory, heldout) ``LabelledImages`` that the command line's data flags name; a UserError for unreadable data."""
  opened = []
  for flag, spec, role, split in (
    ('memory_data', memory_data, 'memory', memory_split),
    ('heldout_data', heldout_data, 'heldout', heldout_split),
  ):
    try:
      opened.append(
        labelled.open_data(
          spec,
          role,
          config.data.image_size,
          config.data.data_dir,
          split,
          class_names=opened[0].class_names if opened else None,
        )
      )
    except FileNotFoundError as e:
      raise MissingPathError(f'--{flag}={spec}: {e}') from e
    except PermissionError as e:
      raise UnusablePathError(f'--{flag}={spec}: {e}') from e
    except (OSError, ValueError) as e:  # Unreadable file, bad zip, wrong layout, TFDS dataset not prepared.
      raise ConfigError(f'--{flag}={spec}: {e}') from e
  return opened


def _data_tag(memory, heldout) -> str:
  """The folder name under ``eval/`` of an evaluation on other data."""

  def name(d):
    if d['kind'] == 'tfds':
      return f'{d["name"]}-{d["split"]}'
    base = os.path.splitext(storage.basename(d['path']))[0]
    return base + (f'-{d["split"]}' if d.get('split') else '')

  digest = hashlib.sha256(
    json.dumps([memory.description, heldout.description], sort_keys=True, default=str).encode()
  ).hexdigest()[:8]
  slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', f'{name(memory.description)}_{name(heldout.description)}')
  return f'data-{slug}-{digest}'


def evaluate_run(
  workdir: str,
  step: int | None = None,
  protocols=None,
  *,
  linear_protocol: str = DEFAULT_LINEAR_PROTOCOL,
  linear_overrides: dict | None = None,
  linear_epochs: int | None = None,
  linear_lr: float | None = None,
  linear_batch_size: int | None = None,
  fast_linear_epochs: int | None = None,
  memory_data: str | None = None,
  heldout_data: str | None = None,
  memory_split: str = '',
  heldout_split: str = '',
  write: bool = True,
) -> dict:
  """Evaluate the checkpoint at ``step`` (default latest) of the run in ``workdir``; returns the results dict.

  ``protocols``: evaluator names (default ``config.eval.protocols``).
  ``linear_protocol`` (a ``LINEAR_PROTOCOLS`` name) is what the ``linear``
  evaluator runs, with ``linear_overrides`` (any of its settings) and the
  shorthands ``linear_epochs``, ``linear_lr`` (base lr), ``linear_batch_size``
  applied; ``fast_linear_epochs`` overrides the ``fast`` protocol's epochs.
  ``memory_data`` / ``heldout_data``: other labelled data (module docstring).
  """
  workdir = storage.resolve(workdir)
  if protocols is not None:
    get_evaluators(protocols, 'protocols')  # An unknown name is told before any work.
  shorthands = {
    'epochs': linear_epochs,
    'batch_size': linear_batch_size,
    ('lr' if linear_protocol == 'fast' else 'base_lr'): linear_lr,
  }
  overrides = {**(linear_overrides or {}), **{k: v for k, v in shorthands.items() if v is not None}}
  resolve_protocol(linear_protocol, overrides)  # A ConfigError for an unknown protocol or setting.
  options = {
    'linear': {'protocol': linear_protocol, 'overrides': overrides},
    'fast_linear': {'overrides': {} if fast_linear_epochs is None else {'epochs': fast_linear_epochs}},
  }
  if (memory_data is None) != (heldout_data is None):
    raise ConfigError(
      '--memory_data and --heldout_data go together: give both (the kNN bank / probe training '
      'set, and the held-out set).'
    )
  run = find_run(workdir, step)  # The run directory, its config and the checkpoint step, or a one-line error.
  config = run.config
  evaluators = get_evaluators(configured_protocols(config) if protocols is None else protocols)
  external = memory_data is not None
  if external:
    memory, heldout = _open_external(memory_data, heldout_data, memory_split, heldout_split, config)
  eval_dir = storage.join(workdir, 'eval', *([_data_tag(memory, heldout)] if external else []))
  if write:  # Before any work: a read-only run directory is told at once, not after the features.
    try:
      storage.ensure_writable_dir(eval_dir, 'the evaluation folder')
    except UnusablePathError as e:
      raise UnusablePathError(f'{e} Evaluate a writable copy of the run directory.') from e
  try:
    dataset = data.load_dataset(config.data)
  except (OSError, ValueError) as e:  # The run's data are not readable here (moved, not prepared).
    raise ConfigError(f"the run's data (config.data in {workdir}/config.json) cannot be read: {e}") from e
  if not external and not len(dataset.heldout):
    raise ConfigError(
      f'the run in {workdir} trained on unlabelled images without data.eval_path: give labelled '
      'data to evaluate on with --memory_data and --heldout_data.'
    )
  if not external:
    memory, heldout = labelled.run_memory(dataset, config), labelled.run_heldout(dataset, config)
  # An unlabelled training folder has num_classes 0; its data.eval_path splits carry their own labels.
  num_classes = len(memory.class_names) if external else dataset.num_classes or int(dataset.memory.labels.max()) + 1
  steps_per_epoch = max(dataset.train.steps_per_epoch(config.batch_size), 1)
  trainer = build_trainer(config, steps_per_epoch, dataset.num_classes)
  state = _restore(run, dataset, trainer)
  ctx = network_context(
    config, workdir, dataset.train.image_shape, memory, heldout, num_classes, trainer, options
  ).at_state(state)
  metrics, settings = run_evaluators(evaluators, ctx)
  step = int(state.step)
  held = ctx.heldout_outputs
  result = {
    'workdir': workdir,
    'method': trainer.method.name,
    'loss': config.method.loss,
    'target': config.method.target,
    'predictor': config.method.predictor,
    'dataset': dataset.name,
    'backbone': config.model.backbone,
    'batch_size': int(config.batch_size),
    'step': step,
    'epochs': step / steps_per_epoch,
    'configured_epochs': int(config.num_epochs),
    'data': {'memory': memory.description, 'heldout': heldout.description},
    'num_memory': memory.num_examples,
    'num_heldout': len(held['labels']),
    'feature_dim': int(held['features'].shape[1]),
    'projection_dim': int(held['projection'].shape[1]),
    'protocols': [e.name for e in evaluators],
    'settings': settings,
    'metrics': metrics,
  }
  if write:
    result['eval_dir'] = eval_dir
    _write(result, eval_dir, held['features'], held['labels'])
  else:
    _mark(result)
  return result


def _mark(result: dict) -> None:
  """``beats_raw_pixels``: kNN top-1 and linear top-1 (standard protocol, else fast) above the raw-pixel floors."""
  beats = beats_raw_pixels(result['metrics'])
  if beats is not None:
    result['beats_raw_pixels'] = beats


def _write(result: dict, out_dir: str, held_features, held_labels) -> None:
  """``step_<N>.json`` and ``latest.json`` (merged with an earlier evaluation of the step), and the 2-D embedding."""
  storage.makedirs(out_dir)
  step = result['step']
  previous_path = storage.join(out_dir, f'step_{step}.json')
  if storage.exists(previous_path):  # Keep the metrics of protocols evaluated earlier at this step.
    try:
      previous = storage.read_json(previous_path)
      result['metrics'] = {**previous.get('metrics', {}), **result['metrics']}
      result['protocols'] = sorted(set(previous.get('protocols', [])) | set(result['protocols']))
      result['settings'] = {**previous.get('settings', {}), **result['settings']}
    except (OSError, ValueError):
      pass
  _mark(result)
  text = json.dumps(result, indent=2)
  for name in (f'step_{step}.json', 'latest.json'):
    storage.write_text(storage.join(out_dir, name), text)
  # 2-D PCA of the held-out features, for gsg_jax.report's embedding plot.
  # And the features of a fixed subset, for its t-SNE/UMAP views (no second pass of the encoder over the split).
  embedding, labels = pca_2d(held_features), np.asarray(held_labels)
  rows = np.sort(np.random.default_rng(0).permutation(len(labels))[:EMBEDDING_FEATURES_MAX])
  for name in (f'embedding_step_{step}.npz', 'embedding_latest.npz'):
    storage.save_npz(
      storage.join(out_dir, name),
      embedding=embedding,
      labels=labels,
      features=np.asarray(held_features)[rows].astype(np.float16),
      feature_labels=labels[rows],
    )


def pca_2d(x: np.ndarray) -> np.ndarray:
  """[N, D] → [N, 2]: the centred rows projected on their two leading principal directions."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  out = x @ vt[:2].T
  if out.shape[1] < 2:
    out = np.pad(out, [(0, 0), (0, 2 - out.shape[1])])
  return out.astype(np.float32)


def _floor_of(key: str) -> str | None:
  """The floors' key beside metric ``key`` (the fast probe's beside every linear figure), or None."""
  if key in ('knn_top1', 'knn_top5'):
    return key
  if key in ('fast_linear_top1', 'fast_linear_top5', 'linear_top1', 'linear_top5'):
    return 'fast_linear_' + key.rsplit('_', 1)[1]
  return None


def markdown_summary(result: dict) -> str:
  """A Markdown table of the scalar metrics of ``evaluate_run``'s result, floors beside kNN and linear figures."""
  m, settings = result['metrics'], result.get('settings', {})
  lines = [
    f'## {result["method"]} on {result["dataset"]}, '
    f'{result["backbone"]}, step {result["step"]} ({result["epochs"]:.3g} epochs, batch {result["batch_size"]})',
    '',
  ]
  described = {'memory': result.get('data', {}).get('memory', {}), 'heldout': result.get('data', {}).get('heldout', {})}
  lines.append(
    f'Memory: {_describe(described["memory"])}, {result["num_memory"]} images; held-out: '
    f'{_describe(described["heldout"])}, {result["num_heldout"]} images.'
  )
  if 'knn' in settings:
    knn = settings['knn']
    lines.append(f"kNN: k = {knn['k']}, T = {knn['temperature']:g} (the config's; keys `_t0.1`: T = 0.1).")
  if 'linear' in settings:
    p = settings['linear']
    lines.append(f'Linear protocol `{p["name"]}`: ' + ', '.join(f'{k} {v}' for k, v in p.items() if k != 'name'))
  used = m.get('fast_linear_train_examples', result['num_memory'])
  if used < result['num_memory']:
    lines.append(
      f'The fast probe trained on a random {used} of the {result["num_memory"]} memory images '
      '(eval.fast_linear_max_gb).'
    )
  floors = any(k.startswith('floors/') for k in m)
  if floors:
    lines.append(
      'Floors: raw pixels and the random-init encoder on the same splits (fast probe beside every linear '
      'figure)'
      + ('' if result.get('beats_raw_pixels') is not False else '; **this run does not beat raw pixels**')
      + '.'
    )
  lines += ['', '| metric | value | raw pixels | random init |', '|---|---|---|---|']
  fmt = lambda v: '–' if v is None else f'{v:.4g}'
  for key, value in m.items():
    if key.startswith('floors/'):
      continue
    if isinstance(value, bool):
      lines.append(f'| {key} | {value} | | |')
    elif isinstance(value, (int, float)):
      floor = _floor_of(key)
      raw, init = (m.get(f'floors/{kind}/{floor}') for kind in ('raw_pixels', 'random_init'))
      beside = f'| {fmt(raw)} | {fmt(init)} |' if floor and floors else '| | |'
      lines.append(f'| {key} | {value:.4g} {beside}')
  return '\n'.join(lines)


def _describe(d: dict) -> str:
  if d.get('kind') == 'tfds':
    return f'TFDS {d["name"]}:{d["split"]}'
  if d.get('kind') == 'folder':
    return d['path'] + (f' ({d["split"]})' if d.get('split') else '')
  return f"the run's {d.get('role', 'data')} split"
