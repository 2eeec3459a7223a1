"""Evaluate a trained run's checkpoint: kNN, linear probes and collapse diagnostics, each beside its floors.

    python -m gsg_jax.evaluate --workdir=RUN [--step=N] \
        [--protocols=knn,fast_linear,diagnostics[,linear]] [--linear_protocol=cifar|imagenet|fast] \
        [--memory_data=PATH --heldout_data=PATH]

or, from Python, ``evaluate_run(workdir, step=None, protocols=(...)) -> dict``.

The run's ``config.json`` rebuilds the dataset and network, the checkpoint
(latest, or ``step``) is restored, and backbone features (network in
evaluation mode, running BatchNorm statistics) are extracted. The memory
split (kNN bank, probes' training set) is the run's whole training split,
read chunk by chunk and streamed from TFDS where the data layer holds only
part of it; the held-out split is the run's. ``--memory_data`` and
``--heldout_data`` (given together) evaluate against other labelled data
instead: a folder or zip of ``<class>/<image>`` or ``<split>/<class>/<image>``
(``--memory_split`` / ``--heldout_split`` name the split folders; defaults
``train`` and the first of ``test``, ``val``, ``validation``), or
``tfds:NAME:SPLIT`` (TFDS ``data_dir`` from the run's config); see
``gsg_jax.evaluation.labelled``. Protocols:

* ``knn``: weighted kNN at the config's k and T (``config.eval.knn_k``,
  ``knn_temperature``; the GSG reference's k = 200, T = 0.2 by default), with
  k = 20 and 200 and T = 0.1 beside them (``gsg_jax.evaluation.protocols``
  names the keys), top-1 / top-5 (percent).
* ``fast_linear``: the ``fast`` linear protocol on precomputed features.
* ``linear``: the linear protocol ``--linear_protocol`` names
  (``gsg_jax.evaluation.linear_probe.LINEAR_PROTOCOLS``: ``cifar``,
  ``imagenet`` on augmented images with the frozen encoder, or ``fast``);
  slow on a CPU, so off by default.
* ``diagnostics``: effective rank, normalised std and singular spectrum of
  held-out features and projections, collapse flag, alignment / uniformity of
  two augmented views of the held-out images, the covariance rank and RankMe
  (Garrido et al. 2023) of features and projections, the Wasserstein
  uniformity of the projections (Koromilas et al. 2024), and, for runs with a predictor,
  the eigenspace alignment of the predictor's local linear map (its Jacobian
  at the mean projection) with the eigenbasis of E[z zᵀ] of its inputs.

With any of the first three, the floors (``gsg_jax.evaluation.floors``: kNN
and fast-probe accuracy of raw pixels and of the random-init encoder on the
same splits, cached once per dataset) are reported beside them, and
``beats_raw_pixels`` says whether kNN and linear top-1 exceed the raw-pixel floors.

Results go to ``<workdir>/eval/step_<N>.json`` and ``<workdir>/eval/latest.json``
(metrics of protocols evaluated earlier at the same step are kept, newer
values win), with a 2-D PCA of the held-out features (and the features of a
fixed subset of them) in ``eval/embedding_step_<N>.npz`` / ``embedding_latest.npz``
for the report;
evaluations on other data go to ``eval/<data tag>/`` instead, so the run's own
``latest.json`` stays the run's. The JSON records the data used (``data``),
the kNN settings (``knn``), each linear protocol with its hyperparameters
(``fast_linear_protocol``, ``linear_protocol``) and the floors (``floors``).
A Markdown summary is printed.

User mistakes (a missing run directory or checkpoint, unreadable data, an
unknown protocol) raise ``gsg_jax.errors.UserError`` subclasses (a
FileNotFoundError, PermissionError or ValueError as well); the command line
prints them as one line and exits with status 1, and any other exception
keeps its traceback.
"""

import functools
import hashlib
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax import cli, data, storage
from gsg_jax.data import augment
from gsg_jax.encoder import find_run  # The one reader of a run directory: its config and checkpoint steps.
from gsg_jax.errors import ConfigError, MissingPathError, UnusablePathError
from gsg_jax.evaluation import diagnostics, labelled
from gsg_jax.evaluation import floors as floors_lib
from gsg_jax.evaluation.features import map_in_batches
from gsg_jax.evaluation.linear_probe import LINEAR_PROTOCOLS, resolve_protocol, run_image_protocol
from gsg_jax.evaluation.protocols import frozen_metrics, knn_settings
from gsg_jax.training import build_trainer
from gsg_jax.training.checkpointing import Checkpointer
from gsg_jax.training.outputs import quiet_library_logs

