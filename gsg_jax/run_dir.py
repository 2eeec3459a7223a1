"""A run directory's identity and record: which config trained it, in which parts, and what it reached.

A run directory (``--workdir``) holds, beside ``checkpoints/`` and ``metrics.jsonl``:

* ``config.json``: the config the run trains with. It is written when the run
  starts, and from then on the directory is bound to it: a later command in the
  same directory must give the same value for every key that changes what is
  trained (method, model, data, optimiser, batch size, seed, …), or it is
  refused before anything is written (``check_config``). Only the keys of
  ``RESUMABLE_KEYS`` may change: more epochs, and the cadence of logging,
  checkpoints and evaluation. Their changes are written into ``config.json``
  and recorded in ``run.json``, so evaluation, reports and exports always read
  the config that trained the weights.
* ``run.json``: ``{"steps_per_epoch", "parts": [...]}``, one part per command
  that trained here: ``start_step``, ``end_step``, ``seconds`` (wall time of
  the training loop, its evaluations included), ``started`` (UTC), ``host``,
  and ``config_changes`` (``{key: [before, after]}``). Rewritten at every
  checkpoint, so a crash loses at most the time since the last one.
* ``summary.json``: the whole run's outcome (``summary``): steps and epochs
  reached, the last logged loss and evaluation, and the training time summed
  over every part.

Why not compare every key: the run's ``num_epochs`` may grow to extend it
(the cosine schedule is then stretched from the current step), and how often
it logs or evaluates does not change its weights; anything else would make a
checkpoint that no longer matches its label.
"""

from __future__ import annotations

import json
import socket
import time

from gsg_jax import storage
from gsg_jax.errors import ConfigError

CONFIG_FILE, RECORD_FILE, SUMMARY_FILE = 'config.json', 'run.json', 'summary.json'
# Keys (exact, or a block ending in '.') that a resumed run may change: none of them changes the trained weights
# up to the current step. num_epochs may only grow past the latest checkpoint (``check_config``).
RESUMABLE_KEYS = (
  'num_epochs',
  'log_every_steps',
  'checkpoint_every_steps',
  'keep_checkpoints',
  'eval_every_epochs',
  'eval.',
  'distributed.',
  'data.cache_dir',
)
_SHOWN_DIFFERENCES = 4  # Keys named in the one-line refusal; the rest are counted.


def config_as_dict(config) -> dict:
  """``config`` as its ``config.json`` holds it (tuples as lists), for comparison with a saved one."""
  return json.loads(config.to_json_best_effort())


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in d.items():
    out.update(_flatten(value, f'{prefix}{key}.') if isinstance(value, dict) else {prefix + key: value})
  return out


def differences(saved: dict, config) -> dict:
  """``{key: (saved value, config's value)}`` for every dotted key where the two configs differ."""
  a, b = _flatten(saved), _flatten(config_as_dict(config))
  missing = object()
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)}


def is_resumable_key(key: str) -> bool:
  return any(key == k or (k.endswith('.') and key.startswith(k)) for k in RESUMABLE_KEYS)


def saved_config(workdir: str) -> dict | None:
  """The run's ``config.json`` as a dict, or None in a directory where no run has started."""
  path = storage.join(workdir, CONFIG_FILE)
  try:
    return storage.read_json_if_present(path)
  except json.JSONDecodeError as e:
    raise ConfigError(
      f'{path} is not valid JSON ({e}): this run directory cannot be resumed; use a new --workdir.'
    ) from e


