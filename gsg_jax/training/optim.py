"""Optimiser and learning-rate schedule (optax).

lr(step) = base_lr · batch_size / 256, with an optional linear warm-up and a
cosine decay to 0 over training (SimSiam, Chen & He 2021, §4).

* ``sgd``: momentum 0.9 with weight decay added to the gradient before the
  momentum (PyTorch's ``SGD(weight_decay=...)``, as in the reference).
* ``lars``: ``optax.lars``; biases and BatchNorm parameters are excluded from
  weight decay and from the trust-ratio adaptation (the usual convention).
* ``fix_pred_lr``: the predictor keeps the initial learning rate, no decay
  (SimSiam's ``--fix-pred-lr``).
* The online probe (``params['probe']``) has its own SGD: momentum 0.9, no
  weight decay, ``online_probe.learning_rate`` with the same cosine decay
  (solo-learn's classifier settings).

The three groups are an ``optax.multi_transform`` partition of the
parameters by their top-level name.
"""

import jax
import optax

OPTIMIZERS = ('sgd', 'lars')


def peak_learning_rate(config) -> float:
  """base_lr · batch_size / 256 (the linear scaling rule)."""
  return config.optim.base_lr * config.batch_size / 256


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  peak = peak_learning_rate(config)
  total = config.num_epochs * steps_per_epoch
  warmup = int(config.optim.warmup_epochs * steps_per_epoch)
  if warmup:
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), 0.0)
  return optax.cosine_decay_schedule(peak, max(total, 1))


def _is_matrix(params):
  """True for kernels, False for biases and BatchNorm scales/offsets (1-D leaves)."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def _base_optimizer(config, learning_rate) -> optax.GradientTransformation:
  opt = config.optim
  if opt.optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(opt.weight_decay),
                       optax.sgd(learning_rate, momentum=opt.momentum))
  if opt.optimizer == 'lars':
    return optax.lars(learning_rate, weight_decay=opt.weight_decay, weight_decay_mask=_is_matrix,
                      trust_ratio_mask=_is_matrix, momentum=opt.momentum)
  raise ValueError(f'optim.optimizer={opt.optimizer!r}: expected one of {OPTIMIZERS}.')


def build_optimizer(config, steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser for all online parameters, and the main learning-rate schedule."""
  schedule = learning_rate_schedule(config, steps_per_epoch)
  fixed_predictor = config.optim.fix_pred_lr and config.method.predictor
  groups = {
      'rest': _base_optimizer(config, schedule),
      'predictor': _base_optimizer(config, peak_learning_rate(config)),
      'probe': optax.sgd(optax.cosine_decay_schedule(config.online_probe.learning_rate,
                                                     max(config.num_epochs * steps_per_epoch, 1)), momentum=0.9),
  }

  def group(name: str) -> str:
    if name == 'probe' or (name == 'predictor' and fixed_predictor):
      return name
    return 'rest'

  label = lambda params: {k: jax.tree_util.tree_map(lambda _: group(k), v) for k, v in params.items()}
  return optax.multi_transform(groups, label), schedule