PROTOCOLS = ('knn', 'fast_linear', 'linear', 'diagnostics')
DEFAULT_PROTOCOLS = ('knn', 'fast_linear', 'diagnostics')
DEFAULT_LINEAR_PROTOCOL = 'cifar'
# Held-out feature rows kept beside the PCA for the report's t-SNE/UMAP (its TSNE_MAX_POINTS): a fixed subset,
# so the file stays small for ImageNet's 50,000 × 2,048 features.
EMBEDDING_FEATURES_MAX = 1000


def _restore(run, dataset, trainer):
  """The whole train state at ``run.step`` (``encoder.find_run`` has checked that the step exists)."""
  config = run.config
  checkpointer = Checkpointer(run.workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  shape = tuple(dataset.train.image_shape)
  like = jax.eval_shape(lambda key: trainer.init(key, shape), jax.random.key(0))
  like = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
  try:
    state = checkpointer.restore(like, run.step)  # A ConfigError for a checkpoint of another config.
  finally:
    checkpointer.close()
  return state


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


def _features(encode_fn, heldout, batch_size: int):
  """(outputs..., labels) of ``encode_fn`` over every held-out chunk, concatenated."""
  parts, labels = [], []
  for images, y in heldout.chunks(batch_size):
    parts.append(map_in_batches(lambda batch, start: encode_fn(batch), images, batch_size))
    labels.append(np.asarray(y, np.int32))
  return [np.concatenate(p) for p in zip(*parts)] + [np.concatenate(labels)]


def evaluate_run(
  workdir: str,
  step: int | None = None,
  protocols=DEFAULT_PROTOCOLS,
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
  floors: bool = True,
  write: bool = True,
) -> dict:
  """Evaluate the checkpoint at ``step`` (default latest) of the run in ``workdir``; returns the results dict.

  ``linear_protocol`` (a ``LINEAR_PROTOCOLS`` name) is what the ``linear``
  protocol runs, with ``linear_overrides`` (any of its settings) and the
  shorthands ``linear_epochs``, ``linear_lr`` (base lr), ``linear_batch_size``
  applied; ``fast_linear_epochs`` overrides the ``fast`` protocol's epochs.
  ``memory_data`` / ``heldout_data``: other labelled data (module docstring).
  ``floors=False`` skips the floors.
  """
  workdir = storage.resolve(workdir)
  protocols = tuple(p.strip() for p in protocols if p.strip())
  unknown = [p for p in protocols if p not in PROTOCOLS]
  if unknown:
    raise ConfigError(f'unknown protocols {unknown}: expected some of {PROTOCOLS}.')
  shorthands = {
    'epochs': linear_epochs,
    'batch_size': linear_batch_size,
    ('lr' if linear_protocol == 'fast' else 'base_lr'): linear_lr,
  }
  overrides = {**(linear_overrides or {}), **{k: v for k, v in shorthands.items() if v is not None}}
  try:
    resolve_protocol(linear_protocol, overrides)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if (memory_data is None) != (heldout_data is None):
    raise ConfigError(
      '--memory_data and --heldout_data go together: give both (the kNN bank / probe training '
      'set, and the held-out set).'
    )
  run = find_run(workdir, step)  # The run directory, its config and the checkpoint step, or a one-line error.
  config = run.config
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
  step = int(state.step)
  network, cfg = trainer.network, trainer.views.config
  batch_size = int(config.eval.batch_size)

  @jax.jit
  def apply(variables, images_u8):
    out = network.apply(variables, augment.preprocess_eval(images_u8, cfg), train=False, with_predictor=False)
    return out['features'], out['projection']

  variables = trainer.network_variables(state.params, state.model_state)
  held_f, held_p, labels_h = _features(functools.partial(apply, variables), heldout, batch_size)
  encode_features = lambda images: apply(variables, images)[0]

  knn = knn_settings(config.eval)
  fast_overrides = {} if fast_linear_epochs is None else {'epochs': fast_linear_epochs}
  fast = resolve_protocol('fast', fast_overrides)
  max_linear_gb = float(config.eval.get('fast_linear_max_gb', 16.0))
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
    'num_heldout': len(labels_h),
    'feature_dim': int(held_f.shape[1]),
    'projection_dim': int(held_p.shape[1]),
    'protocols': list(protocols),
    'metrics': {},
  }
  metrics = result['metrics']
  frozen = functools.partial(
    frozen_metrics, memory=memory, num_classes=num_classes, batch_size=batch_size, max_linear_gb=max_linear_gb
  )

  if 'knn' in protocols or 'fast_linear' in protocols:
    metrics.update(
      frozen(
        encode_features,
        heldout_features=held_f,
        heldout_labels=labels_h,
        knn=knn if 'knn' in protocols else None,
        fast_linear=fast if 'fast_linear' in protocols else None,
      )
    )
  if 'knn' in protocols:
    result['knn'] = knn
  if 'fast_linear' in protocols:
    result['fast_linear_protocol'] = fast
  if 'linear' in protocols:
    protocol = resolve_protocol(linear_protocol, overrides, cfg)
    if protocol['inputs'] == 'features':
      r = frozen(encode_features, heldout_features=held_f, heldout_labels=labels_h, knn=None, fast_linear=protocol)
      r = {'top1': r['fast_linear_top1'], 'top5': r['fast_linear_top5']}
    else:
      encode = lambda x: network.apply(variables, x, method='encode')
      r = run_image_protocol(protocol, encode, memory, heldout, num_classes, cfg)
    metrics['linear_top1'], metrics['linear_top5'] = float(r['top1']), float(r['top5'])
    result['linear_protocol'] = protocol
  if 'diagnostics' in protocols:
    metrics.update(diagnostics.collapse_report(held_f, held_p))
    metrics.update(diagnostics.rank_report(held_f, held_p))
    metrics['features/singular_values'] = [float(s) for s in diagnostics.singular_values(held_f)]
    metrics['projections/singular_values'] = [float(s) for s in diagnostics.singular_values(held_p)]

    @jax.jit
    def two_views(images_u8, key):
      v = augment.augment_batch(key, images_u8, 2, cfg)
      n = v.shape[0]
      out = network.apply(variables, v.reshape((-1,) + v.shape[2:]), train=False, with_predictor=False)
      return out['features'].reshape(n, 2, -1), out['projection'].reshape(n, 2, -1)

    key, offset = jax.random.key(0), [0]

    def views_of_chunk(batch, start):
      return two_views(batch, jax.random.fold_in(key, offset[0] + start))

    parts = []
    for images, _ in heldout.chunks(batch_size):
      parts.append(map_in_batches(views_of_chunk, images, batch_size))
      offset[0] += len(images)
    fv, pv = (np.concatenate(p) for p in zip(*parts))
    for name, v in (('features', fv), ('projections', pv)):
      metrics[f'{name}/alignment'] = float(diagnostics.alignment(v[:, 0], v[:, 1]))
      metrics[f'{name}/uniformity'] = float(diagnostics.uniformity(v[:, 0]))

    metrics.update(predictor_diagnostics(trainer, state, held_p))

  if floors and set(protocols) & {'knn', 'fast_linear', 'linear'}:
    result['floors'] = compute_floors(
      config, workdir, trainer, memory, heldout, num_classes, knn, fast, tuple(dataset.train.image_shape)
    )
    _mark(result)

  if write:
    result['eval_dir'] = eval_dir
    _write(result, result['eval_dir'], held_f, labels_h)
  return result


