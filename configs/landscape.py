"""The landscape experiments (Pokle et al., AISTATS 2022) with GSG: ``gsg_jax/experiments/landscape``.

``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:quick] --workdir=DIR``

Presets after the colon:
* (none): the paper's grid (4 mask probabilities × 3 sparsities × 5 seeds, 8000 epochs of n = 3000 at batch
  512) for every objective, plus the warm-start study and the two other sizes;
* ``quick``: a reduced grid (4 objectives, 2 mask probabilities, 1 sparsity, 2 seeds, 60 epochs), about a minute
  on 2 CPU cores.

Studies (``studies``): ``grid`` (p=50, d=10, m=50: mask probability × sparsity), ``warm_start`` (c × sparsity at
mask 0.5), ``m10`` (m = 10) and ``pdm20`` (p = d = m = 20), each at mask 0.5 × every sparsity. Run one with e.g.
``--config.studies='("grid",)'``.

Objectives are ``Objective`` entries (``gsg_jax/experiments/landscape/objectives.py``): ``Objective('infonce')`` or
``Objective(loss, scheme, predictor)`` with loss ``negcos`` or ``gsg``, scheme ``alt``, ``simsiam`` or ``ema`` and a
predictor of the registry. Each has a ``name`` (``negcos_alt_none``), the key of its results; a command line restricts
them by name, ``--config.objectives="('infonce','negcos_alt_none')"``.
"""

import ml_collections

from gsg_jax.experiments.landscape.objectives import Objective

INFONCE = Objective('infonce')  # The paper's contrastive arm (SimCLR, τ = 0.05, complementary masks).
NEGCOS_ALT_NONE = Objective('negcos', 'alt', 'none')  # The paper's non-contrastive arm: two encoders, alternating.
NEGCOS_ALT_LINEAR = Objective('negcos', 'alt', 'linear')  # The same with a linear predictor (their simplified-pred).

PAPER_OBJECTIVES = (
  INFONCE,
  NEGCOS_ALT_NONE,
  NEGCOS_ALT_LINEAR,
  Objective('negcos', 'simsiam', 'none'),  # SimSiam-style: one encoder, stop-gradient.
  Objective('negcos', 'simsiam', 'linear'),
  Objective('gsg', 'alt', 'none'),  # GSG on top of the non-contrastive arms (four masked views).
  Objective('gsg', 'alt', 'linear'),
  Objective('gsg', 'simsiam', 'none'),
  Objective('gsg', 'simsiam', 'linear'),
  Objective('negcos', 'alt', 'directpred'),  # DirectPred as the predictor.
  Objective('negcos', 'simsiam', 'directpred'),
  Objective('gsg', 'simsiam', 'directpred'),
)


def _study(mask_probs, sparsities, warm_start=(), p=0, d=0, m=0, objectives=(), mask_probs_for=None, overrides=None):
  """A study block; p/d/m = 0 take the top-level sizes; objectives = () takes ``config.objectives``;
  ``mask_probs_for`` maps objectives to their mask probabilities (keyed by name, as the results are)."""
  return ml_collections.ConfigDict(
    {
      'kind': 'objectives',
      'mask_probs': tuple(mask_probs),
      'sparsities': tuple(sparsities),
      'warm_start': tuple(warm_start),
      'p': p,
      'd': d,
      'm': m,
      'objectives': tuple(objectives),
      'mask_probs_for': {o.name: tuple(v) for o, v in (mask_probs_for or {}).items()},
      'overrides': dict(overrides or {}),
    }
  )


def _fullrank(num_epochs, warm_start, sparsities, mask_probs=(0.5,), norms=('column', 'row')):
  """The authors' full-rank study (run by gsg_jax/experiments/landscape/fullrank.py)."""
  return ml_collections.ConfigDict(
    {
      'kind': 'fullrank',
      'p': 20,
      'num_epochs': num_epochs,
      'warm_start': tuple(warm_start),
      'sparsities': tuple(sparsities),
      'mask_probs': tuple(mask_probs),
      'norms': tuple(norms),
      # Their scripts pair M = I with the un-normalised inner product, a random M with the cosine loss.
      'variants': (('inner', 'identity'), ('cosine', 'random')),
    }
  )


def _reduced(c):
  """Every claim in under an hour on 2 CPU cores (3 seeds; 2 for the InfoNCE probes; 1000 epochs).

  1000 epochs: the min and median over latents settle by then (the curves in results.json show it); the arms
  whose curves still move get one 8000-epoch seed (``long`` preset, chosen by ``report.py --long-command``).
  Sparsity 0.2 is left out: at d = 10 it draws the same latents as 0.1 (the duplicate detection merges them).
  """
  c.num_seeds = 3
  c.num_epochs = 1000
  c.vmap_width = 1  # A scan over runs: the faster program on 2 CPU cores (benchmarks/landscape.py).
  c.chunk_epochs = 250
  c.log_every_epochs = 50
  c.objectives = (
    INFONCE,
    NEGCOS_ALT_NONE,
    NEGCOS_ALT_LINEAR,
    Objective('gsg', 'alt', 'none'),
    Objective('gsg', 'alt', 'linear'),
    Objective('negcos', 'simsiam', 'none'),
    Objective('gsg', 'simsiam', 'none'),
  )
  pair_masks = {o: (0.5, 0.9) for o in c.objectives if o != NEGCOS_ALT_NONE}
  c.study = ml_collections.ConfigDict()
  c.study.grid = _study((0.25, 0.5, 0.75, 0.9), (0.1, 0.3), mask_probs_for=pair_masks)
  c.study.warm_start = _study((0.5,), (0.1,), (1.0, 1.5, 2.0), objectives=(NEGCOS_ALT_NONE, NEGCOS_ALT_LINEAR))
  c.study.m10 = _study((0.5,), (0.1, 0.3), m=10, objectives=(INFONCE, NEGCOS_ALT_NONE))
  c.study.fullrank = _fullrank(2000, (1.0, 2.0), (0.1,))
  # Item 5: what holds InfoNCE's recovery near 0.85-0.92 (one factor changed per study, 2 seeds, sparsity 0.1).
  probe = lambda **overrides: _study((0.5,), (0.1,), objectives=(INFONCE,), overrides={'num_seeds': 2, **overrides})
  c.study.infonce_lr4 = probe(lr=0.02)
  c.study.infonce_tau02 = probe(temperature=0.2)
  c.study.infonce_nobn = probe(batch_norm='off')
  c.study.infonce_clean = probe(noise_std=0.0)
  c.study.infonce_indep = _study(
    (0.5,), (0.1,), objectives=(Objective('infonce', views='independent'),), overrides={'num_seeds': 2}
  )
  c.studies = (
    'grid',
    'warm_start',
    'm10',
    'fullrank',
    'infonce_lr4',
    'infonce_tau02',
    'infonce_nobn',
    'infonce_clean',
    'infonce_indep',
  )


