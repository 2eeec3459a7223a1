"""Training loop: ``train_and_evaluate(config, workdir)``.

Reads top to bottom: data → trainer (pure step) → state, restored from the
latest checkpoint when there is one → loop (log, evaluate, checkpoint) →
summary. Re-running the same command in the same workdir resumes at the same
step, data order and random stream. SIGTERM/SIGINT finish the current step,
write a checkpoint and exit cleanly. A non-finite loss stops the run before
any non-finite state is checkpointed.
"""

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

from gsg_jax import config_lib, data, parallel, run_dir, storage
from gsg_jax.errors import ConfigError, NonFiniteLoss, Preempted
from gsg_jax.evaluation.monitor import Monitor
from gsg_jax.training.checkpointing import Checkpointer
from gsg_jax.training.image import build_trainer
from gsg_jax.training.outputs import MetricsLogger


def prepare_workdir(workdir: str) -> str:
  """Create ``workdir`` (a local folder or an object-store URL, ``gs://bucket/run``) and check it is writable,
  before any accelerator time is spent. Returns it resolved (``gsg_jax.storage.resolve``)."""
  if not workdir:
    raise ConfigError('--workdir is required.')
  return storage.ensure_writable_dir(workdir, 'workdir')


class _StopSignal:
  """Records SIGTERM/SIGINT so the loop can stop at a step boundary.

  In a multi-process job a signal reaches one host, but every host must stop at
  the same step, or the collective checkpoint save hangs. There SIGTERM is left
  to JAX's preemption service (installed by ``jax.distributed.initialize``),
  which agrees a step with all hosts: ``should_stop(step)`` asks it at every
  step, so all hosts checkpoint and stop together. SIGINT stays local.
  """

  def __init__(self):
    self.received = None
    self._previous = {}
    self._multi_process = jax.process_count() > 1

  def __enter__(self):
    signals = (signal.SIGINT,) if self._multi_process else (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread (e.g. some notebooks): no handler.
        pass
    return self

  def _handle(self, signum, frame):
    if self.received is not None:  # Second signal: give up waiting.
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def should_stop(self, step: int) -> bool:
    """Whether to checkpoint and stop after ``step``; the same answer on every host of a multi-process job."""
    if self._multi_process and multihost_utils.reached_preemption_sync_point(step):
      self.received = self.received or 'SIGTERM (preemption agreed by all hosts)'
    return self.received is not None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _mean_metrics(pending: list, first_step: int, last_checkpoint: int | None, base_lr: float) -> dict:
  """Fetch the metrics of the steps since the last log, check the loss, return their mean."""
  stacked = jax.device_get(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *pending))
  bad = np.flatnonzero(~np.isfinite(stacked['loss']))
  if bad.size:
    kept = (
      'no checkpoint was written yet'
      if last_checkpoint is None
      else f'the checkpoint at step {last_checkpoint} holds the last good state'
    )
    raise NonFiniteLoss(
      f'non-finite loss ({stacked["loss"][bad[0]]}) at step {first_step + bad[0] + 1}; stopping: '
      f'{kept}. Training diverged: try a lower learning rate (optim.base_lr={base_lr:g} now, e.g. '
      f'--config.optim.base_lr={base_lr / 4:g}) in a new --workdir.'
    )
  return {k: float(np.mean(v)) for k, v in stacked.items()}


# A held-out split smaller than this gives kNN / probe accuracies whose standard error (at 50 %) exceeds 2.5 points.
MIN_MEANINGFUL_HELDOUT = 400


