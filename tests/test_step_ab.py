"""step_ab.py: a commit's tree exported, and the A/B table made from made-up rows (nothing is timed here)."""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import step_ab  # noqa: E402


def row(side, round_, method, images_per_second, loss=-0.5, network='cifar10_cpu@128'):
  return {
    'network': network,
    'side': side,
    'round': round_,
    'method': method,
    'preset': 'cifar10_cpu',
    'backbone': 'convnet',
    'width': 16,
    'crop_size': 24,
    'batch_size': 128,
    'views_per_pass': 1,
    'images_per_second': images_per_second,
    'first_loss': -0.6,
    'final_loss': loss,
  }


def test_speedup_is_the_median_of_paired_rounds():
  # Round 1 ran on a slow machine for both sides: paired ratios 1.2, 1.2, 1.5 → 1.2; the best rounds give 1.25.
  rows = [
    row('base', 0, 'simsiam', 100.0),
    row('change', 0, 'simsiam', 120.0, loss=-0.5 * (1 + 1e-6)),
    row('base', 1, 'simsiam', 50.0),
    row('change', 1, 'simsiam', 60.0),
    row('base', 2, 'simsiam', 80.0),
    row('change', 2, 'simsiam', 120.0),
    row('base', 0, 'simsiam_gsg', 50.0),
    row('change', 0, 'simsiam_gsg', 40.0, loss=-0.4),
  ]
  table = step_ab.table_rows(rows)
  assert [(r['method'], r['base_images_per_second'], r['images_per_second']) for r in table] == [
    ('simsiam', 100.0, 120.0),
    ('simsiam_gsg', 50.0, 40.0),
  ]
  assert table[0]['speedup'] == pytest.approx(1.2) and (
    table[0]['speedup_lowest'],
    table[0]['speedup_highest'],
  ) == pytest.approx((1.2, 1.5))
  assert table[0]['loss_difference'] == pytest.approx(1e-6, rel=1e-3) and table[0]['first_loss_difference'] == 0
  assert table[1]['speedup'] == pytest.approx(0.8) and table[1]['loss_difference'] == pytest.approx(0.2)
  assert table[0]['network'].startswith('ConvNet width 16')

  record = step_ab.ab_record(rows, 'python benchmarks/step_ab.py --base abc1234', 'A change', 'abc1234', 'def5678')
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'ab_x.json'))
  markdown = generate_results.markdown_table(record)
  assert 'images/s at abc1234' in markdown and '1.20' in markdown


def test_export_tree_writes_the_commits_files(tmp_path):
  tree = step_ab.export_tree('HEAD', str(tmp_path))
  assert os.path.isfile(os.path.join(tree, 'benchmarks', 'train_step.py'))
  assert os.path.isfile(os.path.join(tree, 'gsg_jax', '__init__.py'))
  assert step_ab.resolve('HEAD') and len(step_ab.resolve('HEAD')) >= 7


def test_a_commit_that_does_not_exist_is_refused(tmp_path):
  with pytest.raises(ValueError, match='no_such_commit'):
    step_ab.export_tree('no_such_commit', str(tmp_path))
  with pytest.raises(ValueError, match='no_such_commit'):
    step_ab.resolve('no_such_commit')
