"""Image augmentations in JAX: traced once, vmapped over the batch, one PRNG key per view.

The SimSiam/BYOL recipe, in torchvision's order and semantics:

    RandomResizedCrop(crop, scale=(0.2, 1), ratio=(3/4, 4/3))
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)   # the four ops in a random order
    RandomGrayscale(p=0.2)
    RandomApply([GaussianBlur(σ ∈ [0.1, 2])], p=0.5)       # ImageNet recipe only (blur_prob)
    RandomHorizontalFlip(p=0.5)
    ToTensor(), Normalize(mean, std)

Crop. ``sample_crop_box`` is ``RandomResizedCrop.get_params``: ten candidate
boxes with area a·H·W, a ~ U(scale), and aspect r = w/h, log r ~ U(log ratio),
w = round(√(a·H·W·r)), h = round(√(a·H·W/r)); the first that fits in the image
is taken (offsets uniform), else the whole image centred with r clamped to
``ratio``. The box is resampled to crop×crop by antialiased bilinear
interpolation (PIL's BILINEAR resize, = torchvision's ``antialias=True``):
output pixel i of an axis, with scale s = length/crop, sits at
c_i = start + (i + ½)·s and takes the input pixels j of the box with weights

    w_ij ∝ max(0, 1 − |j + ½ − c_i| / max(s, 1)),   normalised over j in the box,

a triangle filter widened by s when downscaling (antialiasing). Pixels outside
the box never contribute, as torchvision crops before it resizes.

Colour, on x ∈ [0, 1], each op followed by clipping to [0, 1]:

    brightness  x ← f·x,                        f ~ U[max(0, 1−b), 1+b]
    contrast    x ← f·x + (1−f)·mean(gray(x)),  f ~ U[max(0, 1−c), 1+c]
    saturation  x ← f·x + (1−f)·gray(x),        f ~ U[max(0, 1−s), 1+s]
    hue         H ← (H + f) mod 1 in HSV,       f ~ U[−h, h]
    gray(x) = 0.299 R + 0.587 G + 0.114 B   (ITU-R 601-2 luma)

Blur: a separable Gaussian, k_t ∝ exp(−t²/2σ²) for t = −K/2 … K/2, σ ~ U(blur_sigma),
K the odd integer near ``blur_kernel_frac``·crop (23 at 224), reflect padding.
Normalisation: (x − mean) / std, x = uint8/255.

Implementation: each view's random numbers are uniforms from one PRNG call
(one threefry in the compiled program); "with probability p" is ``jnp.where(u < p, …)``
and the jitter order is the argsort of uniforms, so nothing branches on traced
values and nothing calls back to the host: the functions run inside a jitted,
sharded train step. ``cfg`` is read at trace time (Python numbers), so close
over it when jitting. Ops whose strength or probability is zero are not traced.
Between the crop and the normalisation a view is planar, [3, crop, crop].

Deviations from torchvision, all below one 8-bit level or a matter of choice:
values stay float32 from the uint8 input to the output (torchvision on PIL
images, as in the SimSiam code, rounds to uint8 after the resize and after each
colour op); the grey weights are ITU-R 601-2's 0.299 (PIL; torchvision's tensor
path uses 0.2989); the blur is torchvision's tensor ``GaussianBlur`` (SimSiam's
ImageNet code uses PIL's ``ImageFilter.GaussianBlur(σ)``, which has no kernel
size); crop candidates are computed in float32 (torchvision: float64), which
can move ``round`` only within ~1e-6 of a .5 tie; the random numbers are JAX's, not torch's.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

from gsg_jax.errors import ConfigError

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert('L').
_HIGHEST = jax.lax.Precision.HIGHEST  # Resampling matmuls in full float32 on TPU/GPU too.
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes.


def default_augment_config() -> ml_collections.ConfigDict:
  """``config.augment``: the SimSiam CIFAR-10 recipe (SimSiam paper, appendix / official code)."""
  c = ml_collections.ConfigDict()
  c.crop_size = 32  # Output side (CIFAR: 32; ImageNet: 224).
  c.crop_scale = (0.2, 1.0)  # SimSiam/BYOL: RandomResizedCrop(scale=(0.2, 1.0)).
  c.crop_ratio = (3 / 4, 4 / 3)  # torchvision's default aspect range.
  c.brightness = 0.4  # SimSiam: ColorJitter(0.4, 0.4, 0.4, 0.1) ...
  c.contrast = 0.4
  c.saturation = 0.4
  c.hue = 0.1
  c.jitter_prob = 0.8  # ... applied with p = 0.8.
  c.grayscale_prob = 0.2  # SimSiam: RandomGrayscale(p=0.2).
  c.blur_prob = 0.0  # ImageNet recipe: 0.5; SimSiam's CIFAR recipe has no blur.
  c.blur_sigma = (0.1, 2.0)  # SimSiam/MoCo v2 GaussianBlur sigma range.
  c.blur_kernel_frac = 0.1  # Kernel ≈ 10% of the side (23 at 224, as BYOL).
  c.flip_prob = 0.5  # RandomHorizontalFlip().
  c.mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10 training set: per-channel mean and std of the pixel
  c.std = (0.2470, 0.2435, 0.2616)  # values / 255. ImageNet: (0.485, 0.456, 0.406), (0.229, 0.224, 0.225).
  c.eval_resize = 0  # Eval: resize shorter side to this, centre crop (0: resize to crop).
  return c


# ---------------------------------------------------------------- geometry


def sample_crop_box(key, height: int, width: int, scale, ratio, attempts: int = CROP_ATTEMPTS):
  """torchvision's ``RandomResizedCrop.get_params``: (top, left, h, w) as int32 scalars (see ``crop_box``)."""
  return crop_box(jax.random.uniform(key, (4 * attempts,)), height, width, scale, ratio)


