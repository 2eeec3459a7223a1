"""Evaluate a trained run's checkpoint: kNN, linear probes and collapse diagnostics.

    python -m gsg_jax.evaluate --workdir=RUN [--step=N] \
        [--protocols=knn,fast_linear,diagnostics[,linear]] [--linear_epochs=...]

or, from Python, ``evaluate_run(workdir, step=None, protocols=(...)) -> dict``.

The run's ``config.json`` rebuilds the dataset and network, the checkpoint
(latest, or ``step``) is restored, and backbone features and projections
(network in evaluation mode, running BatchNorm statistics) are extracted for
the memory and held-out splits. Protocols:

* ``knn``: weighted kNN, k = 20 and 200, T = 0.1, top-1 / top-5 (percent).
* ``fast_linear``: linear classifier on the precomputed features (top-1 / top-5).
* ``linear``: the standard linear protocol (augmented images, frozen encoder);
  slow on a CPU, so off by default.
* ``diagnostics``: effective rank, normalised std and singular spectrum of
  held-out features and projections, collapse flag, alignment / uniformity of
  two augmented views of the held-out images, the covariance rank and RankMe
  (Garrido et al. 2023) of features and projections, the Wasserstein
  uniformity of the projections (Koromilas et al. 2024), and, for runs with a predictor,
  the eigenspace alignment of the predictor's local linear map (its Jacobian
  at the mean projection) with the eigenbasis of E[z zᵀ] of its inputs.

Results go to ``<workdir>/eval/step_<N>.json`` and ``<workdir>/eval/latest.json``
(metrics of protocols evaluated earlier at the same step are kept, newer
values win), with a 2-D PCA of the held-out features in
``eval/embedding_step_<N>.npz`` / ``embedding_latest.npz`` for the report;
a Markdown summary is printed. ``--step`` must name a saved checkpoint
(``checkpoints/<step>``); a workdir without config.json or checkpoints
raises FileNotFoundError naming it.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gsg_jax import data
from gsg_jax.data import augment
from gsg_jax.evaluation import diagnostics
from gsg_jax.evaluation.features import map_in_batches
from gsg_jax.evaluation.knn import weighted_knn
from gsg_jax.evaluation.linear_probe import fast_linear_probe, linear_probe
from gsg_jax.training import build_trainer
from gsg_jax.training.checkpointing import Checkpointer
from gsg_jax.training.outputs import quiet_library_logs

PROTOCOLS = ('knn', 'fast_linear', 'linear', 'diagnostics')
DEFAULT_PROTOCOLS = ('knn', 'fast_linear', 'diagnostics')
_TUPLE_KEYS = {'augment': ('crop_scale', 'crop_ratio', 'blur_sigma', 'mean', 'std'),
               'distributed': ('local_device_ids',), 'optim': ('rules',)}


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from ``<workdir>/config.json``, with JSON lists turned back into tuples."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir!r} has no config.json: not a training run directory '
                            '(train with gsg_jax.main first).')
  with open(path) as f:
    raw = json.load(f)
  for block, keys in _TUPLE_KEYS.items():
    for key in keys:
      if key in raw.get(block, {}) and isinstance(raw[block][key], list):
        raw[block][key] = tuple(tuple(v) if isinstance(v, list) else v for v in raw[block][key])
  if not isinstance(raw.get('method', {}).get('predictor'), str):
    raise ValueError(f'{path} was written before the method design of loss/target/predictor: its checkpoints '
                     'cannot be read by this version (see the README, "Checkpoint compatibility").')
  return ml_collections.ConfigDict(raw)


def _restore(config, workdir: str, step, dataset, trainer):
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  steps = []
  if os.path.isdir(ckpt_dir):
    checkpointer = Checkpointer(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
    steps = sorted(checkpointer.manager.all_steps())
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {workdir!r} (looked in {ckpt_dir}).')
  if step is not None and step not in steps:
    checkpointer.close()
    raise FileNotFoundError(f'no checkpoint for step {step} in {workdir!r}; available steps: {steps}.')
  shape = tuple(dataset.train.image_shape)
  like = jax.eval_shape(lambda key: trainer.init(key, shape), jax.random.key(0))
  like = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
  state = checkpointer.restore(like, step)
  checkpointer.close()
  return state


def _linear_augment_config(cfg):
  """The linear-evaluation augmentation: random resized crop and flip only."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.jitter_prob, cfg.grayscale_prob, cfg.blur_prob = 0.0, 0.0, 0.0
  return cfg


