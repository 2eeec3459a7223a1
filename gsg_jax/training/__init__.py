"""Training: state, pure train step, optimiser, checkpoints and metric outputs."""

from gsg_jax.training.optim import OPTIMIZERS, build_optimizer, learning_rate_schedule
from gsg_jax.training.step import Trainer, TrainState, build_trainer, normalized_std

__all__ = [
  'OPTIMIZERS',
  'Trainer',
  'TrainState',
  'build_optimizer',
  'build_trainer',
  'learning_rate_schedule',
  'normalized_std',
]