def crop_box(u, height, width, scale, ratio, xp=jnp):
  """``RandomResizedCrop.get_params`` on 4·attempts uniform numbers ``u``: (top, left, h, w).

  All candidates are computed at once and the first that fits
  (0 < w ≤ W, 0 < h ≤ H) is taken, its offsets uniform in {0, …, H − h} and
  {0, …, W − w}; if none fits, the whole image with its aspect clamped to
  ``ratio``, centred.

  ``xp`` holds the array functions used (``asarray(x, dtype)``, ``reshape``,
  ``round`` (half to even, as Python's), ``sqrt``, ``exp``, ``floor``,
  ``argmax``, ``any``, ``where``, ``float32``, ``int32``): ``jnp`` on the
  accelerator, where ``height`` and ``width`` are static, or TensorFlow's on
  the host (``gsg_jax.data.tfds_source``), where they are the decoded image's.
  Sizes are held in float32, exact for sides below 2²⁴.
  """
  u = xp.reshape(u, (4, -1))
  u_area, u_ratio, u_top, u_left = u[0], u[1], u[2], u[3]
  height, width = xp.asarray(height, xp.float32), xp.asarray(width, xp.float32)
  area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
  aspect = xp.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u_ratio)
  w = xp.round(xp.sqrt(area * aspect))
  h = xp.round(xp.sqrt(area / aspect))
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  top = xp.floor(u_top * (height - h + 1))
  left = xp.floor(u_left * (width - w + 1))

  in_ratio = width / height
  fw = xp.where(in_ratio > max(ratio), xp.round(height * max(ratio)), width)
  fh = xp.where(in_ratio < min(ratio), xp.round(width / min(ratio)), height)
  first, any_fits = xp.argmax(xp.asarray(fits, xp.int32)), xp.any(fits)
  pick = lambda candidates, fallback: xp.asarray(xp.where(any_fits, candidates[first], fallback), xp.int32)
  return (pick(top, xp.floor((height - fh) / 2)), pick(left, xp.floor((width - fw) / 2)), pick(h, fh), pick(w, fw))


