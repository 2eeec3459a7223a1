"""Linear probes: a BN-free linear classifier on frozen representations, and the named protocols.

Both probes fit logits = h W + b (W [D, C], b [C]; W ~ N(0, 0.01²), b = 0 at
init, as SimSiam's linear evaluation) by minimising the softmax cross-entropy

    L = −(1/B) Σ_i log softmax(h_i W + b)_{y_i}

under a cosine learning-rate schedule, and report top-1 / top-5 test
accuracy in percent (top-5: the label is among the five highest logits).

* ``fast_linear_probe``: on precomputed features, standardised with the
  training mean and std; a whole epoch is one jitted ``lax.scan``. It holds
  all training features in memory.
* ``linear_probe``: the standard protocol; features of a frozen encoder are
  recomputed every step from randomly augmented images drawn from a
  ``TrainData`` (streamed or in memory), so nothing grows with the split.

``LINEAR_PROTOCOLS`` names the protocols as data (one dict each, one code
path: ``resolve_protocol`` then ``fast_linear_probe`` for ``inputs:
'features'`` or ``linear_probe`` for ``inputs: 'images'``):

* ``fast``: this library's quick probe on unaugmented features (AdamW).
* ``cifar``: the MoCo/SimSiam ``main_lincls.py`` recipe as CIFAR follow-ups
  run it: SGD (momentum 0.9), base lr 30 × batch/256, batch 256, no weight
  decay, 100 epochs, cosine; random-resized crop (scale 0.08–1,
  torchvision's default) and flip at the run's resolution.
* ``imagenet``: the GSG reference's ``main_lincls.py --lars``: LARS (trust
  coefficient 0.001, on weight and bias as apex's LARC), momentum 0.9, batch
  4096, base lr 0.1 × batch/256 = 1.6, no weight decay, 90 epochs, cosine;
  random-resized crop 224 (scale 0.08–1) and flip; evaluation resize 256,
  centre crop 224.

The cosine is stepped every iteration (the references step it every epoch).
Both probes share the head, the loss, the schedule and the batched test,
which is why they are one module rather than two of half the size.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gsg_jax import compiler
from gsg_jax.errors import ConfigError
from gsg_jax.evaluation.features import pad_rows


def _init_head(rng: np.random.Generator, dim: int, num_classes: int) -> dict:
  return {
    'w': jnp.asarray(0.01 * rng.standard_normal((dim, num_classes)), jnp.float32),
    'b': jnp.zeros((num_classes,), jnp.float32),
  }


def _logits(params, features):
  return jnp.matmul(features, params['w'], precision=jax.lax.Precision.HIGHEST) + params['b']


_logits_jit = jax.jit(_logits)


def _loss(params, features, labels):
  logits = _logits(params, features)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits


def _weights_only(params):
  """Mask for weight decay: the matrix, not the bias."""
  return {'w': True, 'b': False}


@functools.partial(jax.jit, static_argnames='num_classes')
def _hits(logits, labels, valid, num_classes: int):
  """[top-1 hits, top-5 hits] among the valid rows."""
  _, best = jax.lax.top_k(logits, min(5, num_classes))
  top1 = (best[:, 0] == labels) & valid
  top5 = jnp.any(best == labels[:, None], axis=1) & valid
  return jnp.stack([top1.sum(), top5.sum()])


def _evaluate(logits_fn, chunks, batch_size: int, num_classes: int) -> dict:
  """Top-1/top-5 accuracy (percent) of ``logits_fn`` over ``(inputs, labels)`` chunks, in fixed-size batches
  (the last one padded, masked)."""
  hits, count = jnp.zeros((2,), jnp.int32), 0
  for inputs, labels in chunks:
    labels = np.asarray(labels, np.int32)
    for start in range(0, len(labels), batch_size):
      chunk = inputs[start : start + batch_size]
      valid = np.arange(batch_size) < len(chunk)
      hits = hits + _hits(
        logits_fn(pad_rows(chunk, batch_size)),
        jnp.asarray(pad_rows(labels[start : start + batch_size], batch_size)),
        jnp.asarray(valid),
        num_classes,
      )
      count += len(chunk)
  top1, top5 = np.asarray(hits) * 100.0 / max(count, 1)
  return {'top1': float(top1), 'top5': float(top5)}


def _cosine(lr, total_steps):
  """lr · ½(1 + cos(π · min(t / T, 1))), written with T traced so one compilation serves every run length."""
  return lambda count: lr * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(count / total_steps, 1.0)))


def _fast_optimizer(lr, weight_decay, total_steps):
  return optax.adamw(_cosine(lr, total_steps), weight_decay=weight_decay, mask=_weights_only)


@jax.jit
def _fast_epoch(params, opt_state, order, features, labels, hyper):
  """One epoch of minibatch AdamW steps, ``order`` [steps, batch] holding each step's row indices."""
  tx = _fast_optimizer(*hyper)

  def step(carry, index):
    params, opt_state = carry
    (loss, _), grads = jax.value_and_grad(_loss, has_aux=True)(params, features[index], labels[index])
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
  return params, opt_state, losses.mean()


