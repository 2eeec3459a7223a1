"""A run directory keeps its identity (the config that trained it) and its results (summary over every part)."""

import json
import os

import pytest
from conftest import tiny_config

from gsg_jax import run_dir
from gsg_jax.errors import ConfigError


def _saved(tmp_path, config):
  run_dir.write_config(str(tmp_path), config)
  return str(tmp_path)


def test_a_directory_without_a_run_accepts_any_config(tmp_path):
  assert run_dir.check_config(str(tmp_path), tiny_config('byol')) == {}


def test_training_keys_bind_the_directory(tmp_path):
  workdir = _saved(tmp_path, tiny_config('simsiam_gsg'))
  with pytest.raises(ConfigError, match=r"method.loss \('gsg' there, 'negcos' here\)") as info:
    run_dir.check_config(workdir, tiny_config('simsiam'))
  assert 'new --workdir' in str(info.value) and '\n' not in str(info.value)
  for key, value in (
    ('seed', 1),
    ('optim.base_lr', 0.5),
    ('model.width', 16),
    ('data.builtin_num_train', 256),
    ('augment.crop_size', 8),
    ('batch_size', 32),
    ('online_probe.enabled', False),
  ):
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
      run_dir.check_config(workdir, tiny_config('simsiam_gsg', **{key: value}))


def test_the_refusal_says_how_to_resume(tmp_path):
  workdir = _saved(tmp_path, tiny_config('simsiam_gsg'))
  with pytest.raises(ConfigError, match=r'resume it with its own values: --config.batch_size=64 --config.seed=0\.'):
    run_dir.check_config(workdir, tiny_config('simsiam_gsg', seed=3, batch_size=32))
  many = {'seed': 3, 'batch_size': 32, 'model.width': 4, 'optim.base_lr': 0.2, 'augment.crop_size': 8}
  with pytest.raises(ConfigError, match=r'and 2 more key\(s\).*config saved in .*config.json'):
    run_dir.check_config(workdir, tiny_config('simsiam_gsg', **many))


def test_cadence_and_more_epochs_are_allowed_and_returned(tmp_path):
  workdir = _saved(tmp_path, tiny_config('simsiam_gsg'))
  changes = run_dir.check_config(
    workdir, tiny_config('simsiam_gsg', num_epochs=5, log_every_steps=1, **{'eval.knn_k': 5, 'eval_every_epochs': 2})
  )
  assert changes == {
    'num_epochs': (2, 5),
    'log_every_steps': (4, 1),
    'eval.knn_k': (20, 5),
    'eval_every_epochs': (1, 2),
  }


def test_a_run_made_before_views_per_pass_resumes_with_it(tmp_path):
  """Older runs' configs have no model.views_per_pass; the presets now set it, and it computes the same step."""
  config = tiny_config('simsiam_gsg')
  del config.model['views_per_pass']
  workdir = _saved(tmp_path, config)
  assert run_dir.check_config(workdir, tiny_config('simsiam_gsg')) == {'model.views_per_pass': (None, 1)}


def test_a_key_only_one_side_has_is_a_difference():
  config = tiny_config('simsiam')
  saved = run_dir.config_as_dict(config)
  del saved['model']['remat']
  assert run_dir.differences(saved, config) == {'model.remat': (None, False)}


def test_a_run_cannot_be_shortened(tmp_path):
  run_dir.check_not_shortened(str(tmp_path), num_epochs=2, latest_step=16, steps_per_epoch=8)
  with pytest.raises(ConfigError, match='num_epochs=1 ends at step 8, before the checkpoint at step 16'):
    run_dir.check_not_shortened(str(tmp_path), num_epochs=1, latest_step=16, steps_per_epoch=8)


def test_record_sums_every_part(tmp_path):
  first = run_dir.RunRecord(str(tmp_path), 8, 0, {})
  first.update(6)
  first.part['seconds'] = 10.0  # As if the part had run for 10 s.
  with open(tmp_path / 'run.json', 'w') as f:
    json.dump(first.record, f)
  second = run_dir.RunRecord(str(tmp_path), 8, 4, {'num_epochs': (1, 2)})  # Resumed from the checkpoint at 4.
  second.update(16)
  second.part['seconds'] = 5.0
  assert second.total_seconds == 15.0 and second.steps_trained == 6 + 12
  with open(tmp_path / 'run.json') as f:
    saved = json.load(f)
  assert [p['start_step'] for p in saved['parts']] == [0, 4]
  assert saved['parts'][1]['config_changes'] == {'num_epochs': [1, 2]}


def test_last_records_skip_a_cut_line_and_prefer_the_latest(tmp_path):
  lines = [
    {'kind': 'train', 'step': 2, 'loss': 1.0},
    {'kind': 'eval', 'step': 2, 'knn_top1': 10.0},
    {'kind': 'train', 'step': 4, 'loss': 0.5},
  ]
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in lines) + '{"kind": "train", "st')
  train, evaluation = run_dir.last_records(str(tmp_path))
  assert train['step'] == 4 and evaluation['knn_top1'] == 10.0
  assert run_dir.last_records(str(tmp_path / 'nowhere')) == ({}, {})


@pytest.mark.slow  # Trains a tiny run in three commands.
def test_a_run_in_parts_keeps_one_summary_and_a_finished_run_is_left_alone(tmp_path):
  from gsg_jax.training import train_and_evaluate

  workdir = str(tmp_path / 'run')
  first = train_and_evaluate(tiny_config('simsiam_gsg', num_epochs=1), workdir)
  files = {name: os.stat(os.path.join(workdir, name)).st_mtime_ns for name in os.listdir(workdir)}
  again = train_and_evaluate(tiny_config('simsiam_gsg', num_epochs=1, log_every_steps=1), workdir)
  assert again == first  # The saved summary, with its figures and time.
  assert {name: os.stat(os.path.join(workdir, name)).st_mtime_ns for name in os.listdir(workdir)} == files

  extended = train_and_evaluate(tiny_config('simsiam_gsg', num_epochs=2), workdir)
  with open(os.path.join(workdir, 'run.json')) as f:
    record = json.load(f)
  assert [(p['start_step'], p['end_step']) for p in record['parts']] == [(0, 8), (8, 16)]
  assert record['parts'][1]['config_changes'] == {'num_epochs': [1, 2]}
  assert extended['steps'] == 16 and extended['parts'] == 2
  assert extended['train_seconds'] == pytest.approx(sum(p['seconds'] for p in record['parts']))
  assert extended['train_seconds'] > first['train_seconds']
  assert extended['knn_top1'] is not None and extended['final_loss'] is not None
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['num_epochs'] == 2  # Evaluation and reports read the config that trained the weights.