def evaluate_run(workdir: str, step: int | None = None, protocols=DEFAULT_PROTOCOLS, *,
                 linear_epochs: int = 100, linear_lr: float = 30.0, linear_batch_size: int = 256,
                 fast_linear_epochs: int = 100, write: bool = True) -> dict:
  """Evaluate the checkpoint at ``step`` (default latest) of the run in ``workdir``; returns the results dict."""
  workdir = os.path.abspath(workdir)
  protocols = tuple(p.strip() for p in protocols if p.strip())
  unknown = [p for p in protocols if p not in PROTOCOLS]
  if unknown:
    raise ValueError(f'unknown protocols {unknown}: expected some of {PROTOCOLS}.')
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir!r} does not exist.')
  config = load_config(workdir)
  dataset = data.load_dataset(config.data)
  steps_per_epoch = max(dataset.train.steps_per_epoch(config.batch_size), 1)
  trainer = build_trainer(config, steps_per_epoch, dataset.num_classes)
  state = _restore(config, workdir, step, dataset, trainer)
  step = int(state.step)
  variables = trainer.network_variables(state.params, state.model_state)
  network, cfg = trainer.network, trainer.views.config
  batch_size = int(config.eval.batch_size)

  @jax.jit
  def outputs(images_u8):
    x = augment.preprocess_eval(images_u8, cfg)
    out = network.apply(variables, x, train=False, with_predictor=False)
    return out['features'], out['projection']

  mem_f, mem_p = map_in_batches(lambda batch, start: outputs(batch), dataset.memory.images, batch_size)
  held_f, held_p = map_in_batches(lambda batch, start: outputs(batch), dataset.heldout.images, batch_size)
  labels_m, labels_h = dataset.memory.labels, dataset.heldout.labels

  result = {'workdir': workdir, 'method': trainer.method.name, 'loss': config.method.loss,
            'target': config.method.target, 'predictor': config.method.predictor, 'dataset': dataset.name,
            'backbone': config.model.backbone, 'batch_size': int(config.batch_size), 'step': step,
            'epochs': step / steps_per_epoch, 'configured_epochs': int(config.num_epochs),
            'num_memory': len(labels_m), 'num_heldout': len(labels_h),
            'feature_dim': int(mem_f.shape[1]), 'projection_dim': int(mem_p.shape[1]),
            'protocols': list(protocols), 'metrics': {}}
  metrics = result['metrics']

  if 'knn' in protocols:
    metrics.update(weighted_knn(mem_f, labels_m, held_f, labels_h, dataset.num_classes, ks=(20, 200),
                                temperature=0.1))
  if 'fast_linear' in protocols:
    r = fast_linear_probe(mem_f, labels_m, held_f, labels_h, dataset.num_classes, epochs=fast_linear_epochs)
    metrics['fast_linear_top1'], metrics['fast_linear_top5'] = float(r['top1']), float(r['top5'])
  if 'linear' in protocols:
    lin_cfg = _linear_augment_config(cfg)
    encode = lambda x: network.apply(variables, x, method='encode')
    aug = lambda key, imgs: augment.augment_batch(key, imgs, 1, lin_cfg)[:, 0]
    r = linear_probe(encode, dataset.memory.images, labels_m, dataset.heldout.images, labels_h,
                     dataset.num_classes, augment_fn=aug, eval_preprocess_fn=lambda x: augment.preprocess_eval(x, cfg),
                     epochs=linear_epochs, batch_size=linear_batch_size, base_lr=linear_lr)
    metrics['linear_top1'], metrics['linear_top5'] = float(r['top1']), float(r['top5'])
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
      f = out['features'].reshape(n, 2, -1)
      p = out['projection'].reshape(n, 2, -1)
      return f, p

    key = jax.random.key(0)
    fv, pv = map_in_batches(lambda batch, start: two_views(batch, jax.random.fold_in(key, start)),
                            dataset.heldout.images, batch_size)
    for name, v in (('features', fv), ('projections', pv)):
      metrics[f'{name}/alignment'] = float(diagnostics.alignment(v[:, 0], v[:, 1]))
      metrics[f'{name}/uniformity'] = float(diagnostics.uniformity(v[:, 0]))

    metrics.update(predictor_diagnostics(trainer, state, held_p))

  if write:
    out_dir = os.path.join(workdir, 'eval')
    os.makedirs(out_dir, exist_ok=True)
    previous_path = os.path.join(out_dir, f'step_{step}.json')
    if os.path.exists(previous_path):  # Keep the metrics of protocols evaluated earlier at this step.
      try:
        with open(previous_path) as f:
          previous = json.load(f)
        result['metrics'] = {**previous.get('metrics', {}), **result['metrics']}
        result['protocols'] = sorted(set(previous.get('protocols', [])) | set(result['protocols']))
      except (OSError, ValueError):
        pass
    text = json.dumps(result, indent=2)
    for name in (f'step_{step}.json', 'latest.json'):
      with open(os.path.join(out_dir, name), 'w') as f:
        f.write(text)
    # 2-D PCA of the held-out features, for gsg_jax.report's embedding plot.
    embedding = pca_2d(held_f)
    for name in (f'embedding_step_{step}.npz', 'embedding_latest.npz'):
      np.savez(os.path.join(out_dir, name), embedding=embedding, labels=np.asarray(labels_h))
  return result


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