def compute_floors(
  config, workdir: str, trainer, memory, heldout, num_classes: int, knn: dict, fast: dict, image_shape
) -> dict:
  """``{'raw_pixels': metrics, 'random_init': metrics, 'cache_dir': ...}`` (see ``gsg_jax.evaluation.floors``)."""
  cache = floors_lib.cache_dir(config, workdir)
  batch_size = int(config.eval.batch_size)
  frozen = functools.partial(
    frozen_metrics,
    memory=memory,
    num_classes=num_classes,
    knn=knn,
    fast_linear=fast,
    batch_size=batch_size,
    max_linear_gb=float(config.eval.get('fast_linear_max_gb', 16.0)),
  )

  def of(encode_fn):
    held, labels = _features(lambda images: (encode_fn(images),), heldout, batch_size)
    return frozen(encode_fn, heldout_features=held, heldout_labels=labels)

  def random_init():
    state = floors_lib.random_init_state(trainer, config, image_shape)
    variables = trainer.network_variables(state.params, state.model_state)
    return of(
      jax.jit(
        lambda images: trainer.network.apply(variables, augment.preprocess_eval(images, config.augment), train=False)[
          'features'
        ]
      )
    )

  keys = {kind: floors_lib.floor_key(kind, config, memory, heldout, knn, fast) for kind in floors_lib.KINDS}
  compute = {'raw_pixels': lambda: of(floors_lib.raw_pixel_encoder(config.augment)), 'random_init': random_init}
  return {**floors_lib.get_or_compute(cache, keys, compute), 'cache_dir': cache}


