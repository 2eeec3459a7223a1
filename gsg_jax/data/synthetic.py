"""The built-in dataset: ten shape classes rendered with numpy, no download.

Generative process, per image (independently, from one seeded generator):

1. The label picks one of ten shapes (``SHAPES``): disc, ring, square,
   triangle, cross, bar, star, crescent, corner (an L) and dots (two discs).
   Labels are balanced: ``arange(N) % 10``, shuffled.
2. Pose: radius 25–42 % of the image side, centre anywhere that keeps most
   of the shape inside, rotation within ±15°, mirrored left-right with
   probability ½. The shape is an implicit region in its own coordinates,
   sampled on a 2×-supersampled grid and averaged 2×2 (anti-aliasing).
3. Luminance: background level in [0.1, 0.35], shape 0.35–0.55 brighter.
4. Colour: a random chroma field (zero-luminance RGB offsets: random colours
   at an 8×8 grid of control points, bilinearly interpolated, ×1.2) tints
   foreground and background, so both take random colours that also vary
   across the image.
5. Pixel noise: Gaussian, σ = 0.03.

The label is a function of the shape alone; colour, position, scale and
brightness are independent of it, so per-class mean colours agree. A
random-init network's features are dominated by the colour field, so its
kNN accuracy is low. The SSL augmentations randomise exactly these
nuisances between two views – random resized crop (position, scale), colour
jitter and grayscale (brightness, contrast, colours), horizontal flip
(mirroring) – so what two views share is the shape, and training learns it.

Design rule, found by probing SimSiam on it: any per-image property that the
augmentations cannot change and that varies between images (a single hue,
a gradient's direction, which of shape and background is brighter, large
rotations) becomes a shortcut that two views share, and SSL learns it
instead of the shape. So the colours vary within each image, the shape is
always the brighter part, and rotation is small.
"""

from typing import Sequence

import numpy as np

from gsg_jax.data.augment import GRAY_WEIGHTS
from gsg_jax.data.pipeline import Dataset, InMemoryTrainData, Split
from gsg_jax.errors import ConfigError

