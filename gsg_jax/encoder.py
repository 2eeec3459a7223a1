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

The run directory is read by ``gsg_jax.run_dir`` (``find_run``,
``restore_variables``). JAX and Flax are imported inside the functions that
need them, which keeps ``import gsg_jax`` light.
"""

from __future__ import annotations

import numpy as np

from gsg_jax.errors import ConfigError
from gsg_jax.run_dir import Run, find_run, restore_variables


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

    from gsg_jax import compiler, models
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

    self._features = compiler.jit(features)
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
