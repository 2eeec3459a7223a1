"""The ``predictor`` evaluator: the predictor's linear map W_p against the correlation F of its inputs.

DirectPred's claim (Tian et al. 2021) is that a trained predictor's
eigenbasis aligns with that of F = E[z zᵀ]. W_p is read directly for linear
and set predictors (``linear``, ``directpred``, ``directcopy``), is the
Jacobian at the mean projection for the MLP, and I for ``none``. F is the
moving F̂ a set predictor keeps, else E[z zᵀ] of the held-out projections.
Keys ``predictor/...``: the eigenvalues of F and of W_p's symmetric part
(descending) and ``diagnostics.eigenspace_alignment`` of W_p in F's eigenbasis.
"""

import jax.numpy as jnp

from gsg_jax.evaluation import diagnostics
from gsg_jax.evaluation.evaluator import Evaluator, register_evaluator


def predictor_diagnostics(trainer, state, projections) -> dict:
  """The module docstring's metrics for the predictor of ``trainer`` at ``state``; ``projections`` [N, P]."""
  predictor, network = trainer.method.predictor, trainer.network
  w = predictor.matrix(state.params)
  if w is None and network.predictor is not None:  # The MLP: its local linear map.
    variables = {'params': state.params['predictor'], 'batch_stats': state.model_state.get('predictor', {})}
    w = diagnostics.mlp_jacobian(lambda z: network.predictor.apply(variables, z, train=False), projections.mean(0))
  if w is None:
    w = jnp.eye(projections.shape[1])
  w = jnp.asarray(w, jnp.float32)
  correlation = predictor.correlation(state.extras['predictor'])
  if correlation is not None:
    source = 'moving F̂ of training batches'
  else:
    p = jnp.asarray(projections, jnp.float32)
    correlation, source = p.T @ p / p.shape[0], 'held-out projections'
  out = {f'predictor/{k}': v for k, v in diagnostics.eigenspace_alignment(w, None, correlation=correlation).items()}
  out['predictor/correlation_source'] = source
  out['predictor/correlation_eigenvalues'] = [float(v) for v in jnp.linalg.eigvalsh(correlation)[::-1]]
  out['predictor/wp_eigenvalues'] = [float(v) for v in jnp.linalg.eigvalsh(0.5 * (w + w.T))[::-1]]
  return out


class PredictorDiagnostics(Evaluator):
  name = 'predictor'
  needs_trainer = True

  def evaluate(self, ctx, sink) -> dict:
    return predictor_diagnostics(ctx.trainer, ctx.state, ctx.heldout_outputs['projection'])


register_evaluator(PredictorDiagnostics())
