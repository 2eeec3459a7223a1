"""Training learns: kNN accuracy after a run beats the same network at random initialisation.

The random-init figure is the run's own step-0 evaluation (same seed, same
held-out split, same k), so the comparison is like for like.

These tests must hold on any CPU. XLA's floating-point results differ between
processors, and self-supervised training amplifies a rounding difference into
a different trajectory, so another machine behaves like another seed: every
margin below is set from the spread over several seeds, not from one run.
"""

import pytest
from conftest import cifar10_zip

from benchmarks.learning_margins import RUNS, knn_by_step  # The runs whose seeds set the margins.
from gsg_jax.training import train_and_evaluate

pytestmark = pytest.mark.slow


def test_quick_preset_learns_above_random_init(tmp_path):
  """The README's quick run as it is (SimSiam+GSG, built-in data, 6 epochs).

  The earlier version of this test stopped after 2 epochs and asked for +6
  points: it failed on an AMD EPYC (24.1 → 29.8 %). Two epochs are too few
  to be stable: on one Intel machine, seeds 0, 1, 2 of a 2-epoch run gained
  +9.1, +5.1 and +1.5 points. The whole 6-epoch run gained +13.7, +14.6 and
  +11.1 with Flax's head init and kNN T = 0.1, and +13.9, +16.9, +18.6 with
  the PyTorch init and T = 0.2 of today's defaults (benchmarks/RESULTS.md,
  "Learning-test margins"), so +6 leaves 5 points below the worst seed and
  still fails a run that learns nothing.
  """
  summary = train_and_evaluate(RUNS['quick'](), str(tmp_path))
  knn = knn_by_step(str(tmp_path))
  assert summary['steps'] == 192 and set(knn) == {0, 192}
  assert knn[192] > knn[0] + 6.0, knn
  assert summary['projection_std'] > 0.02  # Not collapsed (1/√256 ≈ 0.0625 when spread out).


def test_quick_directpred_learns_above_random_init(tmp_path):
  """BYOL+DirectPred (``configs/byol_directpred.py:quick``): W_p set from F̂ every step, never trained.

  DirectPred's quick run is noisier than SimSiam+GSG's: seeds 0, 1, 2 gained
  +14.2, +18.0 and +5.0 kNN points (and SimSiam with DirectPred +12.8, +24.7,
  +4.9) with Flax's head init and T = 0.1, and +15.7, +21.1, +10.4 with
  today's defaults (benchmarks/RESULTS.md). The margin +2.0 is 3 points below
  the worst of these runs; a run whose encoder does not learn stays within
  about ±1.
  """
  summary = train_and_evaluate(RUNS['directpred'](), str(tmp_path))
  knn = knn_by_step(str(tmp_path))
  assert summary['method'] == 'byol+directpred' and set(knn) == {0, 192}
  assert knn[192] > knn[0] + 2.0, knn


CIFAR10_ZIP = cifar10_zip()


@pytest.mark.skipif(
  CIFAR10_ZIP is None,
  reason='CIFAR-10 zip not found (set GSG_CIFAR_ZIP or place ../shared/data/cifar10-train-jpeg.zip)',
)
def test_cifar10_subset_learns_above_random_init(tmp_path):
  """SimSiam+GSG on 8,192 CIFAR-10 images from the shared zip, at 16×16 to fit a CPU budget.

  A random-init ConvNet is a strong kNN baseline on CIFAR-10 (colour alone
  carries much of the label), and SSL overtakes it slowly (1,020 held-out
  queries, k = 20). Seeds 0, 1, 2 on one 2-core machine: 32.5 → 34.9
  (+2.5), 30.4 → 35.2 (+4.8), 32.7 → 35.7 (+2.9) with Flax's head init and
  T = 0.1 (2026-12-01); 32.4 → 35.1 (+2.7), 30.4 → 36.6 (+6.2), 32.7 → 34.9
  (+2.2) with the PyTorch init and T = 0.2 (2026-12-02). The margin +1.0 is
  below the worst of them by 1.2 points (benchmarks/RESULTS.md). At 32×32,
  or with base lr 0.1, the same budget did not beat random init; none of
  these runs beats raw pixels (37.5 %), which the test does not ask.
  """
  config = RUNS['cifar']()
  config.data.path = CIFAR10_ZIP
  summary = train_and_evaluate(config, str(tmp_path))
  knn = knn_by_step(str(tmp_path))
  assert summary['dataset'] == 'cifar10-train-jpeg' and set(knn) == {0, summary['steps']}
  assert knn[summary['steps']] > knn[0] + 1.0, knn