def _mark(result: dict) -> None:
  """``beats_raw_pixels``: kNN top-1 and linear top-1 (standard protocol, else fast) above the raw-pixel floors."""
  if 'floors' in result:
    m = result['metrics']
    result['beats_raw_pixels'] = floors_lib.beats_raw_pixels(
      {'knn_top1': m.get('knn_top1'), 'fast_linear_top1': m.get('linear_top1', m.get('fast_linear_top1'))},
      result['floors'],
    )


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
      for key in ('knn', 'fast_linear_protocol', 'linear_protocol', 'floors', 'beats_raw_pixels'):
        if key not in result and key in previous:
          result[key] = previous[key]
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


def predictor_diagnostics(trainer, state, projections) -> dict:
  """The predictor's linear map W_p, the correlation F of its inputs, and their eigenspace alignment.

  W_p is read directly for linear and set predictors (``linear``, ``directpred``,
  ``directcopy``), is the Jacobian at the mean projection for the MLP, and I for
  ``none``. F is the moving F̂ a set predictor keeps, else E[z zᵀ] of the held-out
  projections ``projections``. Reports the eigenvalues of F and of W_p's symmetric
  part (descending) and ``diagnostics.eigenspace_alignment`` of W_p in F's eigenbasis.
  """
  predictor, network = trainer.method.predictor, trainer.network
  w = predictor.matrix(state.params)
  if w is None and network.predictor is not None:  # The MLP: its local linear map.
    variables = {'params': state.params['predictor'], 'batch_stats': state.model_state.get('predictor', {})}
    w = diagnostics.mlp_jacobian(lambda z: network.predictor.apply(variables, z, train=False), projections.mean(0))
  if w is None:
    w = jnp.eye(projections.shape[1])
  w = jnp.asarray(w, jnp.float32)
  stored = state.extras['predictor'].get('correlation')
  if stored is not None and int(state.extras['predictor']['count']) > 0:
    correlation, source = jnp.asarray(stored), 'moving F̂ of training batches'
  else:
    p = jnp.asarray(projections, jnp.float32)
    correlation, source = p.T @ p / p.shape[0], 'held-out projections'
  out = {f'predictor/{k}': v for k, v in diagnostics.eigenspace_alignment(w, None, correlation=correlation).items()}
  out['predictor/correlation_source'] = source
  out['predictor/correlation_eigenvalues'] = [float(v) for v in jnp.linalg.eigvalsh(correlation)[::-1]]
  out['predictor/wp_eigenvalues'] = [float(v) for v in jnp.linalg.eigvalsh(0.5 * (w + w.T))[::-1]]
  return out


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
  if key.startswith('knn_top') and key.split('@')[0] in ('knn_top1', 'knn_top5'):
    return key
  if key in ('fast_linear_top1', 'fast_linear_top5', 'linear_top1', 'linear_top5'):
    return 'fast_linear_' + key.rsplit('_', 1)[1]
  return None


