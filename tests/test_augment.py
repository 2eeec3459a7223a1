"""Augmentations: shapes, keys, crop sampling, and every op against a NumPy / PIL / colorsys reference."""

import colorsys
import functools
import itertools
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gsg_jax.data import augment

GRAY = np.array([0.299, 0.587, 0.114])
# Everything random switched off: a full-image crop of a square image, no colour ops, no flip.
OFF = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_prob=0.0, grayscale_prob=0.0, flip_prob=0.0)


def config(**overrides):
  c = augment.default_augment_config()
  c.update(overrides)
  return c


def images(n=8, size=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def planar(x):
  return jnp.moveaxis(jnp.asarray(x, jnp.float32), -1, 0)


def unnormalize(x, cfg):
  return np.asarray(x) * np.array(cfg.std) + np.array(cfg.mean)


@functools.lru_cache(maxsize=None)
def jitted_batch(num_views, cfg_items):
  return jax.jit(functools.partial(augment.augment_batch, num_views=num_views, cfg=config(**dict(cfg_items))))


def run_batch(key, x, num_views, **overrides):
  return jitted_batch(num_views, tuple(sorted(overrides.items())))(key, x)


# ---------------------------------------------------------------- the default pipeline, 256 images × 4 views


@pytest.fixture(scope='module')
def default_run():
  """The default recipe on 256 32×32 images, 4 views: compiled once, timed, and shared by the tests below."""
  x = images(256, seed=3)
  fn = jax.jit(functools.partial(augment.augment_batch, num_views=4, cfg=config()))
  start = time.perf_counter()
  compiled = fn.lower(jax.random.key(0), x).compile()
  compile_s = time.perf_counter() - start
  out = jax.block_until_ready(compiled(jax.random.key(0), x))
  times = []
  for i in range(3):
    start = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.key(i + 1), x))
    times.append(time.perf_counter() - start)
  print(f'\naugment_batch 256×4 views at 32×32: compile {compile_s:.2f} s, run {min(times) * 1e3:.0f} ms')
  return x, compiled, out


def test_default_config():
  c = augment.default_augment_config()
  assert c.crop_size == 32 and tuple(c.crop_scale) == (0.2, 1.0)
  assert (c.brightness, c.contrast, c.saturation, c.hue) == (0.4, 0.4, 0.4, 0.1)
  assert (c.jitter_prob, c.grayscale_prob, c.blur_prob, c.flip_prob) == (0.8, 0.2, 0.0, 0.5)
  assert tuple(c.blur_sigma) == (0.1, 2.0) and c.eval_resize == 0
  assert augment.blur_kernel_size(config(crop_size=224)) == 23 and augment.blur_kernel_size(c) == 3


def test_shapes_dtype_finite_and_keys(default_run):
  x, compiled, out = default_run
  assert out.shape == (256, 4, 32, 32, 3) and out.dtype == jnp.float32
  assert bool(jnp.isfinite(out).all())
  np.testing.assert_array_equal(out, compiled(jax.random.key(0), x))  # Same key, same views.
  other = compiled(jax.random.key(1), x)
  assert float(jnp.abs(out - other).mean()) > 0.3  # Another key, other views.
  assert float(jnp.abs(out[:, 0] - out[:, 1]).mean()) > 0.3  # Views of one image differ.


def test_each_view_depends_only_on_its_image_and_key(default_run):
  x, _, out = default_run
  keys = jax.random.split(jax.random.key(0), 256 * 4).reshape(256, 4)
  view = jax.jit(functools.partial(augment.augment_view, cfg=config()))
  for b, v in ((0, 0), (17, 3), (255, 2)):
    np.testing.assert_allclose(out[b, v], view(keys[b, v], x[b]), atol=1e-5)
  # Another batch around the same image, same key: its view is the same. (A raw uint32 key here:
  # legacy keys work too, and give the same numbers as the typed key with the same seed.)
  small = run_batch(jax.random.PRNGKey(0), x[:4], 2)
  keys = jax.random.split(jax.random.key(0), 8).reshape(4, 2)
  np.testing.assert_allclose(small[3, 1], view(keys[3, 1], x[3]), atol=1e-5)


def test_grayscale_frequency(default_run):
  _, _, out = default_run
  rgb = unnormalize(out, config()).reshape(-1, 32 * 32, 3)
  gray = np.all(np.abs(rgb - rgb[..., :1]) < 1e-5, axis=(1, 2))
  assert 0.15 < gray.mean() < 0.25  # p = 0.2 over 1,024 views (s.e. 0.0125).


