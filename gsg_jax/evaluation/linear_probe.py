"""Linear probes: a BN-free linear classifier on frozen representations.

Both probes fit logits = h W + b (W [D, C], b [C]; W ~ N(0, 0.01²), b = 0 at
init, as SimSiam's linear evaluation) by minimising the softmax cross-entropy

    L = −(1/B) Σ_i log softmax(h_i W + b)_{y_i}

under a cosine learning-rate schedule, and report top-1 / top-5 test
accuracy in percent (top-5: the label is among the five highest logits).

* ``fast_linear_probe``: on precomputed features, standardised with the
  training mean and std; a whole epoch is one jitted ``lax.scan``.
* ``linear_probe``: the standard protocol; features of a frozen encoder are
  recomputed every step from randomly augmented images.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _init_head(rng: np.random.Generator, dim: int, num_classes: int) -> dict:
  return {'w': jnp.asarray(0.01 * rng.standard_normal((dim, num_classes)), jnp.float32),
          'b': jnp.zeros((num_classes,), jnp.float32)}


def _logits(params, features):
  return jnp.matmul(features, params['w'], precision=jax.lax.Precision.HIGHEST) + params['b']


_logits_jit = jax.jit(_logits)


def _loss(params, features, labels):
  logits = _logits(params, features)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits


def _weights_only(params):
  """Mask for weight decay (and LARS trust ratios): the matrix, not the bias."""
  return {'w': True, 'b': False}


@functools.partial(jax.jit, static_argnames='num_classes')
def _hits(logits, labels, valid, num_classes: int):
  """[top-1 hits, top-5 hits] among the valid rows."""
  _, best = jax.lax.top_k(logits, min(5, num_classes))
  top1 = (best[:, 0] == labels) & valid
  top5 = jnp.any(best == labels[:, None], axis=1) & valid
  return jnp.stack([top1.sum(), top5.sum()])


def _pad_rows(x, rows: int):
  if len(x) == rows:
    return x
  xp = np if isinstance(x, np.ndarray) else jnp
  return xp.concatenate([x, xp.zeros((rows - len(x),) + tuple(x.shape[1:]), x.dtype)])


def _evaluate(logits_fn, inputs, labels, batch_size: int, num_classes: int) -> dict:
  """Top-1/top-5 accuracy (percent) of ``logits_fn`` over ``inputs`` in batches (the last one padded, masked)."""
  labels = np.asarray(labels, np.int32)
  size = max(min(batch_size, len(labels)), 1)
  hits = jnp.zeros((2,), jnp.int32)
  for start in range(0, len(labels), size):
    chunk = inputs[start:start + size]
    valid = np.arange(size) < len(chunk)
    hits = hits + _hits(logits_fn(_pad_rows(chunk, size)), jnp.asarray(_pad_rows(labels[start:start + size], size)),
                        jnp.asarray(valid), num_classes)
  top1, top5 = np.asarray(hits) * 100.0 / max(len(labels), 1)
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


def fast_linear_probe(train_features, train_labels, test_features, test_labels, num_classes: int, *,
                      epochs: int = 100, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                      seed: int = 0) -> dict:
  """Linear classifier on precomputed features; returns ``{'top1', 'top5'}`` test accuracy in percent.

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
    order = jnp.asarray(rng.permutation(n)[:steps * batch].reshape(steps, batch).astype(np.int32))
    params, opt_state, _ = _fast_epoch(params, opt_state, order, train, labels, hyper)

  test = _standardize(jnp.asarray(test_features, jnp.float32), raw_train)
  return _evaluate(functools.partial(_logits_jit, params), test, test_labels, 4096, num_classes)


def _make_optimizer(name: str, learning_rate, weight_decay: float):
  if name == 'sgd':
    return optax.chain(optax.masked(optax.add_decayed_weights(weight_decay), _weights_only),
                       optax.sgd(learning_rate, momentum=0.9))
  if name == 'lars':
    return optax.lars(learning_rate, weight_decay=weight_decay, weight_decay_mask=_weights_only,
                      trust_ratio_mask=_weights_only, momentum=0.9)
  raise ValueError(f"optimizer must be 'sgd' or 'lars', got {name!r}")


def linear_probe(encode_fn, train_images_u8, train_labels, test_images_u8, test_labels, num_classes: int, *,
                 augment_fn, eval_preprocess_fn, epochs: int, batch_size: int, base_lr: float,
                 optimizer: str = 'sgd', weight_decay: float = 0.0, seed: int = 0, log_fn=None) -> dict:
  """Standard linear evaluation of a frozen encoder; returns ``{'top1', 'top5'}`` test accuracy in percent.

  Each step draws a shuffled batch of uint8 images [B, H, W, C] (host
  arrays), augments them with ``augment_fn(key, images_u8) -> float images``
  (the caller's random crop + flip), encodes them with the frozen
  ``encode_fn(images) -> features [B, D]`` (no gradient flows into it) and
  takes an SGD (momentum 0.9; L2 decay on W) or LARS (``optax.lars``, W only
  adapted and decayed) step on the head. lr = base_lr · batch / 256,
  cosine-decayed to 0 over ⌊N / batch⌋ · epochs steps. The test set goes
  through ``eval_preprocess_fn(images_u8)`` and ``encode_fn``. After every
  epoch ``log_fn(epoch, {'loss', 'train_top1', 'lr'})`` is called, if given
  (train_top1: accuracy on the epoch's augmented batches, percent; lr: at the epoch's end).
  """
  train_images_u8, test_images_u8 = np.asarray(train_images_u8), np.asarray(test_images_u8)
  train_labels = np.asarray(train_labels, np.int32)
  n = len(train_images_u8)
  batch = min(batch_size, n)
  steps = n // batch
  schedule = optax.cosine_decay_schedule(base_lr * batch / 256, epochs * steps)
  tx = _make_optimizer(optimizer, schedule, weight_decay)

  rng, key = np.random.default_rng(seed), jax.random.key(seed)
  images_spec = jax.ShapeDtypeStruct((batch,) + train_images_u8.shape[1:], train_images_u8.dtype)
  dim = jax.eval_shape(lambda x: encode_fn(eval_preprocess_fn(x)), images_spec).shape[-1]
  params = _init_head(rng, dim, num_classes)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, images, labels, step):
    features = jax.lax.stop_gradient(encode_fn(augment_fn(jax.random.fold_in(key, step), images)))
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(params, features, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    top1 = 100.0 * jnp.mean(jnp.argmax(logits, -1) == labels)
    return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, top1])

  for epoch in range(epochs):
    order = rng.permutation(n)
    metrics = []
    for s in range(steps):
      index = np.sort(order[s * batch:(s + 1) * batch])
      params, opt_state, step_metrics = train_step(params, opt_state, train_images_u8[index], train_labels[index],
                                                   epoch * steps + s)
      metrics.append(step_metrics)
    if log_fn is not None:
      loss, top1 = np.asarray(jnp.stack(metrics).mean(0)) if metrics else (float('nan'), float('nan'))
      log_fn(epoch, {'loss': float(loss), 'train_top1': float(top1), 'lr': float(schedule((epoch + 1) * steps))})

  logits_fn = jax.jit(lambda images: _logits(params, encode_fn(eval_preprocess_fn(images))))
  return _evaluate(logits_fn, test_images_u8, test_labels, batch, num_classes)
