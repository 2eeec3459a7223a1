"""The image view maker: what the train step core needs to know about images.

``gsg_jax.training.step`` is data-agnostic: it takes a *view maker* with

* ``__call__(batch, rng, num_views) -> rows``: ``num_views`` augmented views
  of every example, laid out example-major (row ``b·V + v`` is view ``v`` of
  example ``b``) so that one network pass serves all views;
* ``row_shape(input_shape) -> shape`` of one view row, for initialisation;
* ``preprocess_eval(inputs) -> rows``: the deterministic evaluation view.

``ImageViews`` is that for uint8 images (``batch['image']``), with the
augmentations of ``gsg_jax.data.augment`` on the accelerator. A batch holds
either whole images, [B, H, W, 3], cropped here, or views already cropped on
the host, [B, V, crop, crop, 3] (streamed datasets, ``tfds_source``), which
get every augmentation but the crop; the first ``num_views`` are used. A
non-image experiment supplies its own (the landscape experiments' random masks).
"""

import dataclasses
from typing import Any

from gsg_jax.data import augment
from gsg_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ImageViews:
  config: Any  # config.augment

  def __call__(self, batch, rng, num_views: int):
    """uint8 [B, H, W, C] or [B, V, crop, crop, C] → float [B·num_views, crop, crop, C], image-major."""
    images = batch['image']
    if images.ndim == 5:
      if images.shape[1] < num_views:
        raise ConfigError(
          f'the data hold {images.shape[1]} views per image cropped on the host, but the method '
          f'takes {num_views}: set config.data.stream_views={num_views}.'
        )
      v = augment.augment_cropped_views(rng, images[:, :num_views], self.config)
    else:
      v = augment.augment_batch(rng, images, num_views, self.config)
    return v.reshape((-1,) + v.shape[2:])

  def row_shape(self, image_shape):
    crop = self.config.crop_size
    return (crop, crop, image_shape[-1])

  def preprocess_eval(self, images_u8):
    return augment.preprocess_eval(images_u8, self.config)
