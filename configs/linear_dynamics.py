"""The linear-network theory of Tian, Chen & Ganguli (ICML 2021), simulated: ``gsg_jax/experiments/linear_dynamics``.

``python -m gsg_jax.experiments.linear_dynamics [--config=configs/linear_dynamics.py[:quick]] --out=DIR``

Presets after the colon:
* (none, also the default without ``--config``): the committed run (``benchmarks/results/linear_dynamics``),
  about a minute on 2 CPU cores;
* ``quick``: every stage shortened (fewer weight decays, starts and EMA rates, shorter times), a smoke test.

Every key can be overridden with ``--config.KEY=VALUE`` (e.g. ``--config.eta=0.1``).
"""

import ml_collections
import numpy as np


def get_config(preset=None):
  """The defaults; ``preset='quick'`` shortens every run (a smoke test, under ~30 s)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Initial weights (init_weights, graded_init).
  c.tau = 1.0  # Paper: W_a = τW, τ → 1 once the EMA has caught up with W.
  c.alpha_p = 1.0  # Predictor's relative learning rate; 1 = same as W.
  # X' = σ²I: augmentation weaker than the signal (X = I); puts the collapse threshold τ²/(4(1+σ²)) = 1/6 between
  # η = 0.01 (survives) and η = 1 (collapses).
  c.sigma2 = 0.5
  c.dt = 0.01  # Euler step.

  # Per-mode (p, s) dynamics.
  c.phase_etas = (0.0, 0.01, 1.0)  # One phase portrait each: no decay, weak decay, above threshold.
  c.threshold_etas = tuple(np.round(np.arange(0.0, 0.3001, 0.0125), 4).tolist())  # η grid across 1/6.
  c.num_p0 = 41  # Initial points on the parabola, p0 ∈ p0_range.
  c.p0_range = (-0.5, 1.5)  # Covers both sides of p*₋ and p*₊ for every η.
  c.mode_time = 200.0  # Long enough for the slowest η < threshold (rate p*₊√disc ≥ 0.06) to settle.

  # Matrix dynamics (linear BYOL).
  c.n1 = 10  # Input dimension (small, for a quick simulation).
  c.n2 = 10  # Output dimension.
  # Entries ~ N(0, init_scale²/n): W_p's eigenvalues fill a disc of radius ≈ 0.3, so some modes start below p*₋
  # (Re p < 0: 2 of 10 at seed 0) and collapse.
  c.init_scale = 0.3
  c.beta = 0.4  # EMA rate.
  c.eta = 0.04  # Weight decay of the main run, the variants and DirectPred.
  c.weight_decays = (0.0, 0.01, 0.04, 0.1, 0.2)  # Sweep across the threshold 1/6.
  c.betas = (0.1, 0.4, 1.0, 4.0)  # EMA sweep, slow to fast (β = ∞ would be W_a = W).
  c.matrix_time = 200.0  # e^{−2·0.04·200} ≈ 1e-7: balancing settles for η = 0.04.
  c.record_every = 100  # Euler steps between recorded metrics.

  c.rho = 0.3  # DirectPred's moving average of F: the paper's ρ = 0.3 (as gsg_jax.methods.directpred).
  c.eps = 0.1  # DirectPred's eigenvalue floor: the paper's ε = 0.1.
  c.directpred_time = 400.0  # Weak modes grow slowly (rate ≈ 2[p(τ − (1+σ²)p) − η] with p ≈ ε√s_max).
  # F's initial eigenvalues (log-spaced); p*₋² = 1.8e-3 at η = 0.04 falls between two of them, 0.1 decade from the
  # nearest.
  c.directpred_s0_range = (1e-4, 0.3)

  if preset == 'quick':
    c.threshold_etas = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
    c.num_p0 = 21
    c.mode_time = 100.0
    c.weight_decays = (0.0, 0.04, 0.2)
    c.betas = (0.1, 0.4, 4.0)
    c.matrix_time = 100.0
    c.directpred_time = 150.0
  elif preset is not None:
    raise ValueError(f'unknown preset {preset!r}: expected quick or none.')
  return c
