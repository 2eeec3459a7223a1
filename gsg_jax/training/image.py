"""The image trainer: the data-agnostic step core (``gsg_jax.training.step``) with the Siamese network and image
views that a config describes."""

from typing import Optional

import flax.linen as nn

from gsg_jax import methods, models
from gsg_jax.data.views import ImageViews
from gsg_jax.training.optim import build_optimizer
from gsg_jax.training.step import Trainer


def build_trainer(config, steps_per_epoch: int, num_classes: Optional[int]) -> Trainer:
  """The image trainer that ``config`` describes: the step core with the Siamese network and image views.

  The online probe is built when ``config.online_probe.enabled`` and
  ``num_classes`` is given (the dataset's); batches must then carry labels.
  ``num_classes=None``: no probe, for unlabelled data.
  """
  method = methods.build_method(config.method, config.num_epochs * steps_per_epoch)
  predictor = method.predictor.module(config.model, models.DTYPES[config.model.dtype])
  network = models.build_network(config.model, predictor)
  tx, schedule = build_optimizer(config, steps_per_epoch, method.optimizer_rules)
  probe = nn.Dense(num_classes) if config.online_probe.enabled and num_classes else None
  return Trainer(network, method, ImageViews(config.augment), tx, schedule, probe)