def check_config(workdir: str, config) -> dict:
  """The allowed changes (``{key: (before, after)}``) of ``config`` against the run in ``workdir``.

  Raises ConfigError, naming the keys, where ``config`` differs from the saved
  config in a key outside ``RESUMABLE_KEYS``. A directory without
  ``config.json`` holds no run: no changes.
  """
  saved = saved_config(workdir)
  if saved is None:
    return {}
  changed = differences(saved, config)
  binding = {k: v for k, v in changed.items() if not is_resumable_key(k)}
  if binding:
    shown = [
      f'{k} ({before!r} there, {after!r} here)' for k, (before, after) in list(binding.items())[:_SHOWN_DIFFERENCES]
    ]
    more = len(binding) - len(shown)
    scalars = all(isinstance(before, (int, float, str)) for before, _ in binding.values())
    resume = (
      ' or resume it with its own values: ' + ' '.join(f'--config.{k}={before}' for k, (before, _) in binding.items())
      if scalars and not more
      else f' or resume it with the config saved in {storage.join(workdir, CONFIG_FILE)}'
    )
    raise ConfigError(
      f'{workdir} holds a run of another config: {", ".join(shown)}'
      + (f' and {more} more key(s)' if more else '')
      + f'. A run directory keeps the config that created it: train this config in a new --workdir,{resume}.'
    )
  return changed


def check_not_shortened(workdir: str, num_epochs: int, latest_step: int, steps_per_epoch: int) -> None:
  """A run cannot end before the checkpoint it already has."""
  if latest_step > num_epochs * steps_per_epoch:
    raise ConfigError(
      f'num_epochs={num_epochs} ends at step {num_epochs * steps_per_epoch}, before the checkpoint '
      f'at step {latest_step} in {workdir}: a run cannot be shortened. Evaluate an earlier '
      'checkpoint with gsg_jax.evaluate --step=N, or train a new --workdir.'
    )


def write_config(workdir: str, config) -> None:
  storage.write_text(storage.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


class RunRecord:
  """``run.json``: the parts of a run. Written by one process (process 0 of a multi-host job)."""

  def __init__(self, workdir: str, steps_per_epoch: int, start_step: int, changes: dict, write: bool = True):
    self.path, self.write_enabled = storage.join(workdir, RECORD_FILE), write
    self.record = storage.read_json_if_present(self.path) or {'parts': []}
    self.record['steps_per_epoch'] = steps_per_epoch
    self.part = {
      'start_step': start_step,
      'end_step': start_step,
      'seconds': 0.0,
      'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
      'host': socket.gethostname(),
      'config_changes': {k: list(v) for k, v in changes.items()},
    }
    self.record['parts'].append(self.part)
    self._start = time.perf_counter()

  def update(self, step: int) -> None:
    """Record that this part reached ``step`` (call at checkpoints and at the end)."""
    self.part['end_step'] = int(step)
    self.part['seconds'] = time.perf_counter() - self._start
    if self.write_enabled:
      storage.write_json(self.path, self.record, indent=2)

  @property
  def total_seconds(self) -> float:
    return sum(p['seconds'] for p in self.record['parts'])

  @property
  def steps_trained(self) -> int:
    """Steps trained over all parts (a step redone after a crash counts twice, as its time does)."""
    return sum(p['end_step'] - p['start_step'] for p in self.record['parts'])


def read_summary(workdir: str) -> dict | None:
  return storage.read_json_if_present(storage.join(workdir, SUMMARY_FILE))


def write_summary(workdir: str, summary: dict) -> None:
  storage.write_json(storage.join(workdir, SUMMARY_FILE), summary, indent=2)


def load_metrics(workdir: str) -> list[dict]:
  """The records of ``<workdir>/metrics.jsonl`` in order ([] where there is none); a line cut short by a crash is
  skipped."""
  path = storage.join(workdir, 'metrics.jsonl')
  text = storage.read_text(path) if storage.exists(path) else ''
  records = []
  for line in text.splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return records


def last_records(workdir: str) -> tuple[dict, dict]:
  """(the last 'train' record, the last 'eval' record) of the run's ``metrics.jsonl``, {} where there is none.

  Records are read in order, so after a resume the part that reached the end
  wins over records that a crashed part logged past its last checkpoint.
  """
  records = load_metrics(workdir)
  last = lambda kind: next((r for r in reversed(records) if r.get('kind') == kind), {})
  return last('train'), last('eval')
