"""Host throughput of the streamed (ImageNet) training input: per-view crops from the full image vs the square path.

    python benchmarks/host_crops.py --images 512 --repeats 3 --out benchmarks/results/host_crops_cpu.json

Synthetic JPEGs at ImageNet's common sizes (500×375, 375×500, 500×333,
333×500, 500×500, 500×281; a smooth random colour field plus pixel noise,
quality 90) are decoded and cropped by tf.data with TF's parallelism
(``num_parallel_calls=AUTOTUNE``), batched by 64 and read as numpy arrays, as
``StreamingTrainData`` does. Pipelines, in images (source images) per second:

* ``decode``: decoding alone, the floor under the others;
* ``square``: the path this replaced: shorter side resized to 256 (bicubic,
  antialiased), one random 256×256 crop; the accelerator then cropped every
  view from that square;
* ``per_view_<V>``: ``tfds_source.random_resized_views``, V independent
  RandomResizedCrop(224, scale=(0.2, 1)) boxes from the full decoded image,
  each resized to 224 (antialiased bilinear): V = 2 (SimSiam, BYOL) and
  V = 4 (GSG).

Each pipeline runs one warm-up pass, then ``--repeats`` timed passes over
``--images`` images, interleaved with the other pipelines so that load from
other processes falls on all of them alike; the median and best pass are
reported, and the CPU time this process spent per image (all threads): the
figure that carries over to a host with more cores (images/s per core =
1000 / CPU ms), and the one least disturbed by other processes.
"""

import argparse
import datetime
import io
import json
import os
import platform
import time

import numpy as np
from PIL import Image

SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (500, 500), (281, 500))  # (height, width)


def synthetic_jpegs(count: int, seed: int = 0) -> list[bytes]:
  """``count`` JPEGs cycling through ``SIZES``: a bicubic-upsampled 12×12 random field plus noise (σ = 8 levels)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(count):
    h, w = SIZES[i % len(SIZES)]
    field = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    pixels = np.clip(np.asarray(field, np.float32) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='JPEG', quality=90)
    out.append(buffer.getvalue())
  return out


def pipelines(tf):
  """name → per-example map function (position, encoded) → uint8 tensor."""
  from gsg_jax.data import tfds_source

  def decode(position, encoded):
    del position
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)

  def square(position, encoded):  # The replaced path: resize 256, one random 256² crop.
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(shape * 256.0 / tf.reduce_min(shape)), tf.int32)
    resized = tf.image.resize(image, tf.maximum(new, 256), method='bicubic', antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return tf.image.stateless_random_crop(resized, [256, 256, 3], tf.stack([tf.constant(0, tf.int64), position]))

  def per_view(views):
    def fn(position, encoded):
      seed = tf.stack([tf.constant(0, tf.int64), position])
      return tfds_source.random_resized_views(encoded, views, 224, (0.2, 1.0), (3 / 4, 4 / 3), seed)

    return fn

  return {'decode': decode, 'square': square, 'per_view_2': per_view(2), 'per_view_4': per_view(4)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=512)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--out', default='')
  args = parser.parse_args(argv)

  from gsg_jax.data.tfds_source import _tf_and_tfds

  tf, _ = _tf_and_tfds()
  encoded = synthetic_jpegs(args.images)
  functions = pipelines(tf)

  def run(fn):
    ds = tf.data.Dataset.from_tensor_slices(encoded).enumerate()
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if fn is functions['decode']:  # Decoded images differ in size: no batch, one array each.
      ds = ds.prefetch(tf.data.AUTOTUNE)
    else:
      ds = ds.batch(args.batch).prefetch(tf.data.AUTOTUNE)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in ds.as_numpy_iterator():
      pass
    return args.images / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu_start) / args.images

  for fn in functions.values():  # Warm-up: tracing and TF's thread pools.
    run(fn)
  rates, cpu_ms = {name: [] for name in functions}, {name: [] for name in functions}
  for _ in range(args.repeats):
    for name, fn in functions.items():
      rate, ms = run(fn)
      rates[name].append(rate)
      cpu_ms[name].append(ms)

  result = {
    'date': datetime.date.today().isoformat(),
    'machine': platform.processor() or platform.machine(),
    'cpus': os.cpu_count(),
    'load_average': os.getloadavg(),
    'tensorflow': tf.__version__,
    'images': args.images,
    'mean_jpeg_bytes': float(np.mean([len(e) for e in encoded])),
    'images_per_second': {
      name: {'median': float(np.median(r)), 'best': float(np.max(r)), 'passes': r} for name, r in rates.items()
    },
    'cpu_ms_per_image': {name: {'median': float(np.median(m)), 'passes': m} for name, m in cpu_ms.items()},
  }
  print(f'{"pipeline":<12} {"median img/s":>12} {"best img/s":>10} {"CPU ms/img":>10}')
  for name, r in rates.items():
    print(f'{name:<12} {np.median(r):>12.1f} {np.max(r):>10.1f} {np.median(cpu_ms[name]):>10.2f}')
  print(f'load average {result["load_average"]}, {result["cpus"]} CPUs, mean JPEG {result["mean_jpeg_bytes"]:.0f} B')
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