def test_blur_in_the_pipeline():
  # Everything else off: each view is the image, or the image blurred (p = 0.5, σ ~ U(0.1, 2), 3×3 at 32).
  overrides = {**OFF, 'blur_prob': 0.5}
  x = images(32)
  out = unnormalize(run_batch(jax.random.key(0), x, 4, **overrides), config(**overrides))
  assert out.shape == (32, 4, 32, 32, 3) and np.isfinite(out).all()
  rgb = np.broadcast_to(np.asarray(x, np.float64)[:, None] / 255.0, out.shape)
  same = np.abs(out - rgb).max(axis=(2, 3, 4)) < 1e-5  # Includes blurs with σ ≈ 0.1, nearly the identity.
  assert 0.3 < same.mean() < 0.75
  variation = lambda a: np.abs(np.diff(a, axis=2)).mean(axis=(2, 3, 4))
  assert (variation(out)[~same] < variation(rgb)[~same]).all()  # Blurred views are smoother.


# ---------------------------------------------------------------- RandomResizedCrop


def torchvision_get_params(rng, height, width, scale, ratio):
  """torchvision.transforms.RandomResizedCrop.get_params, with NumPy's generator."""
  area = height * width
  for _ in range(10):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    w, h = int(round(height * max(ratio))), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def crop_boxes(n, height, width, scale, ratio, seed=0):
  sample = lambda k: jnp.stack(augment.sample_crop_box(k, height, width, scale, ratio))
  return np.asarray(jax.jit(jax.vmap(sample))(jax.random.split(jax.random.key(seed), n))).T


@pytest.mark.parametrize('height,width,scale', [(32, 32, (0.2, 1.0)), (32, 64, (0.5, 1.0))])
def test_crop_boxes_match_torchvision_sampling(height, width, scale):
  ratio = (3 / 4, 4 / 3)
  top, left, h, w = crop_boxes(4000, height, width, scale, ratio)
  assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  area, aspect = h * w / (height * width), w / h
  slack = 2.5 / min(height, width)  # Rounding of h and w.
  assert scale[0] - slack <= area.min() and area.max() <= scale[1] + slack
  assert ratio[0] - 0.1 <= aspect.min() and aspect.max() <= ratio[1] + 0.1
  # Same distribution as torchvision's sampler (4,000 draws each; standard errors ≈ 0.1 pixel).
  rng = np.random.default_rng(0)
  ref = np.array([torchvision_get_params(rng, height, width, scale, ratio) for _ in range(4000)]).T
  for ours, theirs in zip((top, left, h, w), ref):
    assert abs(ours.mean() - theirs.mean()) < 0.5 and abs(ours.std() - theirs.std()) < 0.5
  ref_area = ref[2] * ref[3] / (height * width)
  assert abs(area.mean() - ref_area.mean()) < 0.015


@pytest.mark.parametrize(
  'height,width,expected',
  [
    (32, 64, (0, 10, 32, 43)),  # Wide: w = round(32·4/3), centred.
    (64, 32, (10, 0, 43, 32)),  # Tall: h = round(32/(3/4)), centred.
    (30, 36, (0, 0, 30, 36)),
  ],
)  # Aspect within range: whole image.
def test_crop_box_fallback(height, width, expected):
  # Scale > 1 never fits, so every attempt fails and torchvision's centre fallback is used.
  box = tuple(int(v) for v in augment.sample_crop_box(jax.random.key(0), height, width, (1.5, 2.0), (3 / 4, 4 / 3)))
  assert box == torchvision_get_params(np.random.default_rng(0), height, width, (1.5, 2.0), (3 / 4, 4 / 3))
  assert box == expected


@pytest.mark.parametrize(
  'box,size', [((3, 5, 20, 30), 32), ((0, 0, 40, 50), 16), ((7, 2, 9, 13), 24), ((1, 1, 37, 11), 20)]
)
def test_resized_crop_matches_pil(box, size):
  # PIL's bilinear resize of the cropped box on float32 ('F' mode) images: torchvision's crop-then-resize
  # without the 8-bit rounding. The (0, 0, 40, 50) box is the whole image: the crop is then a plain resize.
  img = np.random.default_rng(0).uniform(size=(40, 50, 3)).astype(np.float32)
  top, left, h, w = box
  ref = np.stack(
    [
      np.asarray(Image.fromarray(img[..., c]).crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR))
      for c in range(3)
    ]
  )
  np.testing.assert_allclose(augment.resized_crop(jnp.asarray(img), *box, size), ref, atol=2e-6)