def get_config(preset=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # Runs use data seeds seed+1 .. seed+num_seeds (the authors: np.random.seed(i+1)).
  c.num_seeds = 5  # Paper: num_exp 5.
  c.n = 3000  # Paper configs: nn 3000.
  c.p, c.d, c.m = 50, 10, 50  # overpara_*.yaml: p 50, d 10, m 50.
  c.latent = 'sparse'  # or 'one_hot' (overpara_nopre_alter_one_hot.yaml).
  c.noise_std = -1.0  # < 0: σ₀ = √(log d)/d, the authors' default.
  c.num_epochs = 8000  # NUM_EPOCHES 8000.
  c.batch_size = 512  # Scripts: --batch_size 512.
  c.lr = 0.005  # Scripts: --lr 0.005, plain SGD (no momentum, no weight decay).
  c.match_lr = True  # Rescale lr per objective to the authors' per-step update (objectives.py docstring).
  c.batch_norm = 'authors'  # 'authors' (InfoNCE and predictor arms), 'on' or 'off'.
  c.temperature = 0.05  # Scripts: --temperature 0.05.
  c.ema_momentum = 0.99  # The library's EMA default (the authors never ran their EMA path).
  c.directpred = ml_collections.ConfigDict({'rho': 0.3, 'eps': 0.1, 'freq': 1})  # Tian et al.'s code.
  c.gsg_guide = 'image'  # Two-encoder GSG: 'image' (tower A's projections of all views) or 'tower' (raw).
  c.skip_idle_tower = True  # Alternating steps compute no gradient for the idle tower (same updates).
  c.fast_infonce = True  # NT-Xent evaluated once from three Gram blocks (the registry's value, less work).
  c.objectives = PAPER_OBJECTIVES  # Objective entries (objectives.py); each stores its results under its name.
  c.studies = ('grid', 'warm_start', 'm10', 'pdm20', 'fullrank')
  c.study = ml_collections.ConfigDict()
  c.study.grid = _study((0.25, 0.5, 0.75, 0.9), (0.1, 0.2, 0.3))  # config/default.py's levels.
  c.study.warm_start = _study((0.5,), (0.1, 0.2, 0.3), (1.0, 1.25, 1.5, 2.0))  # overpara_pre_ws_alter.yaml.
  c.study.m10 = _study((0.5,), (0.1, 0.2, 0.3), m=10)  # lowrank_*.yaml: m = 10.
  c.study.pdm20 = _study((0.5,), (0.1, 0.2, 0.3), p=20, d=20, m=20)  # Random init at p = d = m = 20.
  c.study.fullrank = _fullrank(
    8000,
    (1.0, 1.25, 1.5, 2.0),
    (0.1, 0.2, 0.3),  # fullrank_nopre_ws.yaml and
    (0.25, 0.5, 0.75, 0.9),
  )  # ncl_no_pred_ws_{cn,rn}.sh.
  c.log_every_epochs = 100  # Metric curves: one point per 100 epochs (81 points).
  c.chunk_epochs = 500  # Epochs per compiled call; a checkpoint and a progress line after each.
  c.vmap_width = 0  # Runs per vmapped group inside the one compiled program (0: all runs at once).
  c.eval_size = 512  # Samples of the fixed batch for support recovery and the collapse check.
  c.figure_mask_prob = 0.5  # The setting of the curve figures.
  c.figure_sparsity = 0.1

  if preset == 'reduced':
    _reduced(c)
  elif preset == 'long':
    # One seed at the authors' 8000 epochs, mask 0.5, sparsity 0.1, for the arms whose reduced curves still move
    # (``python -m gsg_jax.experiments.landscape.report --workdir=DIR --long-command`` names them).
    _reduced(c)
    c.num_seeds = 1
    c.num_epochs = 8000
    c.log_every_epochs = 100
    c.chunk_epochs = 1000
    c.study.grid = _study((0.5,), (0.1,))
    c.studies = ('grid',)
  elif preset == 'quick':
    # About a minute on 2 CPU cores (most of it compiling the four programs); InfoNCE's lead already shows.
    c.num_seeds = 2
    c.num_epochs = 60
    c.log_every_epochs = 10
    c.chunk_epochs = 30
    c.objectives = (INFONCE, NEGCOS_ALT_NONE, Objective('negcos', 'simsiam', 'linear'), Objective('gsg', 'alt', 'none'))
    c.studies = ('grid',)
    c.study.grid = _study((0.5, 0.9), (0.1,))
  elif preset is not None:
    raise ValueError(f'unknown preset {preset!r}: expected reduced, long, quick or none.')
  return c
