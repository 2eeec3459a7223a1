"""Run directories on local disks and in object stores (``gsg_jax.storage``), the latter through a fake ``gs://``."""

import json
import os

import numpy as np
import pytest

from gsg_jax import storage


def test_paths_local_and_url(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.resolve('run') == str(tmp_path / 'run')
  assert storage.resolve('gs://bucket/run/') == 'gs://bucket/run'
  assert storage.join('gs://bucket/run', 'eval', 'latest.json') == 'gs://bucket/run/eval/latest.json'
  assert storage.dirname('gs://bucket/sweep/run') == 'gs://bucket/sweep'
  assert storage.dirname('gs://bucket') == 'gs://bucket'
  assert storage.basename('gs://bucket/run/') == 'run'
  assert storage.dirname('run') == str(tmp_path)


def test_write_is_whole_and_leaves_no_partial(tmp_path):
  path = str(tmp_path / 'a.json')
  storage.write_json(path, {'x': 1})
  storage.write_json(path, {'x': 2})
  assert storage.read_json(path) == {'x': 2}
  assert os.listdir(tmp_path) == ['a.json']
  assert storage.read_json_if_present(path) == {'x': 2}
  assert storage.read_json_if_present(str(tmp_path / 'missing.json')) is None
  storage.save_npz(str(tmp_path / 'b.npz'), a=np.arange(3))
  np.testing.assert_array_equal(storage.load_npz(str(tmp_path / 'b.npz'))['a'], np.arange(3))


def test_append_log_keeps_earlier_lines_local_and_remote(tmp_path, fake_gcs):
  for path in (str(tmp_path / 'metrics.jsonl'), 'gs://bucket/run/metrics.jsonl'):
    log = storage.AppendLog(path, min_interval_s=3600)
    log.write_line('1')
    log.write_line('2', urgent=True)
    log.write_line('3')  # Not yet written to the object: within the interval, not urgent.
    if storage.is_url(path):
      assert storage.read_text(path) == '1\n2\n'
    log.close()
    log = storage.AppendLog(path)  # A resumed run.
    log.write_line('4')
    log.close()
    assert storage.read_text(path) == '1\n2\n3\n4\n', path
  assert os.path.isfile(os.path.join(fake_gcs, 'bucket', 'run', 'metrics.jsonl'))
  assert storage.read_json_if_present('gs://bucket/run/missing.json') is None


def test_fake_store_refuses_appends_like_gcs(fake_gcs):
  """The fake must be able to catch code that appends in a run directory."""
  storage.write_text('gs://bucket/x.txt', 'a')
  from etils import epath

  with pytest.raises(NotImplementedError):
    with epath.Path('gs://bucket/x.txt').open('a') as f:
      f.write('b')


@pytest.mark.slow
def test_run_directory_in_an_object_store_trains_resumes_and_reads_back(
  tmp_path, monkeypatch, fake_gcs, make_tiny_config
):
  """Train into gs://, resume from the same URL, then evaluate, export and report from it: every file lands in
  the store and no local ``gs:`` folder appears."""
  from gsg_jax import export, report
  from gsg_jax.evaluation import run as evaluate
  from gsg_jax.run_dir import checkpoint_steps
  from gsg_jax.training import train_and_evaluate

  monkeypatch.chdir(tmp_path)
  url, root = 'gs://bucket/runs/a', os.path.join(fake_gcs, 'bucket', 'runs', 'a')
  config = make_tiny_config(num_epochs=1, checkpoint_every_steps=1000)
  steps_per_epoch = 512 // 64
  first = train_and_evaluate(config, url)
  assert first['steps'] == steps_per_epoch
  assert checkpoint_steps(url) == [steps_per_epoch]
  config.num_epochs = 2
  second = train_and_evaluate(config, url)  # Resumes at the end of epoch 1 from the same URL.
  assert second['steps'] == 2 * steps_per_epoch
  assert checkpoint_steps(url) == [steps_per_epoch, 2 * steps_per_epoch]
  rows = [json.loads(line) for line in open(os.path.join(root, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if r['kind'] == 'eval'] == [0, steps_per_epoch, 2 * steps_per_epoch]
  for name in ('config.json', 'summary.json'):
    assert os.path.isfile(os.path.join(root, name)), name
  assert json.load(open(os.path.join(root, 'summary.json')))['steps'] == 2 * steps_per_epoch

  result = evaluate.evaluate_run(url, protocols=('knn',))
  assert result['eval_dir'] == url + '/eval'
  assert json.load(open(os.path.join(root, 'eval', 'latest.json')))['step'] == 2 * steps_per_epoch
  export.export(url, 'gs://bucket/exports/backbone.safetensors')
  arrays, info = export.read_export('gs://bucket/exports/backbone.safetensors')
  assert info['step'] == 2 * steps_per_epoch and arrays
  assert report.load_metrics(url) == rows
  assert not [p for p in os.listdir(tmp_path) if p.startswith('gs')]  # Nothing written to ./gs:/...
