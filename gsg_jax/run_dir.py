"""A run directory's identity and record: which config trained it, in which parts, and what it reached.

A run directory (``--workdir``) holds, beside ``checkpoints/`` and ``metrics.jsonl``:

* ``config.json``: the config the run trains with. It is written when the run
  starts, and from then on the directory is bound to it: a later command in the
  same directory must give the same value for every key that changes what is
  trained (method, model, data, optimiser, batch size, seed, …), or it is
  refused before anything is written (``check_config``). Only the keys of
  ``RESUMABLE_KEYS`` may change: more epochs, the cadence of logging,
  checkpoints and evaluation, and how many views a network pass takes. Their changes are written into ``config.json``
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

``find_run`` checks a run directory and picks its checkpoint without
importing JAX, so the command lines answer a wrong path or step at once;
``load_config`` reads ``config.json``; ``restore`` reads a checkpoint (all of
the state, or a part of it, such as ``restore_variables``' network variables).

Why not compare every key: the run's ``num_epochs`` may grow to extend it
(the cosine schedule is then stretched from the current step), and how often
it logs or evaluates does not change its weights; anything else would make a
checkpoint that no longer matches its label.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import ml_collections

from gsg_jax import storage
from gsg_jax.errors import ConfigError, MissingPathError, UnusablePathError

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
  'model.views_per_pass',  # The same step in another shape (models.train_pass); absent from older runs' configs.
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


# ---------------------------------------------------------------- reading a run


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from ``<workdir>/config.json``, JSON arrays turned back into the tuples the config holds."""
  path = storage.join(workdir, 'config.json')
  if not storage.exists(path):
    raise MissingPathError(
      f'{workdir!r} has no config.json: not a training run directory (train with gsg_jax.main first).'
    )
  try:
    raw = storage.read_json(path)
  except json.JSONDecodeError as e:
    raise ConfigError(f'{path} is not valid JSON ({e}).') from e
  if not isinstance(raw.get('method', {}).get('predictor'), str):
    raise ConfigError(
      f'{path} was written before the method design of loss/target/predictor: its checkpoints '
      'cannot be read by this version (see docs/methods.md, "Checkpoint compatibility").'
    )
  return ml_collections.ConfigDict(_tuples(raw))


def _tuples(value):
  """Lists → tuples, recursively: a config holds tuples (``augment.mean``, ``optim.rules``), JSON writes lists."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the finished checkpoints in ``<workdir>/checkpoints``, ascending, as orbax tells them apart from
  unfinished ones (renamed from a temporary name on a disk; marked by a commit file in an object store)."""
  import orbax.checkpoint as ocp  # Local: keep this module light to import.

  directory = storage.join(workdir, 'checkpoints')
  if not storage.isdir(directory):
    return []
  return sorted(ocp.utils.checkpoint_steps(directory))


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory with its config and the checkpoint step chosen."""

  workdir: str
  config: ml_collections.ConfigDict
  step: int


def find_run(workdir: str, step: int | None = None) -> Run:
  """The run in ``workdir`` at checkpoint ``step`` (default latest); MissingPathError/ConfigError say what is wrong."""
  if not workdir:
    raise ConfigError('no run directory given (--workdir).')
  workdir = storage.resolve(workdir)
  if not storage.isdir(workdir):
    if storage.exists(workdir):
      raise UnusablePathError(f'{workdir!r} is a file, not a run directory.')
    raise MissingPathError(f'run directory {workdir!r} does not exist.')
  config = load_config(workdir)
  steps = checkpoint_steps(workdir)
  if not steps:
    raise MissingPathError(f'no checkpoint in {workdir!r} (looked in {storage.join(workdir, "checkpoints")}).')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise MissingPathError(f'no checkpoint for step {step} in {workdir!r}; available steps: {steps}.')
  return Run(workdir, config, int(step))


def restore_variables(run: Run, parts=('backbone',)) -> dict:
  """The network's variables of ``parts`` (``backbone``, ``projector``, ``predictor``) at ``run.step``.

  Returns ``{'params': {part: ...}, 'batch_stats': {part: ...}}`` of jax
  arrays; a part that the run's network lacks (no predictor) or that has no
  statistics is left out.
  """
  import jax
  import jax.numpy as jnp

  from gsg_jax.training import build_trainer

  config = run.config
  network = build_trainer(config, 1, None).network  # Steps per epoch shape the schedules only: unused here.
  crop = config.augment.crop_size
  shapes = jax.eval_shape(lambda key: network.init(key, jnp.zeros((2, crop, crop, 3)), train=True), jax.random.key(0))
  # On one device, said explicitly: orbax warns when it has to read the layout from the checkpoint.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  params, stats = shapes['params'], shapes.get('batch_stats', {})
  wanted = {
    'params': {p: params[p] for p in parts if p in params},
    'model_state': {p: stats[p] for p in parts if p in stats},
  }
  restored = restore(run, wanted, partial=True)
  return {'params': restored['params'], 'batch_stats': restored['model_state']}


def restore(run: Run, like, partial: bool = False):
  """The checkpoint at ``run.step`` shaped like ``like`` (a train state; with ``partial``, a subset of its
  entries, such as ``{'params': {...}}``). A ConfigError when the checkpoint does not hold it."""
  from gsg_jax.training.checkpointing import Checkpointer

  config = run.config
  checkpointer = Checkpointer(run.workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  try:
    return checkpointer.restore(like, run.step, partial=partial)
  finally:
    checkpointer.close()
