"""The accelerator check's sizing and deadline (``benchmarks/accelerator_check.py``).

Its whole path runs on a CPU as a smoke run (the command in its docstring);
here the decisions that spend the device's minutes: how many
epochs a run gets, that a run past the deadline is stopped with SIGTERM, so
that it checkpoints, rather than killed, and that the result of such a run is
still read.
"""

import json
import signal
import sys
import time

from benchmarks.accelerator_check import _last_eval, epochs_for, run_until


def test_epochs_fill_the_time_at_the_discounted_rate():
  # 110 s × 10,000 img/s × 0.7 = 770,000 images: 17 epochs of 45,000.
  assert epochs_for(10_000, 110, 0.7, 800, 45_000) == 17
  assert epochs_for(10_000, 110, 0.7, 10, 45_000) == 10  # Capped.
  assert epochs_for(50, 110, 0.7, 800, 45_000) == 1  # Never zero.


def test_a_run_past_the_deadline_gets_sigterm_and_may_finish(tmp_path, capfd):
  # The child stands for the trainer: on SIGTERM it writes its last words (the checkpoint) and exits 0; left alone
  # it would say 'finished' and exit 3. It starts with SIGTERM blocked (a signal mask is inherited through exec) and
  # unblocks it once its handler is in place, so a SIGTERM sent early waits for the handler instead of killing it.
  child = (
    'import signal, sys, time\n'
    'def stop(*_):\n'
    '  print("checkpointed", flush=True); sys.exit(0)\n'
    'signal.signal(signal.SIGTERM, stop)\n'
    'print("started", flush=True)\n'
    'signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n'
    'time.sleep(60)\n'
    'print("finished", flush=True); sys.exit(3)\n'
  )
  log_path = tmp_path / 'log.txt'
  blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
  try:
    with open(log_path, 'w') as log:
      rc = run_until([sys.executable, '-c', child], log, deadline=time.time())  # Already past.
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
  assert rc == 0
  assert log_path.read_text().split() == ['started', 'checkpointed']
  assert 'deadline reached: SIGTERM' in capfd.readouterr().err


def test_last_eval_survives_a_line_cut_short_by_a_killed_run(tmp_path):
  rows = [
    {'kind': 'eval', 'step': 0, 'knn_top1': 30.0},
    {'kind': 'train', 'step': 5},
    {'kind': 'eval', 'step': 10, 'knn_top1': 35.0},
  ]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows) + '{"kind": "ev')
  assert _last_eval(str(tmp_path)) == rows[2]
  assert _last_eval(str(tmp_path / 'no_run')) is None
