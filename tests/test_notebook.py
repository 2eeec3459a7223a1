"""examples/ablation.ipynb: stored without outputs, and runs headless from top to bottom, drawing its figure."""

import math
import os

import nbformat
import pytest
from conftest import REPO

NOTEBOOK = os.path.join(REPO, 'examples', 'ablation.ipynb')
ARMS = ('SimSiam', 'SimSiam+GSG', 'SimSiam, no predictor')


def test_stored_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow  # A Jupyter kernel and three small training runs.
def test_notebook_runs_and_plots(tmp_path, monkeypatch):
  from nbclient import NotebookClient

  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # The kernel is a child process: it gets this checkout's gsg_jax, and only the CPU, through its environment.
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  NotebookClient(
    notebook, kernel_name='python3', timeout=600, resources={'metadata': {'path': str(tmp_path)}}
  ).execute()  # Raises on a failing cell.

  outputs = [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs]
  assert not [output for output in outputs if output.output_type == 'error']
  figures = [output for output in outputs if output.output_type == 'display_data' and 'image/png' in output.data]
  assert len(figures) == 1
  printed = ''.join(output.get('text', '') for output in outputs if output.output_type == 'stream')
  rows = {line[:24].strip(): line[24:].split() for line in printed.splitlines() if line[:24].strip() in ARMS}
  assert set(rows) == set(ARMS), printed
  for arm, (loss, std, knn, seconds) in rows.items():
    assert -1.0 <= float(loss) <= 1.0 and 0.0 < float(std) <= 1.0, (arm, rows[arm])
    assert 0.0 <= float(knn.rstrip('%')) <= 100.0 and math.isfinite(float(seconds)), (arm, rows[arm])