def train_and_evaluate(config, workdir: str) -> dict:
  """Train as ``config`` says, writing checkpoints and metrics in ``workdir``; returns the run's summary.

  A ``workdir`` that holds a run is resumed only with that run's config
  (``gsg_jax.run_dir``: more epochs and another logging or evaluation cadence
  are allowed and recorded); a finished run is left unchanged and its summary
  returned.
  """
  config_lib.validate(config)
  workdir = prepare_workdir(workdir)
  changes = run_dir.check_config(workdir, config)  # Before anything is written: a run keeps its label.
  parallel.initialize_distributed(config.distributed)
  mesh = parallel.create_mesh()
  parallel.warn_if_cpu_only(config)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval.batch_size, mesh)
  batch_sharding = parallel.batch_sharding(mesh)

  dataset = data.load_dataset(config.data)
  steps_per_epoch = dataset.train.steps_per_epoch(config.batch_size)
  if steps_per_epoch < 1:
    raise ConfigError(f'batch_size={config.batch_size} exceeds the {dataset.train.num_examples} training images.')
  total_steps = config.num_epochs * steps_per_epoch
  is_writer = jax.process_index() == 0

  checkpointer = Checkpointer(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  latest = checkpointer.latest_step()
  if latest is not None:
    finished = run_dir.read_summary(workdir)
    try:
      run_dir.check_not_shortened(workdir, config.num_epochs, latest, steps_per_epoch)
    except ConfigError:
      checkpointer.close()
      raise
    if latest == total_steps and finished and finished.get('steps') == total_steps:
      checkpointer.close()
      if is_writer:
        print(
          f'{workdir}: this run finished at step {total_steps} ({config.num_epochs} epochs); nothing to do. '
          'To train it longer, raise --config.num_epochs.',
          flush=True,
        )
      return finished

  trainer = build_trainer(config, steps_per_epoch, dataset.num_classes)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  init, train_step = parallel.jit_trainer(trainer, mesh)
  state = init(init_rng, dataset.train.image_shape)
  if latest is not None:
    state = checkpointer.restore(state)
  step = int(state.step)
  if is_writer:
    run_dir.write_config(workdir, config)
  record = run_dir.RunRecord(workdir, steps_per_epoch, step, changes, write=is_writer)
  logger = MetricsLogger(workdir, total_steps, steps_per_epoch, config.batch_size)
  if latest is not None:
    changed = ''.join(f'; {k} {before!r} → {after!r}' for k, (before, after) in changes.items())
    logger.message(
      f'Resumed from the checkpoint at step {step} in {workdir}'
      + (f' (changes recorded in run.json{changed})' if changes else '')
      + '.'
    )
  logger.message(
    f'{trainer.method.name}: {config.model.backbone} on {dataset.name} '
    f'({dataset.train.num_examples} images), batch {config.batch_size}, '
    f'{total_steps} steps on {mesh.size} device(s).'
  )

  evaluate = Monitor(trainer, dataset, config, mesh, workdir) if len(dataset.heldout) else None
  if not dataset.num_classes:  # An unlabelled folder (gsg_jax.data.image_folder): no labels for the probe.
    logger.message(
      'Unlabelled training images: the online probe is off'
      + ('; the kNN monitor uses data.eval_path.' if evaluate else ', and so is the kNN monitor (no data.eval_path).')
    )
  if evaluate and len(dataset.heldout) < MIN_MEANINGFUL_HELDOUT:
    n = len(dataset.heldout)
    logger.message(
      f'Warning: the held-out split has only {n} images: its kNN and probe accuracies are uncertain '
      f'by about ±{100 * 0.5 / np.sqrt(n):.0f} points (standard error at 50 %). Hold out more images '
      '(data.heldout_fraction, data.max_examples, builtin_num_heldout).'
    )
  if step == 0 and evaluate:  # The random-init encoder: the baseline every later kNN figure is judged against.
    initial = evaluate(state)
    logger.write(0, initial, kind='eval')
    logger.message(evaluate.message(0, initial))

  pending, last_logged, train_metrics, eval_metrics, evaluated_at = [], step, {}, {}, None
  logger.start(step)
  try:
    with _StopSignal() as stop:
      for batch in dataset.train.batches(config.batch_size, config.seed, step, batch_sharding):
        if step >= total_steps:
          break
        state, metrics = train_step(state, batch, step_rng)
        step += 1
        pending.append(metrics)
        end = step == total_steps
        stopping = stop.should_stop(step)
        if step % config.log_every_steps == 0 or end or stopping or checkpointer.should_save(step):
          train_metrics = _mean_metrics(pending, last_logged, checkpointer.latest_step(), config.optim.base_lr)
          pending, last_logged = [], step
          rate = logger.progress(step, train_metrics['loss'])
          logger.write(step, {**train_metrics, 'images_per_second': rate})
        epoch_done = step % steps_per_epoch == 0 and (step // steps_per_epoch) % config.eval_every_epochs == 0
        if evaluate and (epoch_done or end):
          eval_metrics, evaluated_at = evaluate(state), step
          logger.write(step, eval_metrics, kind='eval')
          logger.message(evaluate.message(step, eval_metrics))
        if checkpointer.save(step, state, force=end or stopping):
          logger.flush()  # The metrics up to a checkpoint are kept with it, in an object store too.
          record.update(step)
        if stopping:
          raise Preempted(
            f'{stop.received} received: stopped after step {step}, checkpoint written in {workdir}. '
            'Run the same command again to resume.'
          )
    if evaluate and step == total_steps and evaluated_at != step:  # Resumed at the end: the final figures.
      eval_metrics = evaluate(state)
      logger.write(step, eval_metrics, kind='eval')
  finally:
    checkpointer.close()  # Waits for the last asynchronous save.
    logger.close()
    record.update(step)

  # The whole run's figures: this part's, else the last logged by an earlier part (one that ended at a checkpoint).
  logged_train, logged_eval = run_dir.last_records(workdir) if is_writer else ({}, {})
  train_metrics, eval_metrics = train_metrics or logged_train, eval_metrics or logged_eval
  seconds = record.total_seconds
  summary = {
    'method': trainer.method.name,
    'dataset': dataset.name,
    'steps': step,
    'epochs': step / steps_per_epoch,
    'final_loss': train_metrics.get('loss'),
    'projection_std': train_metrics.get('projection_std'),
    'knn_top1': eval_metrics.get('knn_top1'),
    'online_probe_top1': eval_metrics.get('online_probe_top1'),
    'train_seconds': seconds,
    'parts': len(record.record['parts']),
    'images_per_second': record.steps_trained * config.batch_size / max(seconds, 1e-9),
  }
  if is_writer:
    run_dir.write_summary(workdir, summary)
    logger.message(
      'Summary: ' + '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in summary.items())
    )
  return summary
