"""Evaluators: every evaluation protocol behind one interface, registered once, named by the config.

    config.eval.monitor   = ('knn', 'online_probe', 'floors')       # during training, every eval_every_epochs
    config.eval.protocols = ('knn', 'fast_linear', 'diagnostics', 'predictor', 'floors')   # gsg-evaluate, gsg-sweep

The training monitor, ``gsg-evaluate``, ``gsg-sweep`` and ``gsg-report`` all
iterate such a list through ``run_evaluators``; a report's columns are the
``columns`` of the evaluators a result names. An evaluator is

    class MyEvaluator(Evaluator):
      name = 'mine'
      columns = (Column('mine/score', 'my score'),)
      def evaluate(self, ctx, sink) -> dict: ...     # flat metrics {key: number, bool or list}

and ``register_evaluator(MyEvaluator())`` makes it available to all four,
from any module (tests/test_extending.py registers one from outside the package).

``ctx`` is a ``gsg_jax.evaluation.context.Context``: the run's config, its
encoder, the memory and held-out splits and the held-out outputs (computed
once, on first use). An evaluator that needs the memory split's features
(kNN, the fast probe) returns a *sink* from ``memory_sink``: the memory split
is encoded once, chunk by chunk, every sink receives each chunk, and the sink
comes back to ``evaluate``. So kNN and the fast probe share one pass, and a
split larger than the host's memory is never held whole.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, ClassVar

from gsg_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Column:
  """A report column: the metric ``key``, its ``header`` and number ``format``; ``floor``: the floors' metric shown
  beside it (raw pixels / random init), or ''."""

  key: str
  header: str
  format: str = '.2f'
  floor: str = ''


class Evaluator:
  """One evaluation protocol (module docstring). Subclasses set ``name`` and override ``evaluate``."""

  name: ClassVar[str] = ''
  columns: ClassVar[tuple[Column, ...]] = ()
  needs_trainer: ClassVar[bool] = False  # Reads ctx.trainer / ctx.state: not run on a floor's encoder.

  def settings(self, ctx) -> dict:
    """What the metrics depend on besides the checkpoint (k and T, a probe's hyperparameters): stored beside them."""
    return {}

  def memory_sink(self, ctx) -> Any:
    """An object with ``add(features [n, D] float32, labels [n] int32)``, fed every chunk of the memory split, or
    None when the memory split is not needed."""
    return None

  def evaluate(self, ctx, sink) -> dict:
    raise NotImplementedError


EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(evaluator: Evaluator, *, replace: bool = False) -> Evaluator:
  """Make ``evaluator`` available under ``evaluator.name`` to the config, the commands and the report."""
  if not evaluator.name:
    raise ValueError(f'{type(evaluator).__name__} has no name.')
  if evaluator.name in EVALUATORS and not replace and type(EVALUATORS[evaluator.name]) is not type(evaluator):
    raise ValueError(f'an evaluator named {evaluator.name!r} is already registered ({EVALUATORS[evaluator.name]}).')
  EVALUATORS[evaluator.name] = evaluator
  return evaluator


def get_evaluators(names, where: str = 'config.eval.protocols') -> list[Evaluator]:
  """The registered evaluators of ``names`` in order; a ConfigError names the unknown ones and ``where`` they came
  from."""
  _register_builtin()
  names = [n.strip() for n in names if n and n.strip()]
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ConfigError(f'{where}: unknown evaluators {unknown}: registered ones are {tuple(EVALUATORS)}.')
  return [EVALUATORS[n] for n in dict.fromkeys(names)]


def run_evaluators(evaluators, ctx) -> tuple[dict, dict]:
  """(metrics, settings) of ``evaluators`` on ``ctx``: one pass over the memory split feeds every sink."""
  sinks = {e.name: e.memory_sink(ctx) for e in evaluators}
  active = [s for s in sinks.values() if s is not None]
  if active:
    for features, labels in ctx.memory_features():
      for sink in active:
        sink.add(features, labels)
  metrics, settings = {}, {}
  for e in evaluators:
    metrics.update(e.evaluate(ctx, sinks[e.name]))
    s = e.settings(ctx)
    if s:
      settings[e.name] = s
  return metrics, settings


# The package's evaluators in the order a report shows them; others follow in the order they were registered.
REPORT_ORDER = ('knn', 'fast_linear', 'linear', 'online_probe', 'diagnostics', 'predictor', 'floors')


def columns(names) -> list[Column]:
  """The report columns of the registered evaluators among ``names``, in ``REPORT_ORDER``, each key once."""
  _register_builtin()
  seen, out = set(), []
  ranked = sorted(EVALUATORS.items(), key=lambda item: REPORT_ORDER.index(item[0]) if item[0] in REPORT_ORDER else 99)
  for name, evaluator in ranked:
    if name in names:
      for column in evaluator.columns:
        if column.key not in seen:
          seen.add(column.key)
          out.append(column)
  return out


BUILTIN = ('knn', 'fast_linear', 'linear', 'online_probe', 'collapse', 'predictor', 'floors')  # Their modules.


def _register_builtin() -> None:
  """Import the package's protocol modules, each of which registers its evaluator (once; imports are cached)."""
  for module in BUILTIN:
    importlib.import_module(f'gsg_jax.evaluation.{module}')
