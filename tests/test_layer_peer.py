"""benchmarks/layer_peer.py: the layers it reads from the networks, its table and record, the skip path without
PyTorch, and (where a PyTorch environment is on the machine, as in peer_pytorch's tests) its PyTorch half."""

import json
import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import layer_peer  # noqa: E402
import peer_pytorch  # noqa: E402


def test_without_pytorch_it_skips(tmp_path, capsys):
  assert layer_peer.main(['--torch-python', str(tmp_path / 'missing' / 'python')]) == 0
  assert capsys.readouterr().out.startswith('SKIP')
  with pytest.raises(SystemExit):
    layer_peer.main(['--cases', 'resnet50'])


def test_resnet18_layers_are_read_from_the_network():
  backbone, shape, spec = layer_peer.case_backbone('resnet18', 4)
  layers = layer_peer.convolutions(backbone, shape)
  assert shape == (4, 32, 32, 3) and spec['model']['backbone'] == 'resnet18'
  # Stem, 16 block convolutions, 3 projection shortcuts; 11 distinct shapes.
  assert sum(layer['count'] for layer in layers) == 20 and len(layers) == 11
  assert [layer['first'] for layer in layers] == [True] + [False] * 10
  stem = layers[0]
  assert (stem['in_channels'], stem['out_channels'], stem['kernel'], stem['stride'], stem['size']) == (3, 16, 3, 1, 32)
  shortcuts = [layer for layer in layers if layer['kernel'] == 1]
  assert [(s['in_channels'], s['out_channels'], s['stride'], s['count']) for s in shortcuts] == [
    (16, 32, 2, 1),
    (32, 64, 2, 1),
    (64, 128, 2, 1),
  ]
  # The stride-1 3×3 convolutions of the blocks: four in the first stage, three in each later one (whose first block
  # opens with a stride-2 convolution).
  same = [ly for ly in layers if ly['kernel'] == 3 and ly['stride'] == 1 and not ly['first']]
  counts = {(ly['in_channels'], ly['size']): ly['count'] for ly in same}
  assert counts == {(16, 32): 4, (32, 16): 3, (64, 8): 3, (128, 4): 3}
  assert all(layer['padding'] == [[1, 1], [1, 1]] for layer in layers if layer['kernel'] == 3)
  assert layer_peer.label(layers[2]) == '16→32, 3×3/2, 32²'


def test_convnet_layers_keep_its_one_sided_padding():
  backbone, shape, _ = layer_peer.case_backbone('quick', 2)
  layers = layer_peer.convolutions(backbone, shape)
  assert [(ly['in_channels'], ly['out_channels'], ly['stride'], ly['size']) for ly in layers] == [
    (3, 16, 1, 24),
    (16, 32, 2, 24),
    (32, 64, 2, 12),
    (64, 128, 2, 6),
  ]
  assert layers[1]['padding'] == [[0, 1], [0, 1]]  # 'SAME' at stride 2 on an even size.


def fake_measurements():
  layer = lambda first, count, ms: {'first': first, 'count': count, 'size': 8, 'in_channels': 3, 'out_channels': 4,
                                    'kernel': 3, 'stride': 1, 'batch': 2, 'padding': [[1, 1], [1, 1]],
                                    'jax_ms': dict(zip(layer_peer.OPS, ms))}  # fmt: skip
  spec = {'model': {'backbone': 'convnet', 'width': 16}}
  measured = {'quick': {'layers': [layer(True, 1, [1, 100, 1, 1]), layer(False, 2, [2, 2, 2, 2])], 'spec': spec,
                        'backbone_ms': 30.0}}  # fmt: skip
  torch_ms = [dict(zip(layer_peer.OPS, ms)) for ms in ([2, 5, 1, 1], [1, 1, 1, 4])]
  return measured, {'cases': {'quick': {'layers': torch_ms, 'backbone_ms': 15.0}}, 'torch': '2.x', 'threads': 2}


def test_rows_weight_layers_by_count_and_leave_out_the_images_gradient():
  rows = layer_peer.table_rows(*fake_measurements())
  first, second, total, whole = rows
  assert first['input_gradient_ratio'] is None and first['jax_ms'] == 3 and first['torch_ms'] == 4
  assert second['forward_ratio'] == 0.5 and second['batchnorm_relu_ratio'] == 2.0 and second['ratio'] == 7 / 8
  assert total['count'] == 3
  assert total['input_gradient_ratio'] == pytest.approx(2 / 4)  # The first layer's 100 ms is not counted.
  assert total['forward_ratio'] == pytest.approx((2 + 2 * 1) / (1 + 2 * 2))
  assert total['jax_ms'] == pytest.approx(3 + 2 * 8) and total['torch_ms'] == pytest.approx(4 + 2 * 7)
  assert whole['ratio'] == 0.5 and whole['count'] is None


def test_record_is_a_results_table(tmp_path):
  rows = layer_peer.table_rows(*fake_measurements())
  record = layer_peer.layer_record(rows, 'python x', 128, '2.x', 2, 'cpu', raw='out/layer_peer_raw.json')
  assert record['results_file'] == 'layer_peer_raw.json'  # Beside the record, so that the docs read it.
  assert 'results_file' not in layer_peer.layer_record(rows, 'python x', 128, '2.x', 2, 'cpu')
  path = tmp_path / 'throughput' / 'layer_peer.json'
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'layer_peer.json'))
  layer_peer.records.write(record, str(path))
  assert json.loads(path.read_text())['rows'][2]['layer'] == 'all layers, × count'
  assert '2 threads, batch 128' in record['title']
  assert '| whole backbone, forward + backward |' in generate_results.markdown_table(record)


@pytest.mark.slow
def test_jax_half_times_every_op_of_a_small_layer():
  layer = {'batch': 2, 'size': 8, 'in_channels': 3, 'out_channels': 4, 'kernel': 3, 'stride': 2,
           'padding': [[0, 1], [0, 1]]}  # fmt: skip
  ms = layer_peer.jax_layer_ms(layer, iterations=1, repeats=1)
  assert set(ms) == set(layer_peer.OPS) and all(v > 0 for v in ms.values())


@pytest.mark.slow
def test_torch_half_answers_a_small_request():
  python = peer_pytorch.torch_python(type('Args', (), {'torch_python': ''})())
  if peer_pytorch.torch_version(python) is None:
    pytest.skip('no PyTorch environment on this machine (see benchmarks/peer_pytorch.py)')
  backbone, shape, spec = layer_peer.case_backbone('quick', 2)
  request = {'cases': {'quick': {'layers': layer_peer.convolutions(backbone, shape)[:2], 'spec': spec}},
             'iterations': 1, 'repeats': 1, 'threads': 1}  # fmt: skip
  answer = peer_pytorch.child_json(python, os.path.join(REPO, 'benchmarks', 'layer_peer.py'), request)
  layers = answer['cases']['quick']['layers']
  assert len(layers) == 2 and all(set(ms) == set(layer_peer.OPS) for ms in layers)
  assert answer['threads'] == 1 and answer['cases']['quick']['backbone_ms'] > 0
