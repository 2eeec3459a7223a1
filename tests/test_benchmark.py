"""The train-step benchmark's JSON: throughput, XLA's FLOP count and the profile summary.

The quick preset's ConvNet at width 4, batch 8, SimSiam and SimSiam+GSG on
one CPU device. The FLOP count is checked against what the step must do: a
GSG step forwards and back-propagates four views of every image, SimSiam two,
so it counts twice the FLOPs, less a few percent for the work that does not
grow with the batch (the optimiser update).
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # Subprocesses: the full tier only.


@pytest.fixture(scope='module')
def benchmark_json(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('benchmark')
  out, profile = tmp / 'result.json', tmp / 'profile'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1')
  subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, 'benchmarks', 'train_step.py'),
      '--methods=simsiam,simsiam_gsg',
      '--batch-sizes=8',
      '--preset=quick',  # The preset's ConvNet.
      '--width=4',
      '--steps=1',
      '--warmup=1',
      '--repeats=2',
      f'--profile={profile}',
      f'--out={out}',
    ],
    env=env,
    check=True,
    timeout=600,
  )
  with open(out) as f:
    return json.load(f)


def test_rows_report_throughput_and_flops(benchmark_json):
  rows = benchmark_json['results']
  assert [(r['method'], r['batch_size']) for r in rows] == [('simsiam', 8), ('simsiam_gsg', 8)]
  for r in rows:
    assert r['devices'] == 1 and r['platform'] == 'cpu'
    assert r['views_per_image'] == (4 if r['method'] == 'simsiam_gsg' else 2)
    assert r['images_per_second'] == pytest.approx(r['batch_size'] / r['step_seconds'])
    assert r['flops_per_step'] > 0
    assert r['flops_per_second'] == pytest.approx(r['flops_per_step'] / r['step_seconds'])
    assert r['fraction_of_peak'] is None  # No peak is listed for a CPU.
    assert r['final_loss'] == pytest.approx(r['final_loss'])  # Finite, not NaN.
    assert r['backbone'] == 'convnet' and r['width'] == 4  # The preset's network, the width given.
    assert r['repeats'] == 2 and r['matmul_gflops'] > 0
    assert r['fraction_of_matmul'] == pytest.approx(r['flops_per_second'] / 1e9 / r['matmul_gflops'])
  gsg = rows[1]
  assert gsg['gsg_cost_ratio'] == pytest.approx(rows[0]['images_per_second'] / gsg['images_per_second'])
  assert benchmark_json['commit'] and benchmark_json['cpu'] is not None and benchmark_json['date']


def test_flops_scale_with_the_views(benchmark_json):
  simsiam, gsg = (r['flops_per_step'] for r in benchmark_json['results'])
  assert gsg / simsiam == pytest.approx(2.0, rel=0.05)


def test_profile_summary(benchmark_json):
  for r in benchmark_json['results']:
    profile = r['profile']
    assert 'error' not in profile, profile
    assert os.path.isdir(profile['log_dir'])
    assert profile['op_seconds_per_step'] > 0 and profile['busy_fraction'] > 0
    shares = [k['share'] for k in profile['top_kinds']]
    assert shares and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert any('fusion' in k['name'] or 'convolution' in k['name'] for k in profile['top_kinds'])
