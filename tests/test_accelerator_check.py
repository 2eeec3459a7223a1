"""The accelerator check's sizing and deadline (``benchmarks/accelerator_check.py``).

Its whole path runs on a CPU in about two minutes (the command in its
docstring); here the decisions that spend the device's minutes: how many
epochs a run gets, that a run past the deadline is stopped with SIGTERM, so
that it checkpoints, rather than killed, and that the result of such a run is
still read.
"""

import json
import sys
import time

from benchmarks.accelerator_check import _last_eval, epochs_for, run_until


def test_epochs_fill_the_time_at_the_discounted_rate():
  # 110 s × 10,000 img/s × 0.7 = 770,000 images: 17 epochs of 45,000.
  assert epochs_for(10_000, 110, 0.7, 800, 45_000) == 17
  assert epochs_for(10_000, 110, 0.7, 10, 45_000) == 10  # Capped.
  assert epochs_for(50, 110, 0.7, 800, 45_000) == 1  # Never zero.


def test_a_run_past_the_deadline_gets_sigterm_and_may_finish(tmp_path):
  # The child stands for the trainer: on SIGTERM it writes its last words (the checkpoint) and exits 0.
  child = (
    'import signal, sys, time\n'
    'def stop(*_):\n'
    '  print("checkpointed", flush=True); sys.exit(0)\n'
    'signal.signal(signal.SIGTERM, stop)\n'
    'print("started", flush=True)\n'
    'time.sleep(60)\n'
  )
  log_path = tmp_path / 'log.txt'
  t0 = time.time()
  with open(log_path, 'w') as log:
    rc = run_until([sys.executable, '-c', child], log, deadline=time.time() + 5)
  assert rc == 0 and time.time() - t0 < 30
  assert log_path.read_text().split() == ['started', 'checkpointed']


def test_last_eval_survives_a_line_cut_short_by_a_killed_run(tmp_path):
  rows = [
    {'kind': 'eval', 'step': 0, 'knn_top1': 30.0},
    {'kind': 'train', 'step': 5},
    {'kind': 'eval', 'step': 10, 'knn_top1': 35.0},
  ]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows) + '{"kind": "ev')
  assert _last_eval(str(tmp_path)) == rows[2]
  assert _last_eval(str(tmp_path / 'no_run')) is None
