"""Augmentations: ranges, shapes, determinism per key, and colour ops against NumPy references."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsg_jax.data import augment


def config(**overrides):
  c = augment.default_augment_config()
  c.update(overrides)
  return c


IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_prob=0.0, grayscale_prob=0.0, flip_prob=0.0)


def images(n=8, size=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_shapes_dtype_and_determinism():
  cfg = config(crop_size=24, blur_prob=0.5)
  run = jax.jit(functools.partial(augment.augment_batch, num_views=4, cfg=cfg))
  x = images()
  a, b, c = run(jax.random.key(0), x), run(jax.random.key(0), x), run(jax.random.key(1), x)
  assert a.shape == (8, 4, 24, 24, 3) and a.dtype == jnp.float32
  assert bool(jnp.isfinite(a).all())
  np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(a - c).max()) > 0.1
  assert float(jnp.abs(a[:, 0] - a[:, 1]).max()) > 0.1  # Views of one image differ.


def test_each_view_depends_only_on_its_image_and_key():
  cfg = config()
  x = images(4)
  batch = augment.augment_batch(jax.random.key(5), x, 2, cfg)
  keys = jax.random.split(jax.random.key(5), 8).reshape(4, 2)
  single = augment.augment_view(keys[2, 1], x[2], cfg)
  np.testing.assert_allclose(batch[2, 1], single, atol=1e-5)


def test_crop_boxes_follow_torchvision_ranges():
  keys = jax.random.split(jax.random.key(0), 2000)
  boxes = jax.vmap(lambda k: jnp.stack(augment.sample_crop_box(k, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3))))(keys)
  top, left, h, w = np.asarray(boxes).T
  assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
  assert (top + h <= 32).all() and (left + w <= 32).all()
  area = h * w / 1024
  assert area.min() >= 0.15 and area.max() <= 1.0  # 0.2 up to rounding of h and w.
  ratio = w / h
  assert ratio.min() >= 0.6 and ratio.max() <= 1.6
  assert 0.5 < np.mean(area) < 0.7  # Mean of U(0.2, 1) is 0.6, slightly less after rejections.
  # Impossible scale: every attempt fails and the centre crop with the clamped ratio is used.
  top, left, h, w = (int(v) for v in augment.sample_crop_box(jax.random.key(0), 32, 64, (1.5, 2.0), (1.0, 1.0)))
  assert (h, w) == (32, 32) and (top, left) == (0, 16)


def test_full_crop_with_no_random_ops_is_normalisation_only():
  cfg = config(**IDENTITY)
  x = images(2)
  out = augment.augment_batch(jax.random.key(0), x, 1, cfg)[:, 0]
  expected = (np.asarray(x) / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
  np.testing.assert_allclose(out, expected, atol=1e-4)
  np.testing.assert_allclose(augment.preprocess_eval(x, cfg), expected, atol=1e-4)


def test_flip_and_grayscale():
  x = images(1)
  flipped = augment.augment_view(jax.random.key(0), x[0], config(**{**IDENTITY, 'flip_prob': 1.0}))
  plain = augment.augment_view(jax.random.key(0), x[0], config(**IDENTITY))
  np.testing.assert_allclose(flipped, plain[:, ::-1], atol=1e-5)
  cfg = config(**{**IDENTITY, 'grayscale_prob': 1.0, 'mean': (0, 0, 0), 'std': (1, 1, 1)})
  gray = augment.augment_view(jax.random.key(0), x[0], cfg)
  rgb = np.asarray(x[0]) / 255.0
  np.testing.assert_allclose(gray[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-5)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])


def test_colour_ops_match_numpy_references():
  rgb = np.random.default_rng(1).uniform(size=(6, 6, 3)).astype(np.float32)
  x = jnp.asarray(rgb)
  gray = rgb @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(augment.adjust_brightness(x, 1.3), np.clip(rgb * 1.3, 0, 1), atol=1e-6)
  np.testing.assert_allclose(augment.adjust_contrast(x, 0.7), np.clip(0.7 * rgb + 0.3 * gray.mean(), 0, 1), atol=1e-6)
  np.testing.assert_allclose(augment.adjust_saturation(x, 1.4), np.clip(1.4 * rgb + (-0.4) * gray[..., None], 0, 1),
                             atol=1e-6)
  expected = np.array([[colorsys.hsv_to_rgb((h + 0.08) % 1.0, s, v) for h, s, v in
                        (colorsys.rgb_to_hsv(*p) for p in row)] for row in rgb])
  np.testing.assert_allclose(augment.adjust_hue(x, 0.08), expected, atol=1e-5)
  hsv = np.array([[colorsys.rgb_to_hsv(*p) for p in row] for row in rgb])
  np.testing.assert_allclose(augment.rgb_to_hsv(x), hsv, atol=1e-5)


def test_jitter_factors_stay_in_range():
  # Brightness only: the output / input ratio is the factor, within [0.6, 1.4].
  cfg = config(contrast=0.0, saturation=0.0, hue=0.0)
  x = jnp.full((4, 4, 3), 0.5)
  factors = jax.vmap(lambda k: augment.color_jitter(k, x, cfg)[0, 0, 0] / 0.5)(jax.random.split(jax.random.key(0), 500))
  assert 0.6 <= float(factors.min()) < 0.7 and 1.3 < float(factors.max()) <= 1.4


def test_blur():
  const = jnp.full((9, 9, 3), 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(const, 1.5, 5), const, atol=1e-6)
  impulse = jnp.zeros((11, 11, 1)).at[5, 5, 0].set(1.0)
  out = np.asarray(augment.gaussian_blur(impulse, 1.0, 5))[..., 0]
  np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(out, out.T, atol=1e-7)
  np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
  assert augment.blur_kernel_size(config(crop_size=224)) == 23


@pytest.mark.parametrize('eval_resize,size,expected', [(0, 16, 16), (36, 32, 32)])
def test_preprocess_eval_sizes(eval_resize, size, expected):
  out = augment.preprocess_eval(images(2, 40), config(crop_size=size, eval_resize=eval_resize))
  assert out.shape == (2, expected, expected, 3)