def resample_weights(start, length, in_size: int, out_size: int):
  """[out_size, in_size] antialiased bilinear weights taking pixels [start, start + length) of an axis to out_size.

  Row i: w_ij ∝ max(0, 1 − |j + ½ − c_i| / max(s, 1)) for start ≤ j < start + length,
  c_i = start + (i + ½)·s, s = length / out_size (PIL's resampling coefficients).
  ``start`` and ``length`` may be traced.
  """
  start = jnp.asarray(start, jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  s = length / out_size
  centre = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * s
  j = jnp.arange(in_size, dtype=jnp.float32)
  w = jnp.maximum(0.0, 1.0 - jnp.abs(j[None, :] + 0.5 - centre[:, None]) / jnp.maximum(s, 1.0))
  w = jnp.where((j >= start) & (j < start + length), w, 0.0)
  return w / jnp.sum(w, axis=1, keepdims=True)  # The nearest pixel has weight ≥ ½: never 0/0.


def resized_crop(image, top, left, h, w, size: int):
  """The box (top, left, h, w) of a float [H, W, 3] image resized to size×size: planar [3, size, size]."""
  rows = resample_weights(top, h, image.shape[0], size)
  cols = resample_weights(left, w, image.shape[1], size)
  x = jnp.einsum('ij,jwc->ciw', rows, image, precision=_HIGHEST)
  return jnp.einsum('kw,ciw->cik', cols, x, precision=_HIGHEST)


# ---------------------------------------------------------------- colour, on planar [3, H, W] images


def grayscale(x):
  """Luma of [3, ...] → [1, ...]."""
  return (GRAY_WEIGHTS[0] * x[0] + GRAY_WEIGHTS[1] * x[1] + GRAY_WEIGHTS[2] * x[2])[None]


def _blend(x, other, f):
  return jnp.clip(f * x + (1.0 - f) * other, 0.0, 1.0)


def adjust_brightness(x, f):
  """Blend with black: clip(f·x)."""
  return _blend(x, 0.0, f)


def adjust_contrast(x, f):
  """Blend with the mean grey level of the image."""
  return _blend(x, jnp.mean(grayscale(x)), f)


def adjust_saturation(x, f):
  """Blend with the grey image."""
  return _blend(x, grayscale(x), f)


def adjust_hue(x, f):
  """Rotate the hue by f turns in HSV space: RGB → (H, S, V), H ← (H + f) mod 1, → RGB.

  With V = max(R, G, B), C = V − min(R, G, B) (= V·S), the hue in sixths of a turn is
  6H = (G − B)/C if R = V, else 2 + (B − R)/C if G = V, else 4 + (R − G)/C (mod 6),
  and the inverse is, for (R, G, B) with n = (5, 3, 1),

      channel_n = V − C·clip(min(k, 4 − k), 0, 1),   k = (n + 6H) mod 6.

  Greys (C = 0) are unchanged, and the result equals ``colorsys``'s round trip.
  """
  r, g, b = x[0], x[1], x[2]
  v = jnp.maximum(jnp.maximum(r, g), b)
  c = v - jnp.minimum(jnp.minimum(r, g), b)
  d = jnp.where(c > 0, c, 1.0)
  sixths = jnp.where(r == v, (g - b) / d, jnp.where(g == v, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
  hue = sixths / 6.0 + f
  hue = hue - jnp.floor(hue)
  k = jnp.array([5.0, 3.0, 1.0])[:, None, None] + 6.0 * hue
  k = jnp.where(k >= 6.0, k - 6.0, k)
  return jnp.clip(v - c * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0), 0.0, 1.0)


def jitter_ops(cfg):
  """The ColorJitter ops with nonzero strength, as (name, low, high) of their factor's uniform range."""
  b, c, s, h = cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue
  ops = (
    ('brightness', b, max(0.0, 1 - b), 1 + b),
    ('contrast', c, max(0.0, 1 - c), 1 + c),
    ('saturation', s, max(0.0, 1 - s), 1 + s),
    ('hue', h, -h, h),
  )
  return [(name, low, high) for name, strength, low, high in ops if strength > 0]


def jitter_params(u, cfg):
  """(order, factors) from 2·len(ops) uniform numbers: a uniformly random permutation of the ops
  (the argsort of uniform numbers; ties have probability ~1e-6) and each op's factor."""
  ops = jitter_ops(cfg)
  u_order, u_factor = u.reshape(2, len(ops))
  low, high = jnp.array([op[1] for op in ops]), jnp.array([op[2] for op in ops])
  return jnp.argsort(u_order), low + (high - low) * u_factor


def apply_jitter(x, order, factors, cfg):
  """Apply op ``order[t]`` with its factor, for t = 0, 1, ….

  Brightness, contrast and saturation are one blend x ← clip(f·x + (1 − f)·m)
  with m = 0, mean(gray(x)) or gray(x) chosen by the op; the hue rotation is
  computed beside it and selected. (Under vmap a ``lax.switch`` would compute
  all four ops at every step; this computes two.)
  """
  names = [name for name, _, _ in jitter_ops(cfg)]
  is_op = lambda op, name: op == names.index(name) if name in names else False
  for op in order:
    gray = grayscale(x)
    target = jnp.where(is_op(op, 'contrast'), jnp.mean(gray), jnp.where(is_op(op, 'saturation'), gray, 0.0))
    blended = _blend(x, target, factors[op])
    x = jnp.where(is_op(op, 'hue'), adjust_hue(x, factors[op]), blended) if 'hue' in names else blended
  return x


# ---------------------------------------------------------------- blur, normalisation


def blur_kernel_size(cfg) -> int:
  """The odd integer at or just above ``blur_kernel_frac``·crop, at least 3 (23 at 224)."""
  k = int(cfg.blur_kernel_frac * cfg.crop_size)
  return max(3, k + 1 - k % 2)


def gaussian_blur(x, sigma, kernel_size: int):
  """Separable Gaussian blur of a planar [C, H, W] image, reflect padding (torchvision's tensor ``GaussianBlur``)."""
  half = kernel_size // 2
  t = jnp.arange(-half, half + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (t / sigma) ** 2)
  kernel = kernel / jnp.sum(kernel)
  h, w = x.shape[1:]
  x = jnp.pad(x, ((0, 0), (half, half), (0, 0)), mode='reflect')
  x = sum(kernel[i] * x[:, i : i + h] for i in range(kernel_size))
  x = jnp.pad(x, ((0, 0), (0, 0), (half, half)), mode='reflect')
  return sum(kernel[i] * x[:, :, i : i + w] for i in range(kernel_size))


def normalize(x, cfg):
  """(x − mean) / std over the last (channel) axis, computed as x · diag(1/std) − mean/std.

  Why a matrix product: XLA:CPU writes a dot's output to memory, whereas an
  elementwise tail fuses into every consumer. Written elementwise, the whole
  augmentation chain (crop, jitter, grey, flip) was recomputed inside each
  consumer of the views in a train step: the first convolution's input and,
  in transposed order, the copy that feeds its weight gradient.
  """
  std = jnp.asarray(cfg.std, jnp.float32)
  scaled = jnp.einsum('...c,cd->...d', x, jnp.diag(1.0 / std), precision=_HIGHEST)
  return scaled - jnp.asarray(cfg.mean, jnp.float32) / std


# ---------------------------------------------------------------- pipelines


def _with_probability(u, p: float, fn, x):
  """fn(x) where the uniform draw u < p, else x; not traced at all when p = 0."""
  return jnp.where(u < p, fn(x), x) if p > 0 else x


def augment_view(key, image_u8, cfg, crop: bool = True):
  """One view of one image: uint8 [H, W, 3] → normalised float32 [crop, crop, 3].

  All the view's random numbers are uniforms from one PRNG call (a single
  threefry in the compiled program). Between the crop and the normalisation the
  image is planar, [3, crop, crop]: elementwise ops over whole planes vectorise
  better on CPUs. ``crop=False``: ``image_u8`` is the view already cropped
  (on the host), [crop, crop, 3]; every other op is applied.
  """
  if image_u8.ndim != 3 or image_u8.shape[-1] != 3:
    raise ValueError(f'expected an [H, W, 3] image, got shape {image_u8.shape}.')
  n_jitter = 2 * len(jitter_ops(cfg))
  u = jax.random.uniform(key, (5 + CROP_ATTEMPTS * 4 + n_jitter,))
  u_jitter, u_gray, u_blur, u_sigma, u_flip = u[:5]
  u_crop, u_params = u[5 : 5 + 4 * CROP_ATTEMPTS], u[5 + 4 * CROP_ATTEMPTS :]
  height, width = image_u8.shape[:2]
  if crop:
    box = crop_box(u_crop, height, width, cfg.crop_scale, cfg.crop_ratio)
    x = resized_crop(image_u8.astype(jnp.float32) / 255.0, *box, cfg.crop_size)
  elif (height, width) != (cfg.crop_size, cfg.crop_size):
    raise ConfigError(f'a view cropped on the host is {height}×{width}, but augment.crop_size={cfg.crop_size}.')
  else:
    x = jnp.moveaxis(image_u8.astype(jnp.float32) / 255.0, -1, 0)
  jitter = lambda x: apply_jitter(x, *jitter_params(u_params, cfg), cfg) if n_jitter else x
  x = _with_probability(u_jitter, cfg.jitter_prob, jitter, x)
  x = _with_probability(u_gray, cfg.grayscale_prob, lambda x: jnp.broadcast_to(grayscale(x), x.shape), x)
  sigma = cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * u_sigma
  x = _with_probability(u_blur, cfg.blur_prob, lambda x: gaussian_blur(x, sigma, blur_kernel_size(cfg)), x)
  x = _with_probability(u_flip, cfg.flip_prob, lambda x: x[:, :, ::-1], x)
  return normalize(jnp.moveaxis(x, 0, -1), cfg)


def augment_batch(key, images_u8, num_views: int, cfg):
  """uint8 [B, H, W, 3] → float32 [B, num_views, crop, crop, 3].

  View v of image b uses key ``jax.random.split(key, B·num_views).reshape(B, num_views)[b, v]``,
  so each view depends only on its image and its key, whatever the batch's sharding.
  One vmap over the B·num_views (image, key) pairs: the images are repeated
  (a broadcast that keeps the batch sharding), which compiles faster than nested vmaps.
  """
  batch = images_u8.shape[0]
  keys = jax.random.split(key, batch * num_views)
  views = jax.vmap(augment_view, in_axes=(0, 0, None))(keys, jnp.repeat(images_u8, num_views, axis=0), cfg)
  return views.reshape((batch, num_views) + views.shape[1:])


def augment_cropped_views(key, views_u8, cfg):
  """Views cropped on the host, uint8 [B, V, crop, crop, 3] → float32 [B, V, crop, crop, 3]: every op but the crop.

  View v of image b uses key ``jax.random.split(key, B·V).reshape(B, V)[b, v]``, as in ``augment_batch``.
  """
  batch, num_views = views_u8.shape[:2]
  keys = jax.random.split(key, batch * num_views)
  flat = views_u8.reshape((batch * num_views,) + views_u8.shape[2:])
  views = jax.vmap(augment_view, in_axes=(0, 0, None, None))(keys, flat, cfg, False)
  return views.reshape((batch, num_views) + views.shape[1:])


def preprocess_eval(images_u8, cfg):
  """Deterministic evaluation view: uint8 [B, H, W, 3] → normalised float32 [B, crop, crop, 3].

  ``eval_resize`` > 0: torchvision's ``Resize(eval_resize)`` (shorter side to
  eval_resize, longer side ⌊eval_resize·long/short⌋) then ``CenterCrop(crop)``
  (offsets round((side − crop)/2)), the ImageNet protocol. Otherwise the image
  is resized to crop×crop if it is not already that size (CIFAR: a no-op).
  Same antialiased bilinear resampling as the training crop.
  """
  _, height, width, _ = images_u8.shape
  size = cfg.crop_size
  x = images_u8.astype(jnp.float32) / 255.0
  if cfg.eval_resize:
    short, long = sorted((height, width))
    new_short, new_long = cfg.eval_resize, int(cfg.eval_resize * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    if new_short < size:
      raise ConfigError(f'eval_resize={cfg.eval_resize} is smaller than crop_size={size}.')
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    rows = resample_weights(0, height, height, new_h)[top : top + size]
    cols = resample_weights(0, width, width, new_w)[left : left + size]
  elif (height, width) != (size, size):
    rows, cols = resample_weights(0, height, height, size), resample_weights(0, width, width, size)
  else:
    return normalize(x, cfg)
  x = jnp.einsum('ij,bjwc->biwc', rows, x, precision=_HIGHEST)
  return normalize(jnp.einsum('kw,biwc->bikc', cols, x, precision=_HIGHEST), cfg)