def markdown_summary(result: dict) -> str:
  """A Markdown table of the scalar metrics of ``evaluate_run``'s result, floors beside kNN and linear figures."""
  floors = result.get('floors') or {}
  raw, init = floors.get('raw_pixels', {}), floors.get('random_init', {})
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
  if 'knn' in result:
    lines.append(
      f"kNN: k = {result['knn']['k']}, T = {result['knn']['temperature']:g} (the config's; keys `_t0.1`: T = 0.1)."
    )
  if 'linear_protocol' in result:
    p = result['linear_protocol']
    lines.append(f'Linear protocol `{p["name"]}`: ' + ', '.join(f'{k} {v}' for k, v in p.items() if k != 'name'))
  used = result['metrics'].get('fast_linear_train_examples', result['num_memory'])
  if used < result['num_memory']:
    lines.append(
      f'The fast probe trained on a random {used} of the {result["num_memory"]} memory images '
      '(eval.fast_linear_max_gb).'
    )
  if floors:
    lines.append(
      'Floors: raw pixels and the random-init encoder on the same splits (fast probe beside every linear '
      'figure)'
      + ('' if result.get('beats_raw_pixels') is not False else '; **this run does not beat raw pixels**')
      + '.'
    )
  lines += ['', '| metric | value | raw pixels | random init |', '|---|---|---|---|']
  fmt = lambda v: '–' if v is None else f'{v:.4g}'
  for key, value in result['metrics'].items():
    if isinstance(value, bool):
      lines.append(f'| {key} | {value} | | |')
    elif isinstance(value, (int, float)):
      floor = _floor_of(key)
      beside = f'| {fmt(raw.get(floor))} | {fmt(init.get(floor))} |' if floor and floors else '| | |'
      lines.append(f'| {key} | {value:.4g} {beside}')
  return '\n'.join(lines)


def _describe(d: dict) -> str:
  if d.get('kind') == 'tfds':
    return f'TFDS {d["name"]}:{d["split"]}'
  if d.get('kind') == 'folder':
    return d['path'] + (f' ({d["split"]})' if d.get('split') else '')
  return f"the run's {d.get('role', 'data')} split"


def main(argv):
  del argv
  from absl import flags

  quiet_library_logs()
  f = flags.FLAGS
  result = evaluate_run(
    f.workdir,
    f.step,
    tuple(f.protocols.split(',')),
    linear_protocol=f.linear_protocol,
    linear_epochs=f.linear_epochs,
    linear_lr=f.linear_lr,
    linear_batch_size=f.linear_batch_size,
    fast_linear_epochs=f.fast_linear_epochs,
    memory_data=f.memory_data,
    heldout_data=f.heldout_data,
    memory_split=f.memory_split,
    heldout_split=f.heldout_split,
    floors=f.floors,
  )
  print(markdown_summary(result))
  print(f'\nWritten to {storage.join(result["eval_dir"], "step_%d.json" % result["step"])}')


def _define_flags():
  from absl import flags

  flags.DEFINE_string('workdir', None, 'Run directory (with config.json and checkpoints/).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string('protocols', ','.join(DEFAULT_PROTOCOLS), f'Comma-separated subset of {PROTOCOLS}.')
  flags.DEFINE_string(
    'linear_protocol',
    DEFAULT_LINEAR_PROTOCOL,
    f'What the linear protocol runs: one of {tuple(LINEAR_PROTOCOLS)} '
    '(gsg_jax.evaluation.linear_probe.LINEAR_PROTOCOLS).',
  )
  flags.DEFINE_integer('linear_epochs', None, "Override the linear protocol's epochs.")
  flags.DEFINE_float('linear_lr', None, "Override the linear protocol's base lr (× batch/256; the fast probe's lr).")
  flags.DEFINE_integer('linear_batch_size', None, "Override the linear protocol's batch size.")
  flags.DEFINE_integer('fast_linear_epochs', None, "Override the fast linear probe's epochs (default 100).")
  flags.DEFINE_string(
    'memory_data',
    None,
    'Other labelled data as kNN bank / probe training set: a folder or zip '
    'of <class>/<image> or <split>/<class>/<image>, or tfds:NAME:SPLIT (with --heldout_data).',
  )
  flags.DEFINE_string('heldout_data', None, 'Other labelled held-out data, as --memory_data.')
  flags.DEFINE_string('memory_split', '', "Split folder of --memory_data (default 'train' when there is one).")
  flags.DEFINE_string(
    'heldout_split',
    '',
    'Split folder of --heldout_data (default the first of test, val, validation when there is one).',
  )
  flags.DEFINE_bool('floors', True, 'Report the raw-pixel and random-init floors (cached).')
  flags.mark_flag_as_required('workdir')


def run():
  """The command line: ``python -m gsg_jax.evaluate``."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