@jax.jit
def _standardize(x, reference):
  """(x − μ) / (σ + 1e-6), μ and σ the per-dimension mean and std of ``reference``."""
  return (x - jnp.mean(reference, 0)) / (jnp.std(reference, 0) + 1e-6)


def fast_linear_probe(
  train_features,
  train_labels,
  test_features,
  test_labels,
  num_classes: int,
  *,
  epochs: int = 100,
  batch_size: int = 256,
  lr: float = 1e-3,
  weight_decay: float = 1e-4,
  seed: int = 0,
) -> dict:
  """Linear classifier on precomputed features; returns ``{'top1', 'top5'}`` test accuracy in percent.

  All training and test features are held in memory, on the host and on the
  device (N·D·4 bytes: a ResNet-50's 2048-d features of ImageNet's 1.28 M
  training images take 10.5 GB); callers that cap N say so in the metric
  they report (``gsg_jax.evaluation.fast_linear``).

  Features are standardised, h = (x − μ) / (σ + 1e-6) with the training
  set's per-dimension mean μ and std σ. AdamW (decoupled weight decay on W
  only) with lr cosine-decayed from ``lr`` to 0 over all steps; each epoch
  visits ⌊N / batch⌋ shuffled minibatches (the remainder changes every epoch).
  """
  raw_train = jnp.asarray(train_features, jnp.float32)
  train = _standardize(raw_train, raw_train)
  labels = jnp.asarray(train_labels, jnp.int32)
  n = train.shape[0]
  batch = min(batch_size, n)
  steps = n // batch
  hyper = tuple(jnp.float32(v) for v in (lr, weight_decay, epochs * steps))
  rng = np.random.default_rng(seed)
  params = _init_head(rng, train.shape[1], num_classes)
  opt_state = _fast_optimizer(*hyper).init(params)
  for _ in range(epochs):
    order = jnp.asarray(rng.permutation(n)[: steps * batch].reshape(steps, batch).astype(np.int32))
    params, opt_state, _ = _fast_epoch(params, opt_state, order, train, labels, hyper)

  test = _standardize(jnp.asarray(test_features, jnp.float32), raw_train)
  size = max(min(4096, test.shape[0]), 1)
  return _evaluate(functools.partial(_logits_jit, params), [(test, test_labels)], size, num_classes)


def _make_optimizer(protocol: dict, learning_rate):
  """SGD (momentum; L2 decay on W) or LARS (``optax.lars``: trust ratios on W and b, as apex's LARC; decay on W)."""
  name, weight_decay, momentum = protocol['optimizer'], protocol['weight_decay'], protocol['momentum']
  if name == 'sgd':
    return optax.chain(
      optax.masked(optax.add_decayed_weights(weight_decay), _weights_only), optax.sgd(learning_rate, momentum=momentum)
    )
  if name == 'lars':
    return optax.lars(
      learning_rate,
      weight_decay=weight_decay,
      weight_decay_mask=_weights_only,
      trust_coefficient=protocol['trust_coefficient'],
      trust_ratio_mask=True,
      momentum=momentum,
    )
  raise ValueError(f"optimizer must be 'sgd' or 'lars', got {name!r}")


