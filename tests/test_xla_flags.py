"""xla_flags.py's table of train-step speed and final loss under XLA:CPU flag sets, and ``xla_flags`` in
train_step.child_rows.

The timed test runs the smallest ConvNet for a step in a child process with one real flag (full tier); the table
test uses made-up rows and runs nothing.
"""

import os
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import train_step  # noqa: E402
import xla_flags  # noqa: E402

from gsg_jax import compiler  # noqa: E402

ONEDNN = '--xla_cpu_use_onednn=true'
NO_YNN_CONVOLUTION = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'


@pytest.mark.slow  # A child process: the full tier only.
def test_child_rows_passes_xla_flags_to_the_child():
  argv = ['--methods=simsiam', '--batch-sizes=8', '--preset=quick', '--width=4', '--steps=1', '--warmup=0']
  (row,) = train_step.child_rows(1, argv + ['--repeats=1'], NO_YNN_CONVOLUTION)
  assert row['method'] == 'simsiam' and row['devices'] == 1
  assert row['images_per_second'] > 0 and 0 < row['fraction_of_matmul']
  assert abs(row['first_loss']) < 2 and abs(row['final_loss']) < 2  # Minus a cosine similarity: finite, in range.
  assert row['compiler_options'] is None  # The flag in XLA_FLAGS is the user's choice: gsg_jax.compiler adds none.
  (row,) = train_step.child_rows(1, argv + ['--repeats=1'])
  assert row['compiler_options'] == compiler.CPU_OPTIONS
  (row,) = train_step.child_rows(1, argv + ['--repeats=1'], jaxlib_defaults=True)
  assert row['compiler_options'] is None
  with pytest.raises(subprocess.CalledProcessError):  # The flags reach the child's XLA, which refuses unknown ones.
    train_step.child_rows(1, argv + ['--repeats=1'], '--xla_cpu_no_such_flag=true')


def fake_row(method, flags, images_per_second, loss, network='cifar10_cpu@256', first_loss=-0.01):
  return {
    'network': network,
    'xla_flags': flags,
    'preset': 'cifar10_cpu',
    'method': method,
    'backbone': 'convnet',
    'width': 16,
    'crop_size': 24,
    'batch_size': 256,
    'images_per_second': images_per_second,
    'fraction_of_matmul': 0.1,
    'matmul_gflops': 100.0,
    'compile_seconds': 7.0,
    'first_loss': first_loss,
    'final_loss': loss,
    'views_per_pass': 1,
  }


def test_rows_pair_each_flag_set_with_the_default():
  rows = [
    fake_row('simsiam', 'default', 400.0, -0.002),
    fake_row('simsiam_gsg', 'default', 200.0, -0.001),
    fake_row('simsiam', NO_YNN_CONVOLUTION, 600.0, -0.002 * (1 + 1e-6), first_loss=-0.01 * (1 + 2e-7)),
    fake_row('simsiam_gsg', NO_YNN_CONVOLUTION, 300.0, -0.001 * (1 - 3e-4)),  # Beyond the tolerance.
    {'network': 'cifar10_cpu@256', 'xla_flags': ONEDNN, 'method': 'simsiam', 'error': 'the child failed'},
    {'network': 'cifar10_cpu@256', 'xla_flags': ONEDNN, 'method': 'simsiam_gsg', 'error': 'the child failed'},
  ]
  record = xla_flags.flags_record(rows, 'python benchmarks/xla_flags.py', steps=9)
  table = record['rows']
  assert [(r['method'], r['xla_flags'], r['compiled']) for r in table] == [
    ('SimSiam', 'default', True),
    ('SimSiam+GSG', 'default', True),
    ('SimSiam', NO_YNN_CONVOLUTION, True),
    ('SimSiam+GSG', NO_YNN_CONVOLUTION, True),
    ('SimSiam', ONEDNN, False),
    ('SimSiam+GSG', ONEDNN, False),
  ]
  assert [r.get('speedup') for r in table] == [1.0, 1.0, 1.5, 1.5, None, None]
  assert table[0]['loss_difference'] == 0.0
  assert table[2]['loss_difference'] == pytest.approx(1e-6)
  assert table[2]['first_loss_difference'] == pytest.approx(2e-7)
  assert table[3]['loss_difference'] == pytest.approx(3e-4) and table[3]['first_loss_difference'] == 0
  assert table[4]['error'] == 'the child failed' and 'images_per_second' not in table[4]
  assert table[0]['network'] == 'ConvNet width 16, 24² (cifar10_cpu), batch 256'
  assert table[0]['views_per_pass'] == 1 and record['title'].endswith(', one network pass per view')
  assert "Beyond it: 0 of 2 rows in the first step's loss, 1 in the final loss." in record['notes'][0]
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'xla_flags.json'))
  markdown = generate_results.markdown_table(record)
  assert '| speed-up over default |' in markdown and '| no | – | – |' in markdown


def test_a_network_whose_default_failed_has_no_speedup():
  rows = [
    {'network': 'quick::4@8', 'xla_flags': 'default', 'method': 'simsiam', 'error': 'the child failed'},
    fake_row('simsiam', ONEDNN, 100.0, -0.5, network='quick::4@8'),
  ]
  table = xla_flags.flags_record(rows, 'cmd', steps=1)['rows']
  assert table[0]['network'] == table[1]['network'] == 'ConvNet width 16, 24² (cifar10_cpu), batch 256'
  assert table[1]['speedup'] is None and table[1]['loss_difference'] is None


def test_parse_network():
  assert xla_flags.parse_network('cifar10:resnet18:16@128') == ('cifar10', 'resnet18', '16', '128')
  assert xla_flags.parse_network('cifar10_cpu') == ('cifar10_cpu', '', '', '')


def test_flag_sets_with_the_defaults_losses_are_named():
  rows = [
    fake_row('simsiam', 'default', 400.0, -0.002),
    fake_row('simsiam', ONEDNN, 420.0, -0.002),
    fake_row('simsiam', NO_YNN_CONVOLUTION, 600.0, -0.002 * (1 + 1e-6)),
  ]
  notes = xla_flags.flags_record(rows, 'cmd', steps=9)['notes']
  assert any(n.startswith('The same losses as the default, bit for bit') and n.endswith(f': {ONEDNN}.') for n in notes)


def test_resume_skips_what_was_measured():
  import argparse

  args = argparse.Namespace(
    networks='cifar10_cpu@256',
    methods='simsiam',
    batch_size=128,
    dtype='float32',
    steps=1,
    warmup=0,
    repeats=1,
    views_per_pass='',
  )
  before = [fake_row('simsiam', 'default', 400.0, -0.002), fake_row('simsiam', ONEDNN, 420.0, -0.002)]
  saved = []
  rows = xla_flags.measured_rows(args, ['default', ONEDNN], before, saved.append)  # Starts no child.
  assert rows == before and not saved
