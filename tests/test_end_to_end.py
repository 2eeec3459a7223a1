"""End to end in one process, fast: train two steps, resume to four, evaluate the run.

``gsg_jax.training.train_and_evaluate`` on a tiny config (128 built-in images, batch 64: two steps an epoch) for one
epoch, then the same config with two epochs in the same workdir: it must resume from the checkpoint at step 2, record
a second part in ``run.json`` and finish at step 4. ``gsg_jax.evaluation.run.evaluate_run`` then evaluates the final
checkpoint: its kNN top-1 must be the training monitor's at step 4 (the same weights, k and T), and it writes its
results and the embedding. Like the whole fast tier it compiles with most XLA optimisations off (conftest's
``pytest_runtest_setup``). The slow tier covers the rest (``test_train.py``, ``test_faults.py``,
``test_evaluate_report.py``).
"""

import json

import numpy as np
import pytest
from conftest import tiny_config

from gsg_jax import run_dir
from gsg_jax.evaluation.run import evaluate_run
from gsg_jax.training import train_and_evaluate

TRAIN, HELDOUT, BATCH = 128, 128, 64


def config(num_epochs):
  return tiny_config(
    'simsiam_gsg',
    num_epochs=num_epochs,
    batch_size=BATCH,
    log_every_steps=1,
    checkpoint_every_steps=2,
    **{'data.builtin_num_train': TRAIN, 'data.builtin_num_heldout': HELDOUT, 'eval.batch_size': HELDOUT},
  )


def test_train_resume_evaluate(tmp_path, capsys):
  workdir = str(tmp_path / 'run')

  first = train_and_evaluate(config(1), workdir)
  assert first['steps'] == 2 and first['epochs'] == 1.0 and first['parts'] == 1
  assert 'Resumed' not in capsys.readouterr().out

  second = train_and_evaluate(config(2), workdir)
  out = capsys.readouterr().out
  assert 'Resumed from the checkpoint at step 2 ' in out and 'num_epochs 1 → 2' in out, out
  assert second['steps'] == 4 and second['epochs'] == 2.0 and second['parts'] == 2
  assert second['method'] == 'simsiam+gsg' and np.isfinite(second['final_loss'])

  record = json.load(open(tmp_path / 'run' / 'run.json'))
  assert record['steps_per_epoch'] == 2
  assert [(p['start_step'], p['end_step']) for p in record['parts']] == [(0, 2), (2, 4)]
  assert [p['config_changes'] for p in record['parts']] == [{}, {'num_epochs': [1, 2]}]
  assert json.load(open(tmp_path / 'run' / 'config.json'))['num_epochs'] == 2

  metrics = run_dir.load_metrics(workdir)
  trained = [r for r in metrics if r['kind'] == 'train']
  evals = {r['step']: r for r in metrics if r['kind'] == 'eval'}
  assert [r['step'] for r in trained] == [1, 2, 3, 4]  # Each step once: the second part starts where the first ended.
  assert sorted(evals) == [0, 2, 4]  # Random init, then every epoch; the second part does not redo step 0.
  assert evals[4]['knn_memory_examples'] == TRAIN
  assert second['knn_top1'] == evals[4]['knn_top1'] and second['final_loss'] == trained[-1]['loss']

  result = evaluate_run(workdir, protocols=('knn',))
  assert result['step'] == 4 and result['epochs'] == 2.0 and result['configured_epochs'] == 2
  assert result['method'] == 'simsiam+gsg' and result['num_memory'] == TRAIN and result['num_heldout'] == HELDOUT
  assert result['protocols'] == ['knn'] and result['settings']['knn']['k'] == 20
  assert not any(k.startswith('floors/') for k in result['metrics'])
  # The checkpoint at step 4 holds the weights the monitor evaluated at step 4: the same kNN.
  assert result['metrics']['knn_top1'] == pytest.approx(evals[4]['knn_top1'], abs=1e-6)
  assert result['metrics']['knn_top5'] == pytest.approx(evals[4]['knn_top5'], abs=1e-6)

  eval_dir = tmp_path / 'run' / 'eval'
  assert sorted(p.name for p in eval_dir.iterdir()) == [
    'embedding_latest.npz',
    'embedding_step_4.npz',
    'latest.json',
    'step_4.json',
  ]
  written = json.load(open(eval_dir / 'step_4.json'))
  assert written == json.load(open(eval_dir / 'latest.json'))
  assert written['metrics']['knn_top1'] == result['metrics']['knn_top1'] and written['step'] == 4
  embedding = np.load(eval_dir / 'embedding_step_4.npz')
  assert embedding['embedding'].shape == (HELDOUT, 2) and embedding['labels'].shape == (HELDOUT,)
  assert embedding['features'].shape == (HELDOUT, result['feature_dim'])
