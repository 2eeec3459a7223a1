"""dtype_ab.py: the bfloat16-against-float32 table made from made-up rows (nothing is timed here)."""

import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import dtype_ab  # noqa: E402
import generate_results  # noqa: E402


def row(side, round_, images_per_second, first_loss):
  return {
    'network': 'cifar10:resnet18:16@128',
    'side': side,
    'round': round_,
    'method': 'simsiam',
    'preset': 'cifar10',
    'backbone': 'resnet18',
    'width': 16,
    'crop_size': 32,
    'batch_size': 128,
    'views_per_pass': 0,
    'images_per_second': images_per_second,
    'first_loss': first_loss,
    'final_loss': first_loss,
  }


def test_record_sets_bfloat16_against_float32_round_by_round():
  # Round 1 ran on a busy machine for both dtypes: ratios 1.1 and 1.2 → median 1.15; best rounds 100 and 120.
  rows = [row('base', 0, 100.0, -0.5), row('change', 0, 110.0, -0.505), row('base', 1, 50.0, -0.5)]
  rows.append(row('change', 1, 60.0, -0.505))
  record = dtype_ab.dtype_record(rows, 'python benchmarks/dtype_ab.py --out x.json')
  (out,) = record['rows']
  assert (out['base_images_per_second'], out['images_per_second']) == (100.0, 110.0)
  assert abs(out['speedup'] - 1.15) < 1e-9 and (out['speedup_lowest'], out['speedup_highest']) == (1.1, 1.2)
  assert abs(out['first_loss_difference'] - 0.01) < 1e-9
  assert set(out) == set(dtype_ab.COLUMNS)
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'a.json'))
