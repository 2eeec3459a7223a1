"""Training: the loop (``train_and_evaluate``), the pure train step and its state, the image trainer, optimiser,
checkpoints and metric outputs."""

from gsg_jax.training.image import build_trainer
from gsg_jax.training.loop import train_and_evaluate
from gsg_jax.training.optim import OPTIMIZERS, build_optimizer, learning_rate_schedule
from gsg_jax.training.step import Trainer, TrainState

__all__ = [
  'OPTIMIZERS',
  'Trainer',
  'TrainState',
  'build_optimizer',
  'build_trainer',
  'learning_rate_schedule',
  'train_and_evaluate',
]