def test_full_crop_with_everything_off_is_normalisation_only():
  cfg = config(**OFF)
  x = images(2)
  expected = (np.asarray(x) / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
  view = jax.jit(functools.partial(augment.augment_view, cfg=cfg))
  np.testing.assert_allclose(view(jax.random.key(0), x[0]), expected[0], atol=1e-5)
  np.testing.assert_allclose(augment.preprocess_eval(x, cfg), expected, atol=1e-5)


def test_normalisation_stays_a_matrix_product_on_the_cpu():
  """``normalize`` is a product with diag(1/std) so that XLA:CPU writes the views to memory once (a dot's output),
  rather than fusing the whole colour chain into each consumer of the views. Fails if XLA rewrites it elementwise."""
  cfg = config()
  fn = jax.jit(functools.partial(augment.augment_batch, num_views=2, cfg=cfg))
  hlo = fn.lower(jax.random.key(0), images(4)).compile().as_text()
  product = re.compile(r'= f32\[\d+,3\]\S* (dot|fusion)\(.*\.\.\.c,cd->\.\.\.d')
  assert any(product.search(line) for line in hlo.splitlines()), 'the normalisation product was rewritten'


def test_flip_and_grayscale_probabilities_and_outputs():
  overrides = {**OFF, 'flip_prob': 0.5, 'grayscale_prob': 0.5}
  x = images(64)
  out = unnormalize(run_batch(jax.random.key(0), x, 4, **overrides), config(**overrides))
  rgb = np.asarray(x, np.float64)[:, None] / 255.0
  gray = np.repeat(rgb @ GRAY[:, None], 3, -1)  # ITU-R 601-2 weights, three equal channels.
  candidates = np.stack(np.broadcast_arrays(rgb, rgb[:, :, :, ::-1], gray, gray[:, :, :, ::-1]))
  errors = np.abs(candidates - out[None]).max(axis=(3, 4, 5))  # [4 candidates, B, V].
  assert (errors.min(axis=0) < 1e-5).all()
  kind = errors.argmin(axis=0)
  flipped, grayed = np.isin(kind, (1, 3)).mean(), np.isin(kind, (2, 3)).mean()
  assert 0.38 < flipped < 0.62 and 0.38 < grayed < 0.62  # p = 0.5 over 256 views (s.e. 0.03).


# ---------------------------------------------------------------- colour


def ref_brightness(x, f):
  return np.clip(f * x, 0, 1)


def ref_contrast(x, f):
  return np.clip(f * x + (1 - f) * (x @ GRAY).mean(), 0, 1)


def ref_saturation(x, f):
  return np.clip(f * x + (1 - f) * (x @ GRAY)[..., None], 0, 1)


def ref_hue(x, f):
  hsv = (colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3))
  return np.array([colorsys.hsv_to_rgb((h + f) % 1.0, s, v) for h, s, v in hsv]).reshape(x.shape)


REFERENCES = {'brightness': ref_brightness, 'contrast': ref_contrast, 'saturation': ref_saturation, 'hue': ref_hue}


def colour_image(seed=1):
  """Random colours plus greys, black, white, primaries and ties between the largest channels."""
  x = np.random.default_rng(seed).uniform(size=(6, 6, 3))
  special = [
    [0.5, 0.5, 0.5],
    [0, 0, 0],
    [1, 1, 1],
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [0.8, 0.8, 0.2],
    [0.2, 0.8, 0.8],
    [0.8, 0.2, 0.8],
    [0.3, 0.7, 0.7],
  ]
  x.reshape(-1, 3)[: len(special)] = special
  return x


def as_hwc(x):
  return np.moveaxis(np.asarray(x), 0, -1)


@pytest.mark.parametrize('f', [0.0, 0.6, 1.3, 1.4])
def test_blends_match_numpy(f):
  x = colour_image()
  np.testing.assert_allclose(as_hwc(augment.adjust_brightness(planar(x), f)), ref_brightness(x, f), atol=1e-6)
  np.testing.assert_allclose(as_hwc(augment.adjust_contrast(planar(x), f)), ref_contrast(x, f), atol=1e-6)
  np.testing.assert_allclose(as_hwc(augment.adjust_saturation(planar(x), f)), ref_saturation(x, f), atol=1e-6)
  np.testing.assert_allclose(as_hwc(augment.grayscale(planar(x))), (x @ GRAY)[..., None], atol=1e-6)


