"""BYOL with DirectPred (Tian, Chen & Ganguli 2021): a linear predictor set from its inputs' correlation.

Presets after the colon:
* (none) / ``cifar10``: the paper's CIFAR-10 recipe (TFDS cifar10); ``cifar10_zip``: the same on the shared zip;
* ``quick``: the built-in data at the README's CPU scale (heads and recipe of the quick preset).
Compare predictors on one footing with ``--config.method.predictor=linear|mlp|directcopy|none``.
"""

from gsg_jax import config_lib


def get_config(preset=None):
  config = config_lib.make_config(loss='negcos', target='ema', predictor='directpred', preset=preset)
  if (preset or 'cifar10') in ('cifar10', 'cifar10_zip'):
    config_lib.directpred_recipe(config)
  return config