def markdown_summary(result: dict) -> str:
  """A Markdown table of the scalar metrics of ``evaluate_run``'s result."""
  lines = [f"## {result['method']} on {result['dataset']}, "
           f"{result['backbone']}, step {result['step']} ({result['epochs']:.3g} epochs, batch {result['batch_size']})",
           '', '| metric | value |', '|---|---|']
  for key, value in result['metrics'].items():
    if isinstance(value, bool):
      lines.append(f'| {key} | {value} |')
    elif isinstance(value, (int, float)):
      lines.append(f'| {key} | {value:.4g} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  from absl import flags
  quiet_library_logs()
  f = flags.FLAGS
  result = evaluate_run(f.workdir, f.step, tuple(f.protocols.split(',')), linear_epochs=f.linear_epochs,
                        linear_lr=f.linear_lr, linear_batch_size=f.linear_batch_size,
                        fast_linear_epochs=f.fast_linear_epochs)
  print(markdown_summary(result))
  print(f"\nWritten to {os.path.join(result['workdir'], 'eval', 'step_%d.json' % result['step'])}")


def _define_flags():
  from absl import flags
  flags.DEFINE_string('workdir', None, 'Run directory (with config.json and checkpoints/).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string('protocols', ','.join(DEFAULT_PROTOCOLS), f'Comma-separated subset of {PROTOCOLS}.')
  # The standard protocol on CIFAR (MoCo/SimSiam linear evaluation as used by CIFAR follow-ups): 100 epochs,
  # SGD, base lr 30, batch 256, cosine. About 100 × (memory split) encoder passes: use fewer epochs on a CPU.
  flags.DEFINE_integer('linear_epochs', 100, 'Epochs of the standard linear protocol.')
  flags.DEFINE_float('linear_lr', 30.0, 'Base lr (× batch/256) of the standard linear protocol.')
  flags.DEFINE_integer('linear_batch_size', 256, 'Batch size of the standard linear protocol.')
  flags.DEFINE_integer('fast_linear_epochs', 100, 'Epochs of the fast linear probe.')
  flags.mark_flag_as_required('workdir')


if __name__ == '__main__':
  from absl import app
  _define_flags()
  app.run(main)
