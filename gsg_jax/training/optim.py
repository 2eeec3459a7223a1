"""Optimiser and learning-rate schedules (optax), with per-parameter rules from the config.

Base settings (``config.optim``): lr(step) = base_lr · batch_size / 256 at its
peak, an optional linear warm-up, then a cosine decay to 0 over training
(SimSiam, Chen & He 2021, §4), or that peak throughout (``schedule='constant'``).

* ``sgd``: momentum with weight decay added to the gradient before the
  momentum (PyTorch's ``SGD(weight_decay=...)``, as in the reference).
* ``lars``: ``optax.lars``; biases and BatchNorm parameters are excluded from
  weight decay and from the trust-ratio adaptation (the usual convention).

Rules (``config.optim.rules``, as big_vision's ``optax.py`` does it): a
sequence of ``(regex, overrides)``. A parameter's path is its keys joined by
'/', e.g. ``predictor/Dense_0/kernel`` or ``probe/kernel``; the first rule
whose regex matches the whole path sets, in place of the base settings, any of

    lr           peak learning rate (absolute, not scaled by the batch size)
    schedule     'cosine' (warm-up then cosine, the base), 'constant' (the
                 peak, no warm-up or decay) or 'frozen' (no update at all)
    weight_decay, momentum, optimizer ('sgd' | 'lars')

Parameters that no rule matches take the base settings. The method's
components add rules in front of the config's (a predictor set from
statistics every step is frozen). Each distinct setting becomes one group of
an ``optax.multi_transform``.
"""

import re

import jax
import optax

from gsg_jax.errors import ConfigError

OPTIMIZERS = ('sgd', 'lars')
SCHEDULES = ('cosine', 'constant', 'frozen')
RULE_KEYS = ('lr', 'schedule', 'weight_decay', 'momentum', 'optimizer')


def peak_learning_rate(config) -> float:
  """base_lr · batch_size / 256 (the linear scaling rule)."""
  return config.optim.base_lr * config.batch_size / 256


def learning_rate_schedule(config, steps_per_epoch: int, peak: float | None = None) -> optax.Schedule:
  """Warm-up (``optim.warmup_epochs``) then cosine decay to 0, peaking at ``peak`` (default: the scaled base lr)."""
  peak = peak_learning_rate(config) if peak is None else peak
  total = config.num_epochs * steps_per_epoch
  warmup = int(config.optim.warmup_epochs * steps_per_epoch)
  if warmup:
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), 0.0)
  return optax.cosine_decay_schedule(peak, max(total, 1))


def _is_matrix(params):
  """True for kernels, False for biases and BatchNorm scales/offsets (1-D leaves)."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def check_rules(rules) -> None:
  """ValueError naming the first malformed rule of ``config.optim.rules``."""
  for i, rule in enumerate(rules):
    if len(rule) != 2 or not isinstance(rule[0], str) or not hasattr(rule[1], 'keys'):
      raise ConfigError(f'config.optim.rules[{i}]={rule!r} is invalid: expected (regex, {{setting: value}}).')
    try:
      re.compile(rule[0])
    except re.error as e:
      raise ConfigError(f'config.optim.rules[{i}]: bad regex {rule[0]!r}: {e}') from e
    unknown = set(rule[1].keys()) - set(RULE_KEYS)
    if unknown:
      raise ConfigError(f'config.optim.rules[{i}] sets unknown keys {sorted(unknown)}: expected some of {RULE_KEYS}.')
    if rule[1].get('schedule', 'cosine') not in SCHEDULES:
      raise ConfigError(f'config.optim.rules[{i}]: schedule {rule[1]["schedule"]!r} is not one of {SCHEDULES}.')
    if rule[1].get('optimizer', 'sgd') not in OPTIMIZERS:
      raise ConfigError(f'config.optim.rules[{i}]: optimizer {rule[1]["optimizer"]!r} is not one of {OPTIMIZERS}.')


def _group_optimizer(config, settings: dict, steps_per_epoch: int) -> optax.GradientTransformation:
  if settings['schedule'] == 'frozen':
    return optax.set_to_zero()
  if settings['schedule'] == 'constant':
    learning_rate = settings['lr']
  else:
    learning_rate = learning_rate_schedule(config, steps_per_epoch, settings['lr'])
  if settings['optimizer'] == 'sgd':
    return optax.chain(
      optax.add_decayed_weights(settings['weight_decay']), optax.sgd(learning_rate, momentum=settings['momentum'])
    )
  return optax.lars(
    learning_rate,
    weight_decay=settings['weight_decay'],
    weight_decay_mask=_is_matrix,
    trust_ratio_mask=_is_matrix,
    momentum=settings['momentum'],
  )


def build_optimizer(
  config, steps_per_epoch: int, extra_rules=()
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser for all trained parameters, and the base learning-rate schedule.

  ``extra_rules`` (the method's) take precedence over ``config.optim.rules``.
  """
  opt = config.optim
  if opt.optimizer not in OPTIMIZERS:
    raise ConfigError(f'config.optim.optimizer={opt.optimizer!r} is invalid: expected one of {OPTIMIZERS}.')
  if opt.schedule not in ('cosine', 'constant'):
    raise ConfigError(f"config.optim.schedule={opt.schedule!r} is invalid: expected 'cosine' or 'constant'.")
  for key, value, ok, expected in (
    ('base_lr', opt.base_lr, opt.base_lr > 0, 'positive'),
    ('weight_decay', opt.weight_decay, opt.weight_decay >= 0, '>= 0'),
  ):
    if not ok:
      raise ConfigError(f'config.optim.{key}={value!r} is invalid: expected {expected}.')
  rules = tuple(extra_rules) + tuple(tuple(r) for r in opt.rules)
  check_rules(rules)
  base = {
    'lr': peak_learning_rate(config),
    'schedule': opt.schedule,
    'weight_decay': opt.weight_decay,
    'momentum': opt.momentum,
    'optimizer': opt.optimizer,
  }
  compiled = [(re.compile(pattern), {**base, **dict(overrides)}) for pattern, overrides in rules]
  groups: dict[str, dict] = {'base': base}

  def group_of(path) -> str:
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
    for pattern, settings in compiled:
      if pattern.fullmatch(name):
        return repr(sorted(settings.items()))
    return 'base'

  for _, settings in compiled:  # One group per distinct setting; rules with equal settings share it.
    groups.setdefault(repr(sorted(settings.items())), settings)
  label = lambda params: jax.tree_util.tree_map_with_path(lambda path, _: group_of(path), params)
  transforms = {name: _group_optimizer(config, settings, steps_per_epoch) for name, settings in groups.items()}
  return optax.multi_transform(transforms, label), learning_rate_schedule(config, steps_per_epoch)
