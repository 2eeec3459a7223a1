"""The package: pyproject.toml's console scripts and package list, requirements.txt, the configs found from any
folder, the CPU-only warning, and training without TensorFlow.

Building the wheel and installing it into a fresh environment: tests/test_release.py (slow).
"""

import importlib
import json
import os
import subprocess
import sys
import tomllib

import jax
import pytest
from conftest import REPO, tiny_config

from gsg_jax import config_lib, parallel

with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
  PYPROJECT = tomllib.load(f)


@pytest.mark.parametrize('name', ['gsg-train', 'gsg-evaluate', 'gsg-report', 'gsg-sweep', 'gsg-export', 'gsg-embed'])
def test_console_script_resolves(name):
  module, _, attribute = PYPROJECT['project']['scripts'][name].partition(':')
  assert callable(getattr(importlib.import_module(module), attribute)), PYPROJECT['project']['scripts'][name]


def test_every_package_is_listed_and_configs_ship_inside():
  on_disk = {
    os.path.relpath(root, REPO).replace(os.sep, '.')
    for root, _, files in os.walk(os.path.join(REPO, 'gsg_jax'))
    if '__init__.py' in files
  }
  setuptools = PYPROJECT['tool']['setuptools']
  assert set(setuptools['packages']) == on_disk | {'gsg_jax.configs'}
  assert setuptools['package-dir'] == {'gsg_jax.configs': 'configs'}
  assert os.path.isfile(os.path.join(REPO, setuptools['package-dir']['gsg_jax.configs'], 'simsiam_gsg.py'))


def test_requirements_point_into_the_project():
  with open(os.path.join(REPO, 'requirements.txt')) as f:
    lines = [line.split('#')[0].strip() for line in f]
  requirements = [line for line in lines if line]
  assert requirements and all(line.startswith(('-e .[', '.[')) for line in requirements), requirements
  extras = PYPROJECT['project']['optional-dependencies']
  for line in requirements:
    assert set(line[line.index('[') + 1 : line.index(']')].split(',')) <= set(extras), line


def test_version_is_the_package_version():
  import gsg_jax

  assert PYPROJECT['tool']['setuptools']['dynamic']['version'] == {'attr': 'gsg_jax.__version__'}
  assert gsg_jax.__version__.count('.') == 2


def test_config_argument_resolves_from_any_folder(tmp_path, monkeypatch):
  argv = ['gsg-train', '--config=configs/simsiam.py:quick', '--config.batch_size=8', '--workdir=run']
  monkeypatch.chdir(tmp_path)
  resolved = config_lib.resolve_config_argv(argv)
  assert resolved[0] == argv[0] and resolved[2:] == argv[2:]
  assert resolved[1] == '--config=' + os.path.join(config_lib.CONFIG_DIR, 'simsiam.py') + ':quick'
  assert config_lib.resolve_config_argv(['p', '--config', 'configs/byol.py'])[2] == os.path.join(
    config_lib.CONFIG_DIR, 'byol.py'
  )
  unchanged = [['p', '--config=other/simsiam.py'], ['p', '--config=configs/no_such.py'], ['p', 'configs/byol.py']]
  for argv in unchanged:  # Not ours to resolve: ml-collections reports the missing file itself.
    assert config_lib.resolve_config_argv(argv) == argv
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'simsiam.py').write_text('')
  assert config_lib.resolve_config_argv(['p', '--config=configs/simsiam.py']) == ['p', '--config=configs/simsiam.py']


def test_cpu_only_warning():
  cpus = jax.devices('cpu')
  assert parallel.warn_if_cpu_only(tiny_config(), cpus) is None
  message = parallel.warn_if_cpu_only(tiny_config(**{'model.dtype': 'bfloat16'}), cpus)
  assert 'bfloat16' in message and 'CPU' in message and 'gsg-jax[cuda12]' in message
  assert 'batch_size=1024' in parallel.warn_if_cpu_only(tiny_config(batch_size=1024), cpus)
  assert parallel.warn_if_cpu_only(tiny_config(batch_size=1023), cpus) is None

  class Gpu:
    platform = 'gpu'

  assert parallel.warn_if_cpu_only(tiny_config(batch_size=4096), [Gpu()]) is None


# A missing package as Python sees one: ``import`` raises ModuleNotFoundError and importlib.util.find_spec returns
# None (etils asks find_spec whether TensorFlow is there). A None entry in sys.modules does both; a sys.meta_path
# finder can only make find_spec raise.
WITHOUT_TENSORFLOW = """
import sys
for name in ('tensorflow', 'tensorflow_datasets', 'clu'):
  sys.modules[name] = None
from gsg_jax import main
main.run()
"""


@pytest.mark.slow
def test_trains_without_tensorflow(tmp_path):
  from test_faults import TINY  # The same tiny run: the compilation cache shares its compiled step.

  workdir = tmp_path / 'run'
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  # From another folder: configs/simsiam_gsg.py is found in the package (config_lib.resolve_config_argv).
  result = subprocess.run(
    [sys.executable, '-c', WITHOUT_TENSORFLOW, '--config=configs/simsiam_gsg.py:quick', f'--workdir={workdir}', *TINY],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr.count('TensorBoard summaries off') == 1, result.stderr[-3000:]
  assert 'pip install gsg-jax[tf]' in result.stderr
  with open(workdir / 'metrics.jsonl') as f:
    records = [json.loads(line) for line in f]
  assert any(r['kind'] == 'train' for r in records) and any(r['kind'] == 'eval' for r in records)
  assert not (workdir / 'tensorboard').exists()
