"""BYOL with guided stop-gradient: loss 'gsg', target 'ema', predictor 'mlp'.

Presets after the colon: see gsg_jax/config_lib.py.
"""

from gsg_jax import config_lib


def get_config(preset=None):
  return config_lib.make_config(loss='gsg', target='ema', predictor='mlp', preset=preset)
