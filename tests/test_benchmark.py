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

import jax
import jax.numpy as jnp
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import train_step  # noqa: E402


@pytest.mark.parametrize(
  'op_name, part',
  [
    ('jit(train_step)/transpose(jvp(SiameseNetwork))/backbone/Conv_3/conv_general_dilated', 'backbone (backward)'),
    ('jit(train_step)/jvp(SiameseNetwork)/projector/Dense_0/dot_general', 'projector'),
    ('jit(train_step)/views/vmap()/div', 'views'),
    ('jit(train_step)/transpose(jvp(loss))/mul', 'loss (backward)'),
    ('jit(train_step)/optimizer/mul', 'optimizer'),
    ('jit(train_step)/target_network/SiameseNetwork/backbone/Conv_0/conv_general_dilated', 'target_network'),
    ('jit(train_step)/target/mul', 'target'),
    ('jit(train_step)/add', 'other'),
    ('jit(train_step)/views', 'other'),  # The scope's name alone is the op, not a scope.
  ],
)
def test_part_of_an_op(op_name, part):
  assert train_step.part_of(op_name) == part


def test_op_parts_of_a_compiled_program():
  def loss(w, x):
    with jax.named_scope('views'):
      x = jnp.sin(x) * 2.0
    with jax.named_scope('loss'):
      return jnp.sum(jnp.tanh(x @ w) ** 2)

  def step(w, x):
    g = jax.grad(loss)(w, x)
    with jax.named_scope('optimizer'):
      return w - 0.1 * g

  hlo = jax.jit(step).lower(jnp.ones((8, 8)), jnp.ones((4, 8))).compile().as_text()
  parts = set(train_step.op_parts(hlo).values())
  assert {'views', 'loss', 'loss (backward)'} <= parts, parts
  assert parts <= {'views', 'loss', 'loss (backward)', 'optimizer', 'other'}, parts


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
      f'--parts-record={tmp / "parts.json"}',
      f'--out={out}',
    ],
    env=env,
    check=True,
    timeout=600,
  )
  with open(out) as f:
    results = json.load(f)
  with open(tmp / 'parts.json') as f:
    results['parts_record'] = json.load(f)
  return results


@pytest.mark.slow  # A subprocess: the full tier only.
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


@pytest.mark.slow  # A subprocess: the full tier only.
def test_flops_scale_with_the_views(benchmark_json):
  simsiam, gsg = (r['flops_per_step'] for r in benchmark_json['results'])
  assert gsg / simsiam == pytest.approx(2.0, rel=0.05)


@pytest.mark.slow  # A subprocess: the full tier only.
def test_profile_summary(benchmark_json):
  for r in benchmark_json['results']:
    profile = r['profile']
    assert 'error' not in profile, profile
    assert os.path.isdir(profile['log_dir'])
    assert profile['op_seconds_per_step'] > 0 and profile['busy_fraction'] > 0
    shares = [k['share'] for k in profile['top_kinds']]
    assert shares and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert any('fusion' in k['name'] or 'convolution' in k['name'] for k in profile['top_kinds'])
  parts = {p['name']: p['share'] for p in profile['parts']}
  assert sum(parts.values()) == pytest.approx(1.0)  # Every op is in one part, 'other' included.
  # The step's ops are labelled: the augmentation, the network's forward and backward passes, the optimiser.
  assert {'views', 'backbone', 'backbone (backward)', 'projector', 'optimizer'} <= set(parts), parts
  assert parts['backbone'] + parts['backbone (backward)'] > parts.get('other', 0.0)


@pytest.mark.slow  # A subprocess: the full tier only.
def test_parts_record(benchmark_json):
  sys.path.insert(0, os.path.join(REPO, 'docs'))
  import generate_results

  record = benchmark_json['parts_record']
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'parts.json'))
  assert [r['method'] for r in record['rows']] == ['simsiam', 'simsiam_gsg']
  for row in record['rows']:
    shares = [row[c['key']] for c in record['columns'] if c.get('format') == '.0%']
    assert sum(shares) == pytest.approx(1.0) and min(shares) > -1e-9
    assert row['backbone'] > 0 and row['backbone_backward'] > 0 and row['views'] > 0 and row['op_ms'] > 0
