"""The standard linear protocol: a linear classifier on the frozen encoder, by a named recipe.

``ctx.options['linear']``: ``protocol``, a ``LINEAR_PROTOCOLS`` name
(``cifar``, ``imagenet``: SGD / LARS on augmented images through the frozen
encoder; ``fast``: on precomputed features), and ``overrides``, any of its
settings. Slow on a CPU, so not among the default protocols.
Keys: ``linear_top1`` / ``linear_top5`` (percent).
"""

import time

import jax

from gsg_jax.evaluation.evaluator import Column, Evaluator, register_evaluator
from gsg_jax.evaluation.fast_linear import kept_features
from gsg_jax.evaluation.linear_probe import resolve_protocol, run_image_protocol
from gsg_jax.training.outputs import format_duration

DEFAULT_PROTOCOL = 'cifar'


class Linear(Evaluator):
  name = 'linear'
  columns = (Column('linear_top1', 'linear top-1 (%)', floor='fast_linear_top1'),)
  needs_trainer = True

  def settings(self, ctx) -> dict:
    name = ctx.option(self.name, 'protocol', DEFAULT_PROTOCOL)
    return resolve_protocol(name, ctx.option(self.name, 'overrides'), ctx.config.augment)

  def memory_sink(self, ctx):
    return kept_features(ctx) if self.settings(ctx)['inputs'] == 'features' else None

  def evaluate(self, ctx, sink) -> dict:
    protocol = self.settings(ctx)
    if sink is not None:
      r = sink.train_probe(ctx, protocol, 'linear')
      return {'linear_top1': r['linear_top1'], 'linear_top5': r['linear_top5']}
    network, variables = ctx.trainer.network, ctx.variables
    encode = lambda x: network.apply(variables, x, method='encode')
    r = run_image_protocol(
      protocol, encode, ctx.memory, ctx.heldout, ctx.num_classes, ctx.config.augment, progress(protocol['epochs'])
    )
    return {'linear_top1': float(r['top1']), 'linear_top5': float(r['top5'])}


def progress(epochs: int):
  """The probe's ``log_fn``: a line per epoch on process 0 (a CPU probe of a CIFAR run takes tens of minutes)."""
  start = time.perf_counter()

  def log(epoch: int, metrics: dict):
    if jax.process_index() == 0:
      done = epoch + 1
      eta = (time.perf_counter() - start) / done * (epochs - done)
      print(
        f'linear probe: epoch {done}/{epochs}  loss {metrics["loss"]:.4f}  train top-1 {metrics["train_top1"]:.1f}%  '
        f'ETA {format_duration(eta)}',
        flush=True,
      )

  return log


register_evaluator(Linear())
