"""What a run writes and shows: metrics.jsonl, TensorBoard summaries, a progress line.

* ``<workdir>/metrics.jsonl``: one JSON object per logged step or evaluation,
  ``{"step", "epoch", "time", ...metrics}``; appended to on resume (in an object
  store, rewritten: ``gsg_jax.storage.AppendLog``).
* TensorBoard summaries through clu's metric writers, when clu (and with it
  TensorFlow) is importable, i.e. installed with the ``tf`` extra; otherwise
  only the JSON file (e.g. on a minimal GPU image) and a one-line warning
  saying how to turn them on.
* A live progress line: step/total, epoch, loss, images/s, ETA.

Only process 0 writes.
"""

import json
import sys
import time

import jax

from gsg_jax import storage


def quiet_library_logs() -> None:
  """Show absl warnings and up unless ``--verbosity`` was given: orbax and clu log every checkpoint read and write
  at INFO. (``--verbosity=0`` brings them back.)"""
  from absl import flags, logging

  if 'verbosity' not in flags.FLAGS or not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


class MetricsLogger:
  def __init__(self, workdir: str, total_steps: int, steps_per_epoch: int, batch_size: int):
    self.total_steps, self.steps_per_epoch, self.batch_size = total_steps, steps_per_epoch, batch_size
    self.is_writer = jax.process_index() == 0
    self.jsonl = storage.AppendLog(storage.join(workdir, 'metrics.jsonl')) if self.is_writer else None
    self.summary_writer = None
    if self.is_writer:
      try:
        from clu import metric_writers  # Imports TensorFlow: kept off the import path of the library.

        self.summary_writer = metric_writers.SummaryWriter(storage.join(workdir, 'tensorboard'))
      except ImportError as e:
        from absl import logging

        logging.warning(
          'TensorBoard summaries off (%s); metrics.jsonl is still written. To turn them on: '
          '`pip install gsg-jax[tf]` (in a checkout: `pip install -e .[tf]`).',
          e,
        )
    self._last_time, self._last_step = None, None
    self._tty = sys.stdout.isatty()

  def start(self, step: int):
    self._last_time, self._last_step = time.perf_counter(), step

  def write(self, step: int, metrics: dict, kind: str = 'train'):
    """Record ``metrics`` (python scalars) at ``step``; kinds: 'train', 'eval', 'summary'."""
    if not self.is_writer:
      return
    record = {
      'step': int(step),
      'epoch': step / self.steps_per_epoch,
      'kind': kind,
      'time': time.time(),
      **{k: _to_python(v) for k, v in metrics.items()},
    }
    self.jsonl.write_line(json.dumps(record), urgent=kind != 'train')
    if self.summary_writer is not None:
      scalars = {
        f'{kind}/{k}': v for k, v in record.items() if isinstance(v, (int, float)) and k not in ('step', 'time')
      }
      self.summary_writer.write_scalars(step, scalars)
      self.summary_writer.flush()

  def progress(self, step: int, loss: float):
    """Print the progress line; returns the measured images/s since the last call."""
    now = time.perf_counter()
    rate = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    if self.is_writer:
      eta = (self.total_steps - step) * self.batch_size / max(rate, 1e-9)
      line = (
        f'step {step}/{self.total_steps}  epoch {step / self.steps_per_epoch:.2f}  loss {loss:.4f}  '
        f'{rate:,.0f} img/s  ETA {format_duration(eta)}'
      )
      print(('\r' + line + '   ') if self._tty else line, end='' if self._tty else '\n', flush=True)
    return rate

  def message(self, text: str):
    if self.is_writer:
      print(('\n' if self._tty else '') + text, flush=True)

  def flush(self):
    """Bring metrics.jsonl up to date (an object store's copy is otherwise rewritten every few seconds)."""
    if self.jsonl:
      self.jsonl.flush()

  def close(self):
    if self.jsonl:
      self.jsonl.close()
    if self.summary_writer is not None:
      self.summary_writer.close()


def _to_python(v):
  v = jax.device_get(v)
  return v.item() if hasattr(v, 'item') else v


def format_duration(seconds: float) -> str:
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'
