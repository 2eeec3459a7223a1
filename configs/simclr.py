"""SimCLR (Chen et al. 2020): loss 'infonce' (NT-Xent, τ = 0.5), target 'online', predictor 'none'.

Presets after the colon:
* (none) / ``cifar10``: the CIFAR-10 recipe of Koromilas et al. (``config_lib.contrastive_recipe``: ResNet-18,
  projector 512-512-128 with BN, batch 256, SGD lr 1.0 with warm-up and cosine, weight decay 1e-6, 200 epochs)
  on TFDS cifar10; ``cifar10_zip``: the same on the shared zip;
* ``quick``: the built-in data at the README's CPU scale (the shared quick preset, no predictor, base lr 1.0).
The loss's hyperparameters: ``--config.method.infonce.<name>=...`` (defaults in gsg_jax/methods/__init__.py).
"""

from gsg_jax import config_lib


def get_config(preset=None):
  config = config_lib.make_config(loss='infonce', target='online', predictor='none', preset=preset)
  config_lib.contrastive_recipe(config, preset)
  return config
