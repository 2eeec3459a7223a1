"""Image augmentations in JAX: jit-compiled, vmapped over the batch, one PRNG key per view.

The SimSiam/BYOL recipe, in torchvision's order and semantics:

    RandomResizedCrop(crop, scale=(0.2, 1), ratio=(3/4, 4/3))
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)   # the four ops in a random order
    RandomGrayscale(p=0.2)
    RandomApply([GaussianBlur(σ ∈ [0.1, 2])], p=0.5)       # ImageNet recipe only (blur_prob)
    RandomHorizontalFlip(p=0.5)
    Normalize(mean, std)

Colour operations, on x ∈ [0, 1], each followed by clipping to [0, 1]:
  brightness  x ← f·x,                       f ~ U[1−b, 1+b]
  contrast    x ← f·x + (1−f)·mean(gray(x)),  f ~ U[1−c, 1+c]
  saturation  x ← f·x + (1−f)·gray(x),        f ~ U[1−s, 1+s]
  hue         H ← (H + f) mod 1 in HSV,       f ~ U[−h, h]
  gray(x) = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2, as torchvision).

Deviations from torchvision, all small: images stay float between
operations (torchvision on PIL images rounds to 8 bits after each colour
op); the crop is resampled with antialiased bilinear interpolation
(``jax.image.scale_and_translate``), as torchvision's tensor path with
``antialias=True``, not PIL's exact filter; the blur pads by reflection, as
torchvision's tensor GaussianBlur.

Probabilistic steps are ``jnp.where`` on Bernoulli draws: no Python branching
on traced values, so the functions run inside a jitted, sharded train step.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def default_augment_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.crop_size = 32                      # Output side (CIFAR: 32; ImageNet: 224).
  c.crop_scale = (0.2, 1.0)             # SimSiam/BYOL: RandomResizedCrop(scale=(0.2, 1.0)).
  c.crop_ratio = (3 / 4, 4 / 3)         # torchvision default.
  c.brightness = 0.4                    # SimSiam: ColorJitter(0.4, 0.4, 0.4, 0.1) ...
  c.contrast = 0.4
  c.saturation = 0.4
  c.hue = 0.1
  c.jitter_prob = 0.8                   # ... applied with p = 0.8.
  c.grayscale_prob = 0.2                # SimSiam: RandomGrayscale(p=0.2).
  c.blur_prob = 0.0                     # ImageNet recipe: 0.5; SimSiam's CIFAR recipe has no blur.
  c.blur_sigma = (0.1, 2.0)             # SimSiam/MoCo v2 GaussianBlur sigma range.
  c.blur_kernel_frac = 0.1              # Kernel ≈ 10% of the side (23 at 224, BYOL).
  c.flip_prob = 0.5
  c.mean = (0.4914, 0.4822, 0.4465)     # CIFAR-10 channel means (SimSiam CIFAR code).
  c.std = (0.2470, 0.2435, 0.2616)      # CIFAR-10 channel stds.
  c.eval_resize = 0                     # Eval: resize shorter side to this, centre crop (0: resize to crop).
  return c


# ---------------------------------------------------------------- geometry


def sample_crop_box(key, height: int, width: int, scale, ratio, attempts: int = 10):
  """torchvision's RandomResizedCrop.get_params: (top, left, h, w) as int32 scalars.

  ``attempts`` candidate boxes with area ~ U(scale)·H·W and log-aspect ~ U(log ratio);
  the first that fits is taken, else the centre crop with the aspect clamped to ``ratio``.
  """
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])))
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  top = jnp.floor(jax.random.uniform(k_top, (attempts,)) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, (attempts,)) * (width - w + 1)).astype(jnp.int32)
  first = jnp.argmax(fits)

  # Fallback: whole image, aspect clamped to the ratio range, centred.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fw, fh = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fw, fh = int(round(height * max(ratio))), height
  else:
    fw, fh = width, height
  ok = fits.any()
  pick = lambda candidates, fallback: jnp.where(ok, candidates[first], fallback)
  return (pick(top, (height - fh) // 2), pick(left, (width - fw) // 2), pick(h, fh), pick(w, fw))


def resized_crop(image, top, left, h, w, size: int):
  """Crop the box (top, left, h, w) of a float [H, W, C] image and resize it to [size, size, C] (antialiased bilinear)."""
  scale = jnp.stack([size / h, size / w]).astype(jnp.float32)
  translation = -jnp.stack([top, left]).astype(jnp.float32) * scale
  return jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), scale, translation,
                                       method='linear', antialias=True)


# ---------------------------------------------------------------- colour


def grayscale(x):
  """[..., 3] → [..., 1] luma."""
  return jnp.sum(x * jnp.asarray(GRAY_WEIGHTS, x.dtype), axis=-1, keepdims=True)


def adjust_brightness(x, f):
  return jnp.clip(x * f, 0.0, 1.0)


def adjust_contrast(x, f):
  return jnp.clip(f * x + (1 - f) * jnp.mean(grayscale(x)), 0.0, 1.0)


def adjust_saturation(x, f):
  return jnp.clip(f * x + (1 - f) * grayscale(x), 0.0, 1.0)


def rgb_to_hsv(x):
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  maxc, minc = jnp.max(x, -1), jnp.min(x, -1)
  delta = maxc - minc
  safe = jnp.where(delta > 0, delta, 1.0)
  s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
  h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
  return jnp.stack([h, s, maxc], -1)


def hsv_to_rgb(x):
  h, s, v = x[..., 0], x[..., 1], x[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  i = i.astype(jnp.int32) % 6
  choices = [jnp.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
  return jnp.select([(i == k)[..., None] for k in range(6)], choices)


def adjust_hue(x, f):
  hsv = rgb_to_hsv(x)
  return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + f) % 1.0)), 0.0, 1.0)


def color_jitter(key, x, cfg):
  """torchvision ColorJitter: four factors drawn once, the four ops applied in a random order."""
  k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
  factors = (
      jax.random.uniform(k_b, minval=max(0.0, 1 - cfg.brightness), maxval=1 + cfg.brightness),
      jax.random.uniform(k_c, minval=max(0.0, 1 - cfg.contrast), maxval=1 + cfg.contrast),
      jax.random.uniform(k_s, minval=max(0.0, 1 - cfg.saturation), maxval=1 + cfg.saturation),
      jax.random.uniform(k_h, minval=-cfg.hue, maxval=cfg.hue),
  )
  ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
  branches = [lambda x, op=op, f=f: op(x, f) for op, f in zip(ops, factors)]
  for op_index in jax.random.permutation(k_order, 4):
    x = jax.lax.switch(op_index, branches, x)
  return x


def gaussian_blur(x, sigma, kernel_size: int):
  """Separable Gaussian blur of [H, W, C] with reflect padding (torchvision's tensor GaussianBlur)."""
  half = kernel_size // 2
  offsets = jnp.arange(-half, half + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = kernel / kernel.sum()
  padded = jnp.pad(x, ((half, half), (half, half), (0, 0)), mode='reflect')
  h, w = x.shape[:2]
  rows = sum(kernel[i] * padded[i:i + h] for i in range(kernel_size))
  return sum(kernel[i] * rows[:, i:i + w] for i in range(kernel_size))


def blur_kernel_size(cfg) -> int:
  k = int(cfg.blur_kernel_frac * cfg.crop_size)
  return max(3, k + 1 - k % 2)  # Odd, at least 3 (23 at 224, as BYOL).


# ---------------------------------------------------------------- pipeline


def normalize(x, cfg):
  return (x - jnp.asarray(cfg.mean, jnp.float32)) / jnp.asarray(cfg.std, jnp.float32)


def augment_view(key, image_u8, cfg):
  """One view of one image: uint8 [H, W, 3] → normalised float32 [crop, crop, 3]."""
  k_crop, k_jitter, k_p_jitter, k_gray, k_p_blur, k_sigma, k_flip = jax.random.split(key, 7)
  height, width = image_u8.shape[:2]
  x = image_u8.astype(jnp.float32) / 255.0
  top, left, h, w = sample_crop_box(k_crop, height, width, cfg.crop_scale, cfg.crop_ratio)
  x = jnp.clip(resized_crop(x, top, left, h, w, cfg.crop_size), 0.0, 1.0)
  x = jnp.where(jax.random.bernoulli(k_p_jitter, cfg.jitter_prob), color_jitter(k_jitter, x, cfg), x)
  x = jnp.where(jax.random.bernoulli(k_gray, cfg.grayscale_prob), jnp.repeat(grayscale(x), 3, -1), x)
  if cfg.blur_prob > 0:  # Static: the blur is compiled only for recipes that use it.
    sigma = jax.random.uniform(k_sigma, minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
    x = jnp.where(jax.random.bernoulli(k_p_blur, cfg.blur_prob), gaussian_blur(x, sigma, blur_kernel_size(cfg)), x)
  x = jnp.where(jax.random.bernoulli(k_flip, cfg.flip_prob), x[:, ::-1], x)
  return normalize(x, cfg)


def augment_batch(key, images_u8, num_views: int, cfg):
  """uint8 [B, H, W, 3] → float32 [B, num_views, crop, crop, 3], an independent key per view."""
  batch = images_u8.shape[0]
  keys = jax.random.split(key, batch * num_views).reshape(batch, num_views)
  per_view = jax.vmap(augment_view, in_axes=(0, None, None))
  return jax.vmap(per_view, in_axes=(0, 0, None))(keys, images_u8, cfg)


def preprocess_eval(images_u8, cfg):
  """Deterministic evaluation view: uint8 [B, H, W, 3] → normalised float32 [B, crop, crop, 3].

  With ``eval_resize`` > 0: resize the shorter side to it, then take the
  centre crop (the ImageNet protocol); otherwise resize to the crop size
  (a no-op for CIFAR-sized inputs).
  """
  x = images_u8.astype(jnp.float32) / 255.0
  b, h, w, c = x.shape
  size = cfg.crop_size
  if cfg.eval_resize:
    s = cfg.eval_resize / min(h, w)
    nh, nw = int(round(h * s)), int(round(w * s))
    x = jax.image.resize(x, (b, nh, nw, c), 'linear', antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, top:top + size, left:left + size]
  elif (h, w) != (size, size):
    x = jax.image.resize(x, (b, size, size, c), 'linear', antialias=True)
  return normalize(jnp.clip(x, 0.0, 1.0), cfg)
