"""The ``diagnostics`` evaluator: is the representation collapsed, and how is it spread?

On the held-out features and projections (``gsg_jax.evaluation.diagnostics``):
effective rank, normalised std and the collapse flag; numerical rank and RankMe
(Garrido et al. 2023); the Wasserstein uniformity of the projections
(Koromilas et al. 2024); both singular spectra; and the alignment and
uniformity (Wang & Isola 2020) of two augmented views of every held-out image.
"""

import jax
import numpy as np

from gsg_jax.data import augment
from gsg_jax.evaluation import diagnostics
from gsg_jax.evaluation.evaluator import Column, Evaluator, register_evaluator
from gsg_jax.evaluation.features import map_in_batches


class Diagnostics(Evaluator):
  name = 'diagnostics'
  columns = (
    Column('features/effective_rank', 'effective rank', '.1f'),
    Column('collapsed', 'collapsed', ''),
    Column('projections/rankme', 'RankMe proj.', '.1f'),
    Column('features/rankme', 'RankMe feat.', '.1f'),
    Column('projections/wasserstein_uniformity', 'W-uniformity', '.4f'),
    Column('projections/uniformity', 'uniformity', '.3f'),
  )
  needs_trainer = True

  def evaluate(self, ctx, sink) -> dict:
    held = ctx.heldout_outputs
    f, p = held['features'], held['projection']
    metrics = {**diagnostics.collapse_report(f, p), **diagnostics.rank_report(f, p)}
    metrics['features/singular_values'] = [float(s) for s in diagnostics.singular_values(f)]
    metrics['projections/singular_values'] = [float(s) for s in diagnostics.singular_values(p)]
    views = two_view_outputs(ctx)
    for name, v in (('features', views['features']), ('projections', views['projection'])):
      metrics[f'{name}/alignment'] = float(diagnostics.alignment(v[:, 0], v[:, 1]))
      metrics[f'{name}/uniformity'] = float(diagnostics.uniformity(v[:, 0]))
    return metrics


def two_view_outputs(ctx) -> dict:
  """``{'features', 'projection'}`` [N, 2, ·] of two training-augmented views of every held-out image (seeded)."""
  network, variables, cfg = ctx.trainer.network, ctx.variables, ctx.config.augment

  @jax.jit
  def two_views(images_u8, key):
    v = augment.augment_batch(key, images_u8, 2, cfg)
    n = v.shape[0]
    out = network.apply(variables, v.reshape((-1,) + v.shape[2:]), train=False, with_predictor=False)
    return out['features'].reshape(n, 2, -1), out['projection'].reshape(n, 2, -1)

  key, parts, offset = jax.random.key(0), [], 0
  for images, _ in ctx.heldout.chunks(ctx.batch_size):
    parts.append(
      map_in_batches(
        lambda b, start, offset=offset: two_views(b, jax.random.fold_in(key, offset + start)), images, ctx.batch_size
      )
    )
    offset += len(images)
  features, projections = (np.concatenate(p) for p in zip(*parts))
  return {'features': features, 'projection': projections}


register_evaluator(Diagnostics())
