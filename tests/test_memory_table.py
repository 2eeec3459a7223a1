"""XLA's memory analysis in train_step.py's rows, and memory_table.py's table of what fits.

The compile test is a ResNet-18 at width 4, batch 8, on two simulated devices in
a child process (as train_step.py runs every device count but the machine's):
two small compiles. Two devices, not one: on one device XLA:CPU's buffer
assignment shows no saving from remat (the record's notes say why), on two it
does. The table tests use made-up rows and compile nothing.
"""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import memory_table  # noqa: E402
import train_step  # noqa: E402

GIB = 2**30
MEMORY_KEYS = ('argument_bytes', 'output_bytes', 'temp_bytes', 'generated_code_bytes', 'alias_bytes', 'peak_bytes')


@pytest.mark.slow  # A child process: the full tier only.
def test_compiled_step_reports_memory_and_remat_lowers_temp():
  argv = [
    '--methods=simsiam',
    '--batch-sizes=8',
    '--preset=quick',
    '--backbone=resnet18',  # The ConvNet has no remat.
    '--width=4',
    '--remat=off,on',
    '--compile-only',
  ]
  plain, remat = train_step.child_rows(2, argv)
  assert (plain['remat'], remat['remat']) == (False, True)
  for row in (plain, remat):
    assert row['devices'] == 2 and row['batch_per_device'] == 4
    memory = row['memory']
    assert set(MEMORY_KEYS) <= set(memory)
    assert memory['argument_bytes'] > 0 and memory['output_bytes'] > 0 and memory['temp_bytes'] > 0
    assert memory['alias_bytes'] > 0  # The state is donated: the new state reuses its buffers.
    assert memory['peak_bytes'] == (
      memory['argument_bytes'] + memory['output_bytes'] + memory['temp_bytes'] - memory['alias_bytes']
    )
  assert remat['flops_per_step'] > plain['flops_per_step']  # The blocks are recomputed...
  assert remat['memory']['temp_bytes'] < plain['memory']['temp_bytes']  # ...instead of kept.
  assert remat['memory']['argument_bytes'] == plain['memory']['argument_bytes']  # Same state and batch.


def fake_row(method='simsiam', devices=1, remat=False, peak=GIB, temp=None):
  temp = peak - 3 * 1000 if temp is None else temp
  return {
    'preset': 'cifar10',
    'method': method,
    'backbone': 'resnet18',
    'width': 64,
    'crop_size': 32,
    'dtype': 'float32',
    'devices': devices,
    'remat': remat,
    'batch_per_device': 512 // devices,
    'memory': {
      'argument_bytes': 2000,
      'output_bytes': 2000,
      'alias_bytes': 1000,
      'temp_bytes': temp,
      'generated_code_bytes': 0,
      'peak_bytes': peak,
    },
  }


def test_fits_compares_the_peak_with_the_usable_part_of_each_device():
  edge = int(0.9 * 16 * GIB)
  rows = [fake_row(peak=edge), fake_row(method='simsiam_gsg', peak=edge + 1), fake_row(devices=8, peak=50 * GIB)]
  record = memory_table.memory_record(rows, [16, 40, 80], 0.9, 'python benchmarks/memory_table.py', 512)
  fits = [(r['fits_16'], r['fits_40'], r['fits_80']) for r in record['rows']]
  assert fits == [(True, True, True), (False, True, True), (False, False, True)]
  assert record['rows'][0]['peak_gib'] == pytest.approx(edge / GIB)
  assert record['rows'][1]['method'] == 'SimSiam+GSG' and record['rows'][2]['batch_per_device'] == 64
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'memory.json'))
  table = generate_results.markdown_table(record)
  assert '| fits 16 GB | fits 40 GB | fits 80 GB |' in table and '| no | yes | yes |' in table


def test_remat_rows_without_a_saving_are_not_judged():
  rows = [
    fake_row(devices=1, peak=10 * GIB),
    fake_row(devices=1, remat=True, peak=11 * GIB),  # XLA:CPU's one-device case: no saving shown.
    fake_row(devices=8, peak=2 * GIB),
    fake_row(devices=8, remat=True, peak=GIB),
  ]
  record = memory_table.memory_record(rows, [16, 40, 80], 0.9, 'cmd', 512)
  assert [r['fits_16'] for r in record['rows']] == [True, None, True, True]
  assert '| – | – | – |' in generate_results.markdown_table(record)


def test_the_committed_table_comes_from_memory_table():
  """benchmarks/results/throughput/memory.json: the two networks × two methods × 1 and 8 devices × remat."""
  import json

  with open(os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'memory.json')) as f:
    record = json.load(f)
  assert record['command'].startswith('python benchmarks/memory_table.py')
  combos = {(r['network'].split(' width')[0], r['method'], r['devices'], r['remat']) for r in record['rows']}
  assert len(combos) == 16 and all(r['peak_gib'] > r['temp_gib'] > 0 for r in record['rows'])
