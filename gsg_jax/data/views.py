"""The image view maker: what the train step core needs to know about images.

``gsg_jax.training.step`` is data-agnostic: it takes a *view maker* with

* ``__call__(batch, rng, num_views) -> rows``: ``num_views`` augmented views
  of every example, laid out example-major (row ``b·V + v`` is view ``v`` of
  example ``b``) so that one network pass serves all views;
* ``row_shape(input_shape) -> shape`` of one view row, for initialisation;
* ``preprocess_eval(inputs) -> rows``: the deterministic evaluation view.

``ImageViews`` is that for uint8 images (``batch['image']``), with the
augmentations of ``gsg_jax.data.augment`` on the accelerator. A non-image
experiment supplies its own (the landscape experiments' random masks).
"""

import dataclasses
from typing import Any

from gsg_jax.data import augment


@dataclasses.dataclass(frozen=True)
class ImageViews:
  config: Any  # config.augment

  def __call__(self, batch, rng, num_views: int):
    """uint8 [B, H, W, C] → float [B·V, h, w, C], image-major."""
    v = augment.augment_batch(rng, batch['image'], num_views, self.config)
    return v.reshape((-1,) + v.shape[2:])

  def row_shape(self, image_shape):
    crop = self.config.crop_size
    return (crop, crop, image_shape[-1])

  def preprocess_eval(self, images_u8):
    return augment.preprocess_eval(images_u8, self.config)
