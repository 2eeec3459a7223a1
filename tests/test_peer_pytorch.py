"""benchmarks/peer_pytorch.py without PyTorch: the skip path, the specs it hands the PyTorch half, and its table.

PyTorch is never installed in the project's environment. Two tests use a
separate environment's PyTorch when one is there ($GSG_TORCH_PYTHON or
/work/torch_venv/bin/python) and skip otherwise: the PyTorch network has as
many parameters as gsg_jax's, and its GSG loss equals gsg_jax's on the same
inputs.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import peer_pytorch  # noqa: E402


def test_without_pytorch_it_says_how_to_install_it_and_exits_0(tmp_path, capsys, monkeypatch):
  assert peer_pytorch.main(['--torch-python', str(tmp_path / 'missing' / 'python')]) == 0
  out = capsys.readouterr().out
  assert out.startswith('SKIP') and peer_pytorch.INSTALL in out
  # A Python without torch: same.
  no_torch = tmp_path / 'python'
  no_torch.write_text('#!/bin/sh\nexit 1\n')
  no_torch.chmod(0o755)
  monkeypatch.setenv('GSG_TORCH_PYTHON', str(no_torch))
  assert peer_pytorch.main([]) == 0
  assert f'no PyTorch at {no_torch}' in capsys.readouterr().out


def test_torch_python_prefers_the_flag_then_the_environment(monkeypatch):
  args = lambda flag: type('Args', (), {'torch_python': flag})()
  monkeypatch.delenv('GSG_TORCH_PYTHON', raising=False)
  assert peer_pytorch.torch_python(args('')) == peer_pytorch.DEFAULT_TORCH_PYTHON
  monkeypatch.setenv('GSG_TORCH_PYTHON', '/env/python')
  assert peer_pytorch.torch_python(args('')) == '/env/python'
  assert peer_pytorch.torch_python(args('/flag/python')) == '/flag/python'


def test_bad_arguments_are_refused():
  with pytest.raises(SystemExit):
    peer_pytorch.main(['--cases', 'resnet50'])
  with pytest.raises(SystemExit):
    peer_pytorch.main(['--torch-modes', 'jit'])


def test_specs_carry_the_configs_shapes():
  quick = peer_pytorch.case_spec('simsiam_gsg', 'quick', 128)
  assert quick['loss'] == 'gsg' and quick['num_views'] == 4 and quick['batch_size'] == 128
  assert quick['model'] == {
    'backbone': 'convnet',
    'width': 16,
    'projection_dim': 256,
    'projector_hidden_dim': 256,
    'projector_layers': 3,
    'projector_output_bn': True,
    'predictor_hidden_dim': 64,
  }
  assert quick['augment']['crop_size'] == 24 and quick['optim']['probe_lr'] == 1.0
  resnet = peer_pytorch.case_spec('simsiam', 'resnet18', 128)
  assert resnet['loss'] == 'negcos' and resnet['num_views'] == 2
  assert resnet['model']['backbone'] == 'resnet18' and resnet['model']['width'] == 16
  assert resnet['model']['projection_dim'] == 2048 and resnet['model']['projector_layers'] == 2
  assert resnet['augment']['crop_size'] == 32
  assert resnet['optim']['lr'] == pytest.approx(0.03 * 128 / 256)  # The linear scaling rule.
  with pytest.raises(ValueError, match='SimSiam and SimSiam\\+GSG only'):
    peer_pytorch.case_spec('byol', 'quick', 128)


def jax_row(method, images_per_second):
  return {
    'method': method,
    'backbone': 'convnet',
    'width': 16,
    'crop_size': 24,
    'batch_size': 128,
    'images_per_second': images_per_second,
  }


def test_rows_ratios_and_record():
  rows = peer_pytorch.combine(
    [jax_row('simsiam', 300.0), jax_row('simsiam_gsg', 120.0)],
    [{'eager': 150.0, 'eager_noaug': 200.0, 'errors': []}, {'eager': 240.0, 'eager_noaug': None, 'errors': ['x']}],
  )
  assert [r['ratio_eager'] for r in rows] == [2.0, 0.5]
  assert rows[0]['ratio_compile'] is None and rows[1]['method'] == 'SimSiam+GSG'
  record = peer_pytorch.peer_record(rows, 'python benchmarks/peer_pytorch.py', 'abc', 'a CPU', ['a note'])
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'peer.json'))
  assert 'torch_compile' not in {c['key'] for c in record['columns']}  # No compiled runs: no such columns.
  table = generate_results.markdown_table(record)
  assert '| convnet width 16, 24² | SimSiam | 128 | 300.0 | 150.0 | 200.0 | 2.00 |' in table
  assert '| 120.0 | 240.0 | – | 0.50 |' in table
  rows[0]['torch_compile'], rows[0]['ratio_compile'] = 100.0, 3.0
  record = peer_pytorch.peer_record(rows, 'cmd', 'abc', 'a CPU')
  assert 'ratio_compile' in {c['key'] for c in record['columns']}
  assert record['title'].endswith('on the CPU') and record['order'] == 30
  one, two = (peer_pytorch.peer_record(rows, 'cmd', 'abc', 'a CPU', torch_threads=n) for n in (1, 2))
  assert one['title'].endswith(', PyTorch on 1 thread') and two['title'].endswith(', PyTorch on 2 threads')
  assert one['order'] != two['order']  # Two tables of one page.
  pinned = peer_pytorch.peer_record(rows, 'cmd', 'abc', 'a CPU', torch_threads=1, cores=1)
  assert pinned['title'].endswith(', PyTorch on 1 thread, both sides on 1 core') and pinned['order'] not in (30, 31)
  every = peer_pytorch.peer_record(rows, 'cmd', 'abc', 'a CPU', torch_threads=2, cores=os.cpu_count())
  assert every['title'] == two['title']


def torch_python_or_skip() -> str:
  python = os.environ.get('GSG_TORCH_PYTHON') or peer_pytorch.DEFAULT_TORCH_PYTHON
  if peer_pytorch.torch_version(python) is None:
    pytest.skip(f'no PyTorch at {python} (see benchmarks/peer_pytorch.py)')
  return python


def run_torch(python: str, code: str, payload) -> dict:
  out = subprocess.run(
    [python, '-c', f'import sys; sys.path.insert(0, {os.path.join(REPO, "benchmarks")!r})\n{code}'],
    input=json.dumps(payload),
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize('case', ['quick', 'resnet18'])
def test_torch_network_has_gsg_jax_parameter_count(case):
  python = torch_python_or_skip()
  import jax
  import numpy as np

  from gsg_jax import config_lib, models
  from gsg_jax.methods import predictors

  spec = peer_pytorch.case_spec('simsiam', case, 8)
  config = config_lib.named_config('simsiam', peer_pytorch.CASES[case][0])
  config.model.backbone = spec['model']['backbone']
  config.model.width = spec['model']['width']
  network = models.build_network(config.model, predictors.TrainedPredictor('mlp').module(config.model, np.float32))
  crop = spec['augment']['crop_size']
  shapes = jax.eval_shape(lambda: models.init_variables(network, jax.random.key(0), (crop, crop, 3)))
  jax_count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes['params']))
  code = (
    'import json, peer_pytorch\n'
    'net, probe = peer_pytorch.build_torch_network(json.loads(sys.stdin.read()))\n'
    'print(json.dumps({"count": sum(p.numel() for p in net.parameters())}))'
  )
  assert run_torch(python, code, spec)['count'] == jax_count


def test_torch_gsg_loss_equals_gsg_jax():
  python = torch_python_or_skip()
  from gsg_jax.methods import gsg

  rng = np.random.default_rng(0)
  p, z = rng.normal(size=(2, 16, 4, 8)).astype(np.float32)
  permutation = rng.permutation(16)
  expected, _ = gsg.guided_loss_from_pairs(gsg.pair_views(p, permutation), gsg.pair_views(z, permutation))
  code = (
    'import json, torch, peer_pytorch\n'
    'd = json.loads(sys.stdin.read())\n'
    't = lambda k: torch.tensor(d[k])\n'
    'print(json.dumps({"loss": float(peer_pytorch.gsg_loss_torch(t("p"), t("z"), t("perm")))}))'
  )
  got = run_torch(python, code, {'p': p.tolist(), 'z': z.tolist(), 'perm': permutation.tolist()})['loss']
  assert got == pytest.approx(float(expected), abs=1e-6)
