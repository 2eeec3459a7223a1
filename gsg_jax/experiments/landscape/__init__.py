"""Contrastive vs non-contrastive landscapes on sparse-coding data (Pokle, Tian, Li & Risteski, AISTATS 2022), with GSG.

``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:reduced|:quick] --workdir=DIR``

* ``data``: x = Mz + ε with exact sparsity counts, the encoder initialisations, the random-mask views;
* ``model``: the one-layer SymReLU encoder (optional BatchNorm, one or two towers) as a step-core network;
* ``metrics``: ``recovery(W, M)`` (max/median/min over latents of max_j |cos(w_j, M_i)|), support recovery,
  the collapse check;
* ``objectives``: the structured ``Objective`` entries and their names, learning rates, BatchNorm;
* ``trainer``: the step core of the objectives (with GSG's image guide and NT-Xent once);
* ``settings``: the runs of a study, their data, duplicate detection;
* ``program``: the vmapped training program over stacked runs;
* ``run``: one objective trained in chunks, checkpointed, resumed, its result;
* ``fullrank``: the authors' full-rank study (p = d = m = 20, weight normalisation, warm start);
* ``experiment``: every study of a config, results.json with provenance, the command line;
* ``figures``, ``claims`` and ``report``: the figures, the claims with verdicts from results.json, and the report.
"""

from gsg_jax.experiments.landscape.data import (
  MaskViews,
  init_kernel,
  make_dataset,
  sparsity_counts,
)
from gsg_jax.experiments.landscape.metrics import recovery, support_recovery
from gsg_jax.experiments.landscape.model import SymReLUNetwork, sym_relu
from gsg_jax.experiments.landscape.objectives import Objective, objective
from gsg_jax.experiments.landscape.run import train_objective

__all__ = [
  'MaskViews',
  'Objective',
  'SymReLUNetwork',
  'init_kernel',
  'make_dataset',
  'objective',
  'recovery',
  'sparsity_counts',
  'support_recovery',
  'sym_relu',
  'train_objective',
]
