"""A release that builds: ``python -m build`` makes a wheel and an sdist, ``twine check`` accepts them, and the wheel,
installed into a fresh virtual environment, runs its commands from outside the checkout; CITATION.cff and the
changelog follow the one version.

The wheel goes into the fresh environment without its dependencies (``--no-deps``): they are this environment's,
reached through a path file, so the test needs no download beyond the build backend and checks what the wheel itself
carries (the package, its configs, its console scripts) rather than the dependency resolver.
"""

import glob
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
import yaml
from conftest import REPO
from test_faults import TINY  # The tiny run the other CLI tests compile: the compilation cache shares its step.

import gsg_jax


def _run(command, **kwargs):
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
  assert result.returncode == 0, f'{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
  return result


@pytest.mark.slow  # Builds the wheel (the backend in an isolated environment) and installs it: about a minute.
def test_wheel_builds_installs_and_runs(tmp_path):
  dist = tmp_path / 'dist'
  _run([sys.executable, '-m', 'build', '--outdir', str(dist), REPO])
  version = gsg_jax.__version__
  wheel = dist / f'gsg_jax-{version}-py3-none-any.whl'
  sdist = dist / f'gsg_jax-{version}.tar.gz'
  assert wheel.exists() and sdist.exists(), sorted(os.listdir(dist))
  _run([sys.executable, '-m', 'twine', 'check', '--strict', str(wheel), str(sdist)])

  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
  assert {
    'gsg_jax/configs/simsiam_gsg.py',
    'gsg_jax/configs/landscape.py',
    'gsg_jax/experiments/landscape/run.py',
  } <= names
  assert not [n for n in names if n.startswith(('tests/', 'docs/', 'benchmarks/'))]
  with tarfile.open(sdist) as t:
    assert f'gsg_jax-{version}/LICENSE' in t.getnames()

  venv = tmp_path / 'venv'
  _run([sys.executable, '-m', 'venv', str(venv)])
  python = str(venv / 'bin' / 'python')
  _run([python, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(wheel)])
  site = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).stdout.strip()
  with open(os.path.join(site, 'dependencies_from_test_env.pth'), 'w') as f:  # Appended after the venv's own.
    f.write(sysconfig.get_paths()['purelib'] + '\n')

  outside = tmp_path / 'elsewhere'
  outside.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
  env['JAX_PLATFORMS'] = 'cpu'
  where = _run(
    [
      python,
      '-c',
      'import gsg_jax, gsg_jax.config_lib as c; print(gsg_jax.__file__); print(c.CONFIG_DIR);'
      ' print(gsg_jax.__version__); print(c.named_config("simsiam", "quick").batch_size)',
    ],
    cwd=outside,
    env=env,
  ).stdout.split()
  assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where  # The wheel's, not the checkout's.
  assert where[2:] == [version, '128']
  helpfull = subprocess.run(
    [str(venv / 'bin' / 'gsg-train'), '--helpfull'], cwd=outside, env=env, capture_output=True, text=True, timeout=300
  )  # absl's help exits with status 0 or 1.
  assert helpfull.returncode in (0, 1) and '--config:' in helpfull.stdout and '--workdir:' in helpfull.stdout, (
    helpfull.stdout[-2000:] + helpfull.stderr[-2000:]
  )
  workdir = outside / 'run'
  _run(
    [str(venv / 'bin' / 'gsg-train'), '--config=configs/simsiam_gsg.py:quick', f'--workdir={workdir}', *TINY],
    cwd=outside,
    env=env,
  )
  assert (workdir / 'summary.json').exists() and glob.glob(str(workdir / 'checkpoints' / '*'))


def test_citation_and_changelog_follow_the_version():
  with open(os.path.join(REPO, 'CITATION.cff'), encoding='utf-8') as f:
    citation = yaml.safe_load(f)
  assert citation['cff-version'] == '1.2.0' and 'version' not in citation  # The version lives in gsg_jax only.
  titles = ' '.join(r['title'] for r in citation['references'])
  for paper in (
    'Guided Stop-gradient',
    'Simple Siamese',
    'Bootstrap Your Own Latent',
    'without Contrastive Pairs',
    'Kernel-Based Losses',
    'landscape of contrastive',
  ):
    assert paper in titles, paper
  for reference in citation['references']:
    assert reference['authors'] and reference['year'] and reference['collection-title']
  with open(os.path.join(REPO, 'CHANGELOG.md'), encoding='utf-8') as f:
    assert re.search(rf'^## {re.escape(gsg_jax.__version__)}\b', f.read(), re.MULTILINE)