SHAPES = ('disc', 'ring', 'square', 'triangle', 'cross', 'bar', 'star', 'crescent', 'corner', 'dots')
NUM_CLASSES = len(SHAPES)
SUPERSAMPLE = 2
RADIUS = (0.25, 0.42)  # Shape radius, as a fraction of the image side.
ROTATION = np.pi / 12  # Rotation uniform in [-ROTATION, ROTATION].
BACKGROUND_LEVEL = (0.1, 0.35)  # Background luminance, colours in [0, 1].
SHAPE_CONTRAST = (0.35, 0.55)  # How much brighter the shape is.
CHROMA_GRID = 8  # Control points per side of the colour field.
CHROMA = 1.2  # Colour field amplitude.
NOISE = 0.03  # Pixel noise σ.
_LUMA = np.array(GRAY_WEIGHTS, np.float32)  # The luma the grayscale augmentation uses.
_CHUNK = 1024  # Images rendered at once (bounds the memory of the supersampled grids).


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether points ``(u, v)``, in shape coordinates (the shape fits the unit disc), lie in ``SHAPES[shape]``."""
  name = SHAPES[shape]
  r2 = u * u + v * v
  au, av = np.abs(u), np.abs(v)
  if name == 'disc':
    return r2 < 0.85**2
  if name == 'ring':
    return (r2 < 0.95**2) & (r2 > 0.55**2)
  if name == 'square':
    return np.maximum(au, av) < 0.68
  if name == 'triangle':  # Equilateral, circumradius 1.
    inside = np.ones(u.shape, bool)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
      inside &= u * np.cos(angle) + v * np.sin(angle) > -0.5
    return inside
  if name == 'cross':
    return ((au < 0.27) & (av < 0.92)) | ((av < 0.27) & (au < 0.92))
  if name == 'bar':
    return (au < 0.95) & (av < 0.24)
  if name == 'star':  # Five points: radius 1 at the tips, 0.42 between them.
    phase = np.arctan2(v, u) * (5 / (2 * np.pi)) % 1.0
    return np.sqrt(r2) < 0.42 + 0.58 * np.abs(2 * phase - 1)
  if name == 'crescent':
    return (r2 < 0.9**2) & ((u - 0.42) ** 2 + v * v > 0.72**2)
  if name == 'corner':
    return (((u > -0.8) & (u < -0.3)) | ((v > -0.8) & (v < -0.3))) & (u < 0.8) & (v < 0.8) & (u > -0.8) & (v > -0.8)
  if name == 'dots':
    return ((au - 0.52) ** 2 + v * v) < 0.38**2
  raise ValueError(f'unknown shape {shape}')


def coverage(
  labels: np.ndarray, centre: np.ndarray, radius: np.ndarray, angle: np.ndarray, mirror: np.ndarray, image_size: int
) -> np.ndarray:
  """Anti-aliased shape coverage, float32 [N, S, S] in [0, 1].

  ``centre`` [N, 2] (x, y) and ``radius`` [N] are in pixels, ``angle`` [N]
  in radians, ``mirror`` [N] bool.
  """
  n, s = len(labels), image_size * SUPERSAMPLE
  grid = (np.arange(s, dtype=np.float32) + 0.5) / SUPERSAMPLE
  x = grid[None, None, :] - centre[:, 0, None, None].astype(np.float32)
  y = grid[None, :, None] - centre[:, 1, None, None].astype(np.float32)
  cos = (np.cos(angle) / radius).astype(np.float32)[:, None, None]
  sin = (np.sin(angle) / radius).astype(np.float32)[:, None, None]
  u = (x * cos + y * sin) * np.where(mirror, -1, 1).astype(np.float32)[:, None, None]
  v = y * cos - x * sin
  mask = np.zeros((n, s, s), bool)
  for shape in np.unique(labels):
    rows = labels == shape
    mask[rows] = shape_mask(int(shape), u[rows], v[rows])
  mask = mask.view(np.uint8)
  total = sum(mask[:, i::SUPERSAMPLE, j::SUPERSAMPLE] for i in range(SUPERSAMPLE) for j in range(SUPERSAMPLE))
  return total.astype(np.float32) / SUPERSAMPLE**2


def chroma_field(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
  """Smooth random colours with zero luminance, float32 [n, size, size, 3]."""
  control = rng.uniform(size=(n, CHROMA_GRID, CHROMA_GRID, 3)).astype(np.float32)
  position = (np.arange(size) + 0.5) / size * (CHROMA_GRID - 1)
  low = np.clip(np.floor(position).astype(int), 0, CHROMA_GRID - 2)
  frac = (position - low).astype(np.float32)[None, :, None, None]
  rows = control[:, low] * (1 - frac) + control[:, low + 1] * frac
  frac = frac.reshape(1, 1, size, 1)
  field = rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac
  return field - (field @ _LUMA)[..., None]


def render(labels: np.ndarray, rng: np.random.Generator, image_size: int = 32) -> np.ndarray:
  """Images uint8 [N, S, S, 3] of the shapes ``labels``, with random pose, colours and noise."""
  n, size = len(labels), image_size
  radius = rng.uniform(*RADIUS, n) * size
  margin = 0.8 * radius[:, None]
  centre = rng.uniform(margin, size - margin, (n, 2))
  angle = rng.uniform(-ROTATION, ROTATION, n)
  mirror = rng.random(n) < 0.5
  alpha = coverage(labels, centre, radius, angle, mirror, size)[..., None]
  background = rng.uniform(*BACKGROUND_LEVEL, (n, 1, 1, 1)).astype(np.float32)
  contrast = rng.uniform(*SHAPE_CONTRAST, (n, 1, 1, 1)).astype(np.float32)
  image = background + contrast * alpha + CHROMA * chroma_field(rng, n, size)
  image += rng.standard_normal(image.shape, dtype=np.float32) * NOISE
  return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)  # + 0.5: round to nearest.


def generate(num_examples: int, seed: int | Sequence[int], image_size: int = 32) -> Split:
  """``num_examples`` balanced, shuffled images, a deterministic function of ``(num_examples, seed, image_size)``."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_examples) % NUM_CLASSES).astype(np.int32)
  chunks = [render(labels[i : i + _CHUNK], rng, image_size) for i in range(0, num_examples, _CHUNK)]
  images = np.concatenate(chunks) if chunks else np.zeros((0, image_size, image_size, 3), np.uint8)
  return Split(images, labels)


def load_builtin(config) -> Dataset:
  """The built-in dataset for ``config`` (``builtin_num_train``, ``builtin_num_heldout``, ``builtin_seed``,
  ``image_size``).

  Train and held-out images come from independent streams (``[seed, 0]`` and
  ``[seed, 1]``); the memory split is the training images.
  """
  for key in ('builtin_num_train', 'builtin_num_heldout', 'image_size'):
    if config[key] <= 0:
      raise ConfigError(f'config.data.{key}={config[key]!r} is invalid: expected a positive integer.')
  if config.image_size < 8:
    raise ConfigError(
      f'config.data.image_size={config.image_size!r} is invalid: builtin shapes need at least 8 pixels.'
    )
  if config.builtin_seed < 0:
    raise ConfigError(f'config.data.builtin_seed={config.builtin_seed!r} is invalid: expected >= 0.')
  train = generate(config.builtin_num_train, [config.builtin_seed, 0], config.image_size)
  heldout = generate(config.builtin_num_heldout, [config.builtin_seed, 1], config.image_size)
  return Dataset('builtin', NUM_CLASSES, InMemoryTrainData(train), memory=train, heldout=heldout)