def linear_probe(
  encode_fn,
  train,
  test,
  num_classes: int,
  *,
  augment_fn,
  eval_preprocess_fn,
  epochs: int,
  batch_size: int,
  base_lr: float,
  optimizer: str = 'sgd',
  momentum: float = 0.9,
  trust_coefficient: float = 0.001,
  weight_decay: float = 0.0,
  seed: int = 0,
  log_fn=None,
) -> dict:
  """Standard linear evaluation of a frozen encoder; returns ``{'top1', 'top5'}`` test accuracy in percent.

  ``train``: a ``gsg_jax.data.TrainData`` (shuffled ``{'image', 'label'}``
  batches, in memory or streamed; images [B, H, W, C], or [B, 1, H, W, C]
  for one view cropped on the host) or a tuple (uint8 images [N, H, W, C],
  labels [N]); ``test``: anything with ``chunks(size)`` yielding (uint8
  images, labels), or such a tuple. Each step takes a batch, augments it with
  ``augment_fn(key, images_u8) -> float images`` (the protocol's random crop
  + flip), encodes it with the frozen ``encode_fn(images) -> features [B, D]``
  (no gradient flows into it) and takes an SGD (momentum; L2 decay on W) or
  LARS step on the head. lr = base_lr · batch / 256, cosine-decayed to 0 over
  (steps per epoch) · epochs steps. The test images go through
  ``eval_preprocess_fn(images_u8)`` and ``encode_fn``. After every epoch
  ``log_fn(epoch, {'loss', 'train_top1', 'lr'})`` is called, if given
  (train_top1: accuracy on the epoch's augmented batches, percent; lr: at the epoch's end).
  """
  from gsg_jax.data.pipeline import InMemoryTrainData, Split

  if isinstance(train, tuple):
    train = InMemoryTrainData(Split(np.asarray(train[0]), np.asarray(train[1], np.int32)))
  if isinstance(test, tuple):
    test_images, test_labels = np.asarray(test[0]), np.asarray(test[1], np.int32)
    test_chunks = lambda size: (
      (test_images[i : i + size], test_labels[i : i + size]) for i in range(0, len(test_labels), size)
    )
  else:
    test_chunks = test.chunks
  batch = min(batch_size, train.num_examples)
  steps = train.steps_per_epoch(batch)
  schedule = optax.cosine_decay_schedule(base_lr * batch / 256, epochs * steps)
  protocol = {
    'optimizer': optimizer,
    'weight_decay': weight_decay,
    'momentum': momentum,
    'trust_coefficient': trust_coefficient,
  }
  tx = _make_optimizer(protocol, schedule)

  rng, key = np.random.default_rng(seed), jax.random.key(seed)
  view_shape = tuple(train.image_shape)[-3:]  # One view of [1, H, W, C] host-cropped views.
  images_spec = jax.ShapeDtypeStruct((batch,) + view_shape, np.uint8)
  dim = jax.eval_shape(lambda x: encode_fn(eval_preprocess_fn(x)), images_spec).shape[-1]
  params = _init_head(rng, dim, num_classes)
  opt_state = tx.init(params)

  @compiler.jit
  def train_step(params, opt_state, images, labels, step):
    images = images.reshape((images.shape[0],) + view_shape)
    features = jax.lax.stop_gradient(encode_fn(augment_fn(jax.random.fold_in(key, step), images)))
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(params, features, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    top1 = 100.0 * jnp.mean(jnp.argmax(logits, -1) == labels)
    return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, top1])

  batches = train.batches(batch, seed=seed, start_step=0, sharding=None)
  for epoch in range(epochs):
    metrics = []
    for s in range(steps):
      data = next(batches)
      params, opt_state, step_metrics = train_step(params, opt_state, data['image'], data['label'], epoch * steps + s)
      metrics.append(step_metrics)
    if log_fn is not None:
      loss, top1 = np.asarray(jnp.stack(metrics).mean(0)) if metrics else (float('nan'), float('nan'))
      log_fn(epoch, {'loss': float(loss), 'train_top1': float(top1), 'lr': float(schedule((epoch + 1) * steps))})

  logits_fn = compiler.jit(lambda images: _logits(params, encode_fn(eval_preprocess_fn(images))))
  size = min(batch, 1024)
  return _evaluate(logits_fn, test_chunks(size), size, num_classes)


# ---------------------------------------------------------------- named protocols

