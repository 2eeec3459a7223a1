"""A trained run's encoder, out of the training code: ``load_encoder(workdir, step=None)``.

    encoder = load_encoder('runs/quick_gsg')   # the latest checkpoint, or step=N
    features = encoder(images)                 # uint8 [N, H, W, 3] → float32 [N, encoder.feature_dim]

The encoder is the run's backbone in evaluation mode (BatchNorm with its
running statistics) behind the run's evaluation preprocessing
(``gsg_jax.data.augment.preprocess_eval``: scale to [0, 1], resize to the
crop size, or with ``augment.eval_resize`` resize and centre-crop, then
normalise by ``augment.mean`` / ``augment.std``): the features that the kNN
monitor and ``gsg_jax.evaluate`` judge. Feed images as the run's data layer
holds them (``config.data.image_size`` squares; ``gsg_jax.embed`` decodes
files that way). The forward pass is jitted and runs in batches of
``batch_size`` images (default ``config.eval.batch_size``), the last one
padded, so a whole dataset compiles once.

Only the network's variables are read from the checkpoint (an orbax partial
restore): no dataset is loaded and the optimiser state is never read.

``find_run`` checks a run directory and picks its step without importing
JAX, so the command lines (``gsg_jax.export``, ``gsg_jax.embed``) answer a
wrong path or step at once; ``restore_variables`` reads the networks'
variables; ``load_config`` reads ``config.json``. JAX, Flax and orbax are
imported inside the functions that need them, which keeps ``import gsg_jax``
and those checks light.
"""

from __future__ import annotations

import dataclasses
import json

import ml_collections
import numpy as np

from gsg_jax import storage
from gsg_jax.errors import ConfigError, MissingPathError, UnusablePathError


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
  import orbax.checkpoint as ocp

  from gsg_jax.training import build_trainer
  from gsg_jax.training.checkpointing import Checkpointer

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
  checkpointer = Checkpointer(run.workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  try:
    args = ocp.args.PyTreeRestore(
      item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted), partial_restore=True
    )
    restored = checkpointer.manager.restore(run.step, args=args)
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    detail = ' '.join(str(e).split())[:300]
    raise ConfigError(
      f'the checkpoint at step {run.step} in {run.workdir!r} does not hold the {list(parts)} this '
      f'config.json describes (was config.json edited?); orbax said: {detail}'
    ) from e
  finally:
    checkpointer.close()
  return {'params': restored['params'], 'batch_stats': restored['model_state']}


class Encoder:
  """``encoder(images_u8) -> features``: the run's backbone in evaluation mode, batched and jitted.

  Attributes: ``config`` (the run's), ``step`` (of the checkpoint),
  ``workdir``, ``feature_dim``, ``batch_size``, ``image_size`` (the side of
  the images the run's data layer holds), ``backbone`` (the Flax module) and
  ``variables`` (its ``{'params', 'batch_stats'}``).
  """

  def __init__(self, run: Run, variables: dict, batch_size: int | None = None):
    import jax
    import jax.numpy as jnp

    from gsg_jax import models
    from gsg_jax.data import augment

    self.workdir, self.config, self.step = run.workdir, run.config, run.step
    self.batch_size = int(batch_size or run.config.eval.batch_size)
    if self.batch_size < 1:
      raise ConfigError(f'batch_size={batch_size!r} is invalid: expected a positive integer.')
    self.image_size = int(run.config.data.image_size)
    self.backbone = backbone = models.build_backbone(run.config.model)
    self.variables = {
      'params': variables['params']['backbone'],
      'batch_stats': variables['batch_stats'].get('backbone', {}),
    }
    augment_config = run.config.augment

    def features(variables, images_u8):
      x = augment.preprocess_eval(images_u8, augment_config)
      return backbone.apply(variables, x, train=False).astype(jnp.float32)

    self._features = jax.jit(features)
    crop = augment_config.crop_size
    example = jax.ShapeDtypeStruct((1, crop, crop, 3), jnp.uint8)
    self.feature_dim = int(jax.eval_shape(features, self.variables, example).shape[-1])

  def __call__(self, images) -> np.ndarray:
    """uint8 [N, H, W, 3] → float32 [N, feature_dim] (numpy)."""
    from gsg_jax.evaluation.features import map_in_batches

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'the encoder takes uint8 images [N, H, W, 3]; got {images.dtype} {images.shape}.')
    if not len(images):
      return np.zeros((0, self.feature_dim), np.float32)
    batch_size = min(self.batch_size, len(images))  # A few images need no padding to a whole batch.
    return map_in_batches(lambda batch, start: (self._features(self.variables, batch),), images, batch_size)[0]

  def __repr__(self) -> str:
    model = self.config.model
    return (
      f'Encoder({model.backbone}, width {model.width}, step {self.step}, {self.feature_dim}-d features, '
      f'from {self.workdir!r})'
    )


def load_encoder(workdir: str, step: int | None = None, batch_size: int | None = None) -> Encoder:
  """The encoder of the run in ``workdir`` at checkpoint ``step`` (default latest); see the module docstring.

  Raises ``gsg_jax.errors.MissingPathError`` (a FileNotFoundError) for a
  missing run directory, a run without checkpoints or a step without one, and
  ``ConfigError`` (a ValueError) for a config.json or checkpoint that this
  version cannot read.
  """
  run = find_run(workdir, step)
  return Encoder(run, restore_variables(run), batch_size)
