"""The ``online_probe`` evaluator: held-out top-1 of the linear probe trained beside the encoder.

The probe (``config.online_probe``) learns from ``stop_gradient(features)``
during training, so it costs no extra pass; it exists only when the run's data
are labelled. Key: ``online_probe_top1`` (percent); nothing without a probe.
"""

import numpy as np

from gsg_jax.evaluation.evaluator import Column, Evaluator, register_evaluator


class OnlineProbe(Evaluator):
  name = 'online_probe'
  columns = (Column('online_probe_top1', 'online probe top-1 (%)', floor='fast_linear_top1'),)
  needs_trainer = True

  def evaluate(self, ctx, sink) -> dict:
    if ctx.trainer.probe is None:
      return {}
    held = ctx.heldout_outputs
    logits = ctx.trainer.probe_logits(ctx.state.params, held['features'])  # One matmul: eager is as fast.
    return {'online_probe_top1': 100.0 * float(np.mean(np.argmax(np.asarray(logits), -1) == held['labels']))}


register_evaluator(OnlineProbe())