@pytest.mark.parametrize('f', [0.0, 0.08, -0.1, 0.37, 0.5, -0.5])
def test_hue_matches_colorsys(f):
  x = colour_image()
  np.testing.assert_allclose(as_hwc(augment.adjust_hue(planar(x), f)), ref_hue(x, f), atol=2e-6)


def test_jitter_applies_the_ops_in_the_sampled_order():
  cfg = config()
  names = [name for name, _, _ in augment.jitter_ops(cfg)]
  assert names == ['brightness', 'contrast', 'saturation', 'hue']
  x = colour_image(2)
  apply = jax.jit(lambda x, order, factors: augment.apply_jitter(x, order, factors, cfg))
  factors = np.array([1.3, 0.6, 1.4, 0.1])
  results = []
  for order in itertools.permutations(range(4)):
    expected = x
    for op in order:
      expected = REFERENCES[names[op]](expected, factors[op])
    result = as_hwc(apply(planar(x), jnp.array(order), jnp.asarray(factors, jnp.float32)))
    np.testing.assert_allclose(result, expected, atol=1e-5)
    results.append(result)
  assert np.abs(results[0] - results[-1]).max() > 0.01  # The order matters.
  # Ops of zero strength are left out; the others keep their meaning.
  cfg2 = config(brightness=0.0, hue=0.0)
  assert [name for name, _, _ in augment.jitter_ops(cfg2)] == ['contrast', 'saturation']
  result = augment.apply_jitter(planar(x), jnp.array([1, 0]), jnp.array([0.6, 1.3]), cfg2)
  np.testing.assert_allclose(as_hwc(result), ref_contrast(ref_saturation(x, 1.3), 0.6), atol=1e-5)


def test_jitter_order_is_uniform_and_factors_in_range():
  cfg = config()
  sample = jax.jit(jax.vmap(lambda k: augment.jitter_params(jax.random.uniform(k, (8,)), cfg)))
  orders, factors = (np.asarray(a) for a in sample(jax.random.split(jax.random.key(0), 4800)))
  counts = np.unique([''.join(map(str, o)) for o in orders], return_counts=True)[1]
  assert len(counts) == 24 and counts.min() > 140 and counts.max() < 260  # 200 expected each.
  low, high = np.array([0.6, 0.6, 0.6, -0.1]), np.array([1.4, 1.4, 1.4, 0.1])
  assert (factors >= low).all() and (factors <= high).all()
  assert (factors.min(0) < low + 0.01).all() and (factors.max(0) > high - 0.01).all()


# ---------------------------------------------------------------- blur, eval preprocessing


def ref_blur(x, sigma, k):
  t = np.arange(k) - k // 2
  kernel = np.exp(-0.5 * (t / sigma) ** 2)
  kernel /= kernel.sum()
  padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode='reflect')
  h, w = x.shape[1:]
  return sum(kernel[i] * kernel[j] * padded[:, i : i + h, j : j + w] for i in range(k) for j in range(k))


def test_blur():
  const = jnp.full((3, 9, 9), 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(const, 1.5, 5), const, atol=1e-6)
  impulse = jnp.zeros((1, 11, 11)).at[0, 5, 5].set(1.0)
  out = np.asarray(augment.gaussian_blur(impulse, 1.0, 5))[0]
  np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(out, out.T, atol=1e-7)
  np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
  x = np.random.default_rng(0).uniform(size=(3, 12, 10))
  for sigma, k in ((0.1, 3), (1.0, 5), (2.0, 7)):
    np.testing.assert_allclose(
      augment.gaussian_blur(jnp.asarray(x, jnp.float32), sigma, k), ref_blur(x, sigma, k), atol=1e-5
    )


def test_preprocess_eval_resize_and_centre_crop_match_pil():
  # torchvision Resize(36) on 40×50 → 36×45, CenterCrop(32) → offsets (round(2.0), round(6.5)) = (2, 6).
  cfg = config(crop_size=32, eval_resize=36)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8))
  out = unnormalize(augment.preprocess_eval(x, cfg), cfg)
  assert out.shape == (2, 32, 32, 3)
  img = np.asarray(x[1], np.float32) / 255.0
  resized = np.stack([np.asarray(Image.fromarray(img[..., c]).resize((45, 36), Image.BILINEAR)) for c in range(3)], -1)
  np.testing.assert_allclose(out[1], resized[2:34, 6:38], atol=1e-5)
  # No eval_resize: a plain resize to the crop size.
  assert augment.preprocess_eval(images(2, 40), config(crop_size=16)).shape == (2, 16, 16, 3)
  with pytest.raises(ValueError):
    augment.preprocess_eval(x, config(crop_size=32, eval_resize=24))
