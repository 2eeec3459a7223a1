"""The fast linear probe: a linear classifier trained on precomputed features of the memory split.

The ``fast`` protocol of ``gsg_jax.evaluation.linear_probe`` (AdamW,
standardised features, cosine schedule; ``LINEAR_PROTOCOLS['fast']``), on the
features the shared memory pass delivers. It holds N·D·4 bytes of training
features; beyond ``config.eval.fast_linear_max_gb`` it trains on a uniform
random subset of the memory split (seed 0), and ``fast_linear_train_examples``
says how many it used. Options (``ctx.options['fast_linear']``):
``overrides``, settings of the protocol (e.g. ``{'epochs': 20}``).
"""

import numpy as np

from gsg_jax.evaluation.evaluator import Column, Evaluator, register_evaluator
from gsg_jax.evaluation.linear_probe import fast_linear_probe, resolve_protocol


class KeptFeatures:
  """A memory sink that keeps the features of every row, or of a seeded uniform subset within ``max_gb``."""

  def __init__(self, num_examples: int, max_gb: float):
    self.num_examples, self.max_gb = num_examples, max_gb
    self.rows, self.start, self.features, self.labels = None, 0, [], []

  def add(self, features, labels) -> None:
    if self.start == 0:
      keep = int(self.max_gb * 1e9 // (4 * max(features.shape[1], 1)))
      if keep < self.num_examples:
        self.rows = np.sort(np.random.default_rng(0).choice(self.num_examples, max(keep, 1), replace=False))
    rows = self.rows
    index = slice(None) if rows is None else rows[(rows >= self.start) & (rows < self.start + len(labels))] - self.start
    self.features.append(features[index])
    self.labels.append(labels[index])
    self.start += len(labels)

  def train_probe(self, ctx, protocol: dict, prefix: str) -> dict:
    """``{prefix_top1, prefix_top5}``: the probe of ``protocol`` trained on the kept rows, tested on the held-out."""
    train, labels = np.concatenate(self.features), np.concatenate(self.labels)
    held = ctx.heldout_outputs
    r = fast_linear_probe(
      train,
      labels,
      held['features'],
      held['labels'],
      ctx.num_classes,
      epochs=protocol['epochs'],
      batch_size=protocol['batch_size'],
      lr=protocol['lr'],
      weight_decay=protocol['weight_decay'],
    )
    return {f'{prefix}_top1': r['top1'], f'{prefix}_top5': r['top5'], f'{prefix}_train_examples': len(labels)}


def kept_features(ctx) -> KeptFeatures:
  return KeptFeatures(ctx.memory.num_examples, float(ctx.config.eval.fast_linear_max_gb))


class FastLinear(Evaluator):
  """``fast_linear_top1`` / ``_top5`` (percent) and ``fast_linear_train_examples``."""

  name = 'fast_linear'
  columns = (Column('fast_linear_top1', 'fast linear top-1 (%)', floor='fast_linear_top1'),)

  def settings(self, ctx) -> dict:
    return resolve_protocol('fast', ctx.option(self.name, 'overrides'))

  def memory_sink(self, ctx):
    return kept_features(ctx)

  def evaluate(self, ctx, sink) -> dict:
    return sink.train_probe(ctx, self.settings(ctx), 'fast_linear')


register_evaluator(FastLinear())
