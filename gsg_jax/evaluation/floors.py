"""Floors: what raw pixels and the random-init encoder score, beside every kNN and linear figure.

A figure means something only against what needs no training: the same kNN
and fast linear probe (the ``knn`` and ``fast_linear`` evaluators), on the
same memory and held-out splits, of

* ``raw_pixels``: the evaluation view of each image (``preprocess_eval``: the
  run's resize / centre crop to its evaluation resolution and its mean/std
  normalisation), flattened to H·W·3 numbers;
* ``random_init``: the run's network as ``train_and_evaluate`` initialises it
  (same seed, same architecture), backbone features in evaluation mode.

They are computed once per dataset and cached as small JSON files, one per
floor, ``<cache_dir>/floors-<kind>-<digest>.json`` holding ``{'key', 'metrics'}``.
The key is everything the numbers depend on: the memory and held-out data's
descriptions and sizes (and a digest of their labels and sampled images
when in memory), the evaluation preprocessing (resolution, resize, mean,
std), the kNN settings and the fast probe's protocol, and for
``random_init`` the model config, seed and predictor. The default cache
directory is ``floor_cache/`` beside the run directory (``<workdir>/../floor_cache``,
``config.eval.floor_cache_dir`` to change it), so runs kept side by side
share it: the training monitor and ``gsg_jax.evaluate`` read what either
computed, and a sweep computes the raw-pixel floors once.

The ``floors`` evaluator returns ``floors/<kind>/<metric>`` for the top-1 and
top-5 of both protocols; ``beats_raw_pixels`` compares a result with them.
"""

import hashlib
import json

import jax

from gsg_jax import storage
from gsg_jax.data import augment
from gsg_jax.evaluation.evaluator import Evaluator, get_evaluators, register_evaluator, run_evaluators

KINDS = ('raw_pixels', 'random_init')
PROTOCOLS = ('knn', 'fast_linear')
METRICS = ('knn_top1', 'knn_top5', 'fast_linear_top1', 'fast_linear_top5')


def cache_dir(config, workdir: str) -> str:
  """``config.eval.floor_cache_dir``, or ``floor_cache`` beside ``workdir``."""
  configured = config.eval.floor_cache_dir
  return configured or storage.join(storage.dirname(workdir), 'floor_cache')


def raw_pixel_encoder(augment_config):
  """uint8 images [B, H, W, 3] → their normalised evaluation views, flattened: float32 [B, crop·crop·3]."""
  return jax.jit(lambda images: augment.preprocess_eval(images, augment_config).reshape(images.shape[0], -1))


def random_init_state(trainer, config, image_shape):
  """The state ``train_and_evaluate`` starts from: ``trainer.init`` with the first half of ``split(key(seed))``."""
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  return jax.jit(trainer.init, static_argnums=1)(init_rng, tuple(image_shape))


def floor_key(kind: str, config, memory, heldout, knn: dict | None, fast_linear: dict | None) -> dict:
  """What the ``kind`` floor depends on (see the module docstring)."""
  a = config.augment
  key = {
    'kind': kind,
    'memory': memory.description,
    'memory_fingerprint': memory.fingerprint(),
    'heldout': heldout.description,
    'heldout_fingerprint': heldout.fingerprint(),
    'eval_preprocessing': {
      'crop_size': int(a.crop_size),
      'eval_resize': int(a.eval_resize),
      'mean': list(a.mean),
      'std': list(a.std),
    },
    'knn': knn,
    'fast_linear': fast_linear,
  }
  if kind == 'random_init':
    key['model'] = config.model.to_dict()
    key['seed'] = int(config.seed)
    key['predictor'] = config.method.predictor
  return key


def _path(directory: str, key: dict) -> str:
  digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
  return storage.join(directory, f'floors-{key["kind"]}-{digest}.json')


def cached(directory: str, key: dict) -> dict | None:
  """The cached metrics for ``key``, or None (missing, unreadable, or written for another key)."""
  try:
    stored = storage.read_json(_path(directory, key))
  except (OSError, ValueError):
    return None
  same = json.loads(json.dumps(key, default=str)) == stored.get('key')
  return stored.get('metrics') if same else None


def store(directory: str, key: dict, metrics: dict) -> str | None:
  """Write the cache file (atomically; process 0 only); returns its path, or None where it cannot be written."""
  if jax.process_index() != 0:
    return None
  path = _path(directory, key)
  try:
    storage.makedirs(directory)
    storage.write_json(path, {'key': key, 'metrics': metrics}, indent=1, default=str)
  except OSError:
    return None  # A read-only place: the floors are still returned, just not kept.
  return path


def get_or_compute(directory: str, keys: dict, compute: dict) -> dict:
  """``{kind: metrics}`` for each kind in ``keys``: from the cache, else ``compute[kind]()`` (then cached)."""
  result = {}
  for kind, key in keys.items():
    metrics = cached(directory, key)
    if metrics is None:
      metrics = compute[kind]()
      store(directory, key, metrics)
    result[kind] = metrics
  return result


def beats_raw_pixels(metrics: dict, keys=('knn_top1', 'fast_linear_top1')) -> bool | None:
  """Whether every figure among ``keys`` in ``metrics`` is above its raw-pixel floor there (None: nothing to
  compare). The standard linear figure, where there is one, stands for the fast probe's."""
  figure = lambda k: metrics.get('linear_top1', metrics.get(k)) if k == 'fast_linear_top1' else metrics.get(k)
  pairs = [(figure(k), metrics.get(f'floors/raw_pixels/{k}')) for k in keys]
  pairs = [(value, floor) for value, floor in pairs if value is not None and floor is not None]
  return None if not pairs else all(value > floor for value, floor in pairs)


class Floors(Evaluator):
  """``floors/<raw_pixels|random_init>/<metric>``: kNN and the fast probe of the floors' encoders, cached."""

  name = 'floors'

  def settings(self, ctx) -> dict:
    return {'cache_dir': cache_dir(ctx.config, ctx.workdir), 'protocols': list(PROTOCOLS)}

  def evaluate(self, ctx, sink) -> dict:
    evaluators = get_evaluators(PROTOCOLS)
    knn, fast = (e.settings(ctx) for e in evaluators)
    keys = {kind: floor_key(kind, ctx.config, ctx.memory, ctx.heldout, knn, fast) for kind in KINDS}
    raw = raw_pixel_encoder(ctx.config.augment)

    def random_init():
      initial = ctx.state is not None and int(ctx.state.step) == 0  # A step-0 state is the random-init one.
      state = ctx.state if initial else random_init_state(ctx.trainer, ctx.config, ctx.image_shape)
      return run_evaluators(evaluators, ctx.at_state(state))[0]

    compute = {
      'raw_pixels': lambda: run_evaluators(evaluators, ctx.with_encoder(lambda x: {'features': raw(x)}))[0],
      'random_init': random_init,
    }
    floors = get_or_compute(cache_dir(ctx.config, ctx.workdir), keys, compute)
    return {f'floors/{kind}/{k}': v for kind, m in floors.items() for k, v in m.items() if k in METRICS}


register_evaluator(Floors())
