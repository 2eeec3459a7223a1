"""gsg_jax: self-supervised learning with guided stop-gradient in JAX/Flax (see the README).

``gsg_jax.load_encoder(workdir, step=None)`` returns a trained run's encoder
(``gsg_jax.encoder``). It is imported on first use, so ``import gsg_jax``
stays light (no JAX or Flax).
"""

__version__ = '0.1.0'  # pyproject.toml reads it (tool.setuptools.dynamic).
__all__ = ['load_encoder']


def __getattr__(name):
  if name == 'load_encoder':
    from gsg_jax.encoder import load_encoder

    return load_encoder
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
