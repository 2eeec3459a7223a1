"""gsg_cost.py's table of GSG's time per image over the plain method's, and ``--views-per-pass`` in train_step.py.

The timed test runs the smallest ConvNet for a step per case in a child process
(full tier); the table tests use made-up rows and run nothing.
"""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import gsg_cost  # noqa: E402
import train_step  # noqa: E402


@pytest.mark.slow  # A child process: the full tier only.
def test_train_step_times_each_views_per_pass_setting():
  argv = ['--methods=simsiam_gsg', '--batch-sizes=8', '--preset=quick', '--width=4', '--views-per-pass=0,2']
  one_pass, split = train_step.child_rows(1, argv + ['--steps=1', '--warmup=0', '--repeats=1'])
  assert (one_pass['views_per_pass'], split['views_per_pass']) == (0, 2)
  # The same step: the same FLOPs up to the split's slicing and joining (3 % at this tiny width), and the same loss.
  assert split['flops_per_step'] == pytest.approx(one_pass['flops_per_step'], rel=0.05)
  assert split['final_loss'] == pytest.approx(one_pass['final_loss'], rel=1e-4)
  assert all(r['images_per_second'] > 0 and 0 < r['fraction_of_matmul'] for r in (one_pass, split))


def fake_row(method, batch_size, views_per_pass, images_per_second, backbone='convnet'):
  return {
    'preset': 'cifar10_cpu',
    'method': method,
    'backbone': backbone,
    'width': 16,
    'crop_size': 24,
    'batch_size': batch_size,
    'views_per_pass': views_per_pass,
    'views_per_image': 4 if method.endswith('_gsg') else 2,
    'images_per_second': images_per_second,
    'flops_per_second': 1e9,
    'fraction_of_matmul': 0.1,
    'matmul_gflops': 180.0,
  }


def test_rows_pair_each_gsg_case_with_its_plain_case():
  rows = [
    fake_row('simsiam', 256, 0, 800.0),
    fake_row('simsiam_gsg', 256, 0, 320.0),
    fake_row('simsiam', 256, 1, 1000.0),
    fake_row('simsiam_gsg', 256, 1, 500.0),
    fake_row('simsiam_gsg', 128, 1, 600.0),  # No SimSiam row at this batch: no table row.
    fake_row('simsiam', 256, 1, 50.0, backbone='resnet18'),  # Nor for a network GSG was not timed on.
  ]
  record = gsg_cost.cost_record(rows, 'python benchmarks/gsg_cost.py')
  table = [
    (r['batch_size'], r['views_per_pass'], r['rows_per_convolution'], r['gsg_time_ratio']) for r in record['rows']
  ]
  assert table == [(256, 'all', 1024, 2.5), (256, 1, 256, 2.0)]
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'gsg_cost.json'))
  assert '| GSG ÷ plain, time per image |' in generate_results.markdown_table(record)
