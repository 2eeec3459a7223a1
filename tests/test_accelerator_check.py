"""The accelerator check's sizing and deadline (``benchmarks/accelerator_check.py``).

Its whole path runs on a CPU in about two minutes (the command in its
docstring); here only the two decisions that spend the device's minutes: how
many epochs a run gets, and that a run past the deadline is stopped with
SIGTERM, so that it checkpoints, rather than killed.
"""

import sys
import time

from benchmarks.accelerator_check import epochs_for, run_until


def test_epochs_fill_the_time_at_the_discounted_rate():
  # 110 s × 10,000 img/s × 0.7 = 770,000 images: 17 epochs of 45,000.
  assert epochs_for(10_000, 110, 0.7, 800, 45_000) == 17
  assert epochs_for(10_000, 110, 0.7, 10, 45_000) == 10   # Capped.
  assert epochs_for(50, 110, 0.7, 800, 45_000) == 1       # Never zero.


def test_a_run_past_the_deadline_gets_sigterm_and_may_finish(tmp_path):
  # The child stands for the trainer: on SIGTERM it writes its last words (the checkpoint) and exits 0.
  child = ('import signal, sys, time\n'
           'def stop(*_):\n'
           '  print("checkpointed", flush=True); sys.exit(0)\n'
           'signal.signal(signal.SIGTERM, stop)\n'
           'print("started", flush=True)\n'
           'time.sleep(60)\n')
  log_path = tmp_path / 'log.txt'
  t0 = time.time()
  with open(log_path, 'w') as log:
    rc = run_until([sys.executable, '-c', child], log, deadline=time.time() + 5)
  assert rc == 0 and time.time() - t0 < 30
  assert log_path.read_text().split() == ['started', 'checkpointed']