LINEAR_PROTOCOLS = {
  'fast': dict(
    inputs='features',
    optimizer='adamw',
    lr=1e-3,
    weight_decay=1e-4,
    batch_size=256,
    epochs=100,
    schedule='cosine',
    standardize=True,
  ),
  'cifar': dict(
    inputs='images',
    optimizer='sgd',
    momentum=0.9,
    base_lr=30.0,
    batch_size=256,
    weight_decay=0.0,
    epochs=100,
    schedule='cosine',
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip=True,
    crop_size=None,
    eval_resize=None,
  ),  # None: the run's crop size and evaluation resize.
  'imagenet': dict(
    inputs='images',
    optimizer='lars',
    trust_coefficient=0.001,
    momentum=0.9,
    base_lr=0.1,
    batch_size=4096,
    weight_decay=0.0,
    epochs=90,
    schedule='cosine',
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip=True,
    crop_size=224,
    eval_resize=256,
  ),
}


def resolve_protocol(name: str, overrides: dict | None = None, augment_config=None) -> dict:
  """``LINEAR_PROTOCOLS[name]`` with ``overrides`` applied, ``None`` entries filled from the run's
  ``augment_config`` (crop size, evaluation resize), and the peak ``lr`` (base_lr × batch/256 for images).

  Raises ValueError for an unknown name or override key.
  """
  if name not in LINEAR_PROTOCOLS:
    raise ConfigError(f'unknown linear protocol {name!r}: expected one of {tuple(LINEAR_PROTOCOLS)}.')
  protocol = dict(LINEAR_PROTOCOLS[name])
  unknown = sorted(set(overrides or {}) - set(protocol))
  if unknown:
    raise ConfigError(f'linear protocol {name!r} has no setting {unknown[0]!r}; settings: {sorted(protocol)}.')
  protocol.update({k: v for k, v in (overrides or {}).items() if v is not None})
  if augment_config is not None:
    for key in ('crop_size', 'eval_resize'):
      if key in protocol and protocol[key] is None:
        protocol[key] = int(augment_config[key])
  if protocol['inputs'] == 'images':
    protocol['lr'] = protocol['base_lr'] * protocol['batch_size'] / 256
  return {'name': name, **protocol, 'overrides': dict(overrides or {})}


def image_protocol_configs(protocol: dict, augment_config, host_cropped: bool = False):
  """(training augmentation, evaluation preprocessing) configs: the run's normalisation, the protocol's geometry.

  Training views: random-resized crop and flip only (no colour, grayscale or
  blur); for views already cropped on the host (``host_cropped``) the device
  crop is the whole view (scale and ratio 1), leaving the flip.
  """
  import ml_collections

  train = ml_collections.ConfigDict(augment_config.to_dict())
  train.jitter_prob, train.grayscale_prob, train.blur_prob = 0.0, 0.0, 0.0
  train.crop_scale, train.crop_ratio = (
    ((1.0, 1.0), (1.0, 1.0)) if host_cropped else (tuple(protocol['crop_scale']), tuple(protocol['crop_ratio']))
  )
  train.flip_prob = 0.5 if protocol['flip'] else 0.0
  train.crop_size = protocol['crop_size']
  evaluation = ml_collections.ConfigDict(augment_config.to_dict())
  evaluation.crop_size, evaluation.eval_resize = protocol['crop_size'], protocol['eval_resize']
  return train, evaluation


def run_image_protocol(protocol: dict, encode_fn, memory, test, num_classes: int, augment_config, log_fn=None) -> dict:
  """``linear_probe`` with a resolved image protocol (``resolve_protocol``) on the ``memory`` split's images
  (a ``gsg_jax.evaluation.labelled.LabelledImages``); ``encode_fn``: normalised images → features."""
  from gsg_jax.data import augment

  train, host_cropped = memory.linear_train_data(protocol)
  train_cfg, eval_cfg = image_protocol_configs(protocol, augment_config, host_cropped)
  return linear_probe(
    encode_fn,
    train,
    test,
    num_classes,
    augment_fn=lambda key, images: augment.augment_batch(key, images, 1, train_cfg)[:, 0],
    eval_preprocess_fn=lambda images: augment.preprocess_eval(images, eval_cfg),
    epochs=protocol['epochs'],
    batch_size=protocol['batch_size'],
    base_lr=protocol['base_lr'],
    optimizer=protocol['optimizer'],
    momentum=protocol['momentum'],
    trust_coefficient=protocol.get('trust_coefficient', 0.001),
    weight_decay=protocol['weight_decay'],
    log_fn=log_fn,
  )
