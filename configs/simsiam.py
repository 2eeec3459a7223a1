"""SimSiam: loss 'negcos', target 'online', predictor 'mlp'. Presets after the colon: see gsg_jax/config_lib.py."""

from gsg_jax import config_lib


def get_config(preset=None):
  return config_lib.make_config(loss='negcos', target='online', predictor='mlp', preset=preset)
