"""Training learns: kNN accuracy after a run beats the same network at random initialisation.

The random-init figure is the run's own step-0 evaluation (same seed, same
held-out split, same k), so the comparison is like for like.

These tests must hold on any CPU. XLA's floating-point results differ between
processors, and self-supervised training amplifies a rounding difference into
a different trajectory, so another machine behaves like another seed: every
margin below is set from the spread over several seeds, not from one run.
"""

import json
import os

import pytest

from gsg_jax import train
from gsg_jax.config_lib import named_config as load_config
from conftest import cifar10_zip

pytestmark = pytest.mark.slow


def knn_by_step(workdir) -> dict:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {r['step']: r['knn_top1'] for r in records if r['kind'] == 'eval'}


def test_quick_preset_learns_above_random_init(tmp_path):
  """The README's quick run as it is (SimSiam+GSG, built-in data, 6 epochs).

  The earlier version of this test stopped after 2 epochs and asked for +6
  points: it failed on an AMD EPYC (24.1 → 29.8 %). Two epochs are too few
  to be stable: on one Intel machine, seeds 0, 1, 2 of a 2-epoch run gained
  +9.1, +5.1 and +1.5 points. The whole 6-epoch run gained +13.7, +14.6 and
  +11.1 (benchmarks/RESULTS.md, "Learning-test margins"), so +6 leaves 5
  points below the worst seed and still fails a run that learns nothing.
  """
  config = load_config('simsiam_gsg', 'quick')
  config.eval_every_epochs = 6
  config.distributed.mode = 'off'
  summary = train.train_and_evaluate(config, str(tmp_path))
  knn = knn_by_step(tmp_path)
  assert summary['steps'] == 192 and set(knn) == {0, 192}
  assert knn[192] > knn[0] + 6.0, knn
  assert summary['projection_std'] > 0.02  # Not collapsed (1/√256 ≈ 0.0625 when spread out).


def test_quick_directpred_learns_above_random_init(tmp_path):
  """BYOL+DirectPred (``configs/byol_directpred.py:quick``): W_p set from F̂ every step, never trained.

  DirectPred's quick run is noisier than SimSiam+GSG's: seeds 0, 1, 2 gained
  +14.2, +18.0 and +5.0 kNN points (and SimSiam with DirectPred +12.8, +24.7,
  +4.9; benchmarks/RESULTS.md). The margin +2.0 is 3 points below the worst of
  these six runs; a run whose encoder does not learn stays within about ±1.
  """
  config = load_config('byol_directpred', 'quick')
  config.eval_every_epochs = 6
  config.distributed.mode = 'off'
  summary = train.train_and_evaluate(config, str(tmp_path))
  knn = knn_by_step(tmp_path)
  assert summary['method'] == 'byol+directpred' and set(knn) == {0, 192}
  assert knn[192] > knn[0] + 2.0, knn


CIFAR10_ZIP = cifar10_zip()


@pytest.mark.skipif(CIFAR10_ZIP is None, reason='CIFAR-10 zip not found (set GSG_CIFAR_ZIP or place '
                                               '../shared/data/cifar10-train-jpeg.zip)')
def test_cifar10_subset_learns_above_random_init(tmp_path):
  """SimSiam+GSG on 8,192 CIFAR-10 images from the shared zip, at 16×16 to fit a CPU budget.

  A random-init ConvNet is a strong kNN baseline on CIFAR-10 (colour alone
  carries much of the label), and SSL overtakes it slowly (1,020 held-out
  queries, k = 20). Seeds 0, 1, 2 on one 2-core machine (2026-12-01):
  32.5 → 34.9 (+2.5), 30.4 → 35.2 (+4.8), 32.7 → 35.7 (+2.9); the margin
  +1.0 is below the worst of them by 1.5 points (benchmarks/RESULTS.md). At
  32×32, or with base lr 0.1, the same budget did not beat random init.
  """
  config = load_config('simsiam_gsg', 'quick')
  config.data.source = 'folder'
  config.data.path = CIFAR10_ZIP
  config.data.max_examples = 8192       # Stratified subset, then 1/8 of it held out.
  config.data.heldout_fraction = 0.125
  config.data.image_size = 16
  config.augment.crop_size = 16
  config.optim.base_lr = 0.3
  config.eval_every_epochs = 6
  config.distributed.mode = 'off'
  summary = train.train_and_evaluate(config, str(tmp_path))
  knn = knn_by_step(tmp_path)
  assert summary['dataset'] == 'cifar10-train-jpeg' and set(knn) == {0, summary['steps']}
  assert knn[summary['steps']] > knn[0] + 1.0, knn
