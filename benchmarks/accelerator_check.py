"""The accelerator check, as one prepared command: step throughput, then SimSiam and SimSiam+GSG on CIFAR-10.

A lent GPU comes with minutes, not hours (the device tool: 15 minutes a task,
10 a command, the machine's start included). This script spends them on
measuring and nothing else, and leaves every figure in ``--out`` as it goes:

1. ``benchmarks/train_step.py`` at the paper's CIFAR-10 setting (ResNet-18,
   full width, batch 512, bfloat16) for each method: images/s, FLOP/s and the
   fraction of the device's dense peak → ``train_step.json``.
2. For each method, the ``cifar10_zip`` preset (all 45,000 training images of
   the zip, 5,000 held out; kNN k = 200, T = 0.2 against the whole training
   split) for as many epochs as ``--train-seconds`` allows at the rate step 1
   measured (times ``--rate-margin``: data feeding, logging and the kNN
   monitor are not in the step benchmark). The epochs are fixed before the run
   starts, so the cosine schedule ends where the run ends. A run still going at
   ``--deadline-seconds`` gets SIGTERM: it checkpoints and stops at a step
   boundary, and its metrics stay. → ``<method>_metrics.jsonl``,
   ``<method>_summary.json``.
3. ``check.json``: the command, the device, the epochs chosen and each run's
   last kNN line, written after every stage.

On the device machine, with the zip and an ml-collections wheel carried
(``benchmarks/RESULTS.md``, "On an accelerator: the prepared check")::

    python benchmarks/accelerator_check.py --zip .data/cifar10-train-jpeg.zip --out $OUT

On a CPU, a smoke run of the same path (about two minutes)::

    python benchmarks/accelerator_check.py --zip ../shared/data/cifar10-train-jpeg.zip --out /tmp/acc \\
        --width 8 --batch-size 64 --dtype float32 --steps 2 --warmup 1 --max-examples 2048 --max-epochs 1
"""

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_IMAGES = 45_000  # The zip's 50,000 images less the 10 % the cifar10_zip preset holds out.


def _write_json(path: str, obj) -> None:
  with open(path, 'w') as f:
    json.dump(obj, f, indent=2)


def _last_eval(workdir: str) -> dict | None:
  """The last ``kind == 'eval'`` row of the run's ``metrics.jsonl``, or None."""
  from gsg_jax.run_dir import load_metrics  # The project's reader: it skips a line cut short by a killed run.

  evals = [row for row in load_metrics(workdir) if row.get('kind') == 'eval']
  return evals[-1] if evals else None


def epochs_for(images_per_second: float, seconds: float, margin: float, max_epochs: int, train_images: int) -> int:
  """Whole epochs that ``seconds`` of training at ``margin`` × the benchmarked rate covers (at least 1)."""
  return max(1, min(max_epochs, math.floor(seconds * images_per_second * margin / train_images)))


def run_until(argv: list, log, deadline: float) -> int:
  """Runs ``argv``, its output into ``log``; SIGTERM at ``deadline`` (a checkpoint and a clean stop), kill 60 s on."""
  # The repository on the path: the device machine runs the tree as sent, not an installed package.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (ROOT, os.environ.get('PYTHONPATH')))))
  proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
  try:
    return proc.wait(timeout=max(1.0, deadline - time.time()))
  except subprocess.TimeoutExpired:
    print(f'deadline reached: SIGTERM to {argv[2:4]}', file=sys.stderr, flush=True)
    proc.send_signal(signal.SIGTERM)
    try:
      return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()
      return proc.wait()


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zip', required=True, help='the CIFAR-10 zip (train/<class>/<image>.jpg)')
  p.add_argument('--out', required=True, help="folder for the results (the device tool's $OUT)")
  p.add_argument('--methods', default='simsiam,simsiam_gsg')
  p.add_argument('--width', type=int, default=64, help="ResNet-18 width (64: the paper's)")
  p.add_argument('--batch-size', type=int, default=512)
  p.add_argument('--dtype', default='bfloat16', choices=('float32', 'bfloat16'))
  p.add_argument('--steps', type=int, default=20, help='timed benchmark steps')
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--train-seconds', type=float, default=110, help='training time to size each run for')
  p.add_argument('--rate-margin', type=float, default=0.7, help='training rate / benchmarked rate, assumed')
  p.add_argument('--max-epochs', type=int, default=800)
  p.add_argument('--max-examples', type=int, default=0, help='use only this many zip images (0: all)')
  p.add_argument(
    '--deadline-seconds',
    type=float,
    default=540,
    help='from the start: a run still going gets SIGTERM (it checkpoints and stops)',
  )
  p.add_argument('--workdir', default='/tmp/gsg_accelerator_check', help='run directories (not returned)')
  args = p.parse_args()

  sys.path.insert(0, ROOT)  # gsg_jax from this tree, as the runs use it (the device machine installs nothing).
  t_start = time.time()
  deadline = t_start + args.deadline_seconds
  os.makedirs(args.out, exist_ok=True)
  if not os.path.isfile(args.zip):
    sys.exit(f'error: no CIFAR-10 zip at {args.zip!r}')
  check = {'date': datetime.date.today().isoformat(), 'command': ' '.join(sys.argv), 'runs': {}}
  check_path = os.path.join(args.out, 'check.json')
  methods = args.methods.split(',')

  with open(os.path.join(args.out, 'log.txt'), 'a') as log:
    bench = os.path.join(args.out, 'train_step.json')
    rc = run_until(
      [
        sys.executable,
        'benchmarks/train_step.py',
        f'--methods={args.methods}',
        f'--batch-sizes={args.batch_size}',
        '--backbone=resnet18',
        f'--width={args.width}',
        f'--dtype={args.dtype}',
        f'--steps={args.steps}',
        f'--warmup={args.warmup}',
        f'--out={bench}',
      ],
      log,
      deadline,
    )
    if rc:
      check['error'] = f'train_step.py exited {rc} (log.txt)'
      _write_json(check_path, check)
      sys.exit(check['error'])
    with open(bench) as f:
      rates = {r['method']: r for r in json.load(f)['results']}
    check['device_kind'] = next(iter(rates.values()))['device_kind']
    check['train_step'] = {
      m: {k: r[k] for k in ('images_per_second', 'fraction_of_peak', 'step_seconds')} for m, r in rates.items()
    }
    _write_json(check_path, check)

    data = os.path.join(args.workdir, 'cache')
    for method in methods:
      if deadline - time.time() < 60:
        check['runs'][method] = {'skipped': 'under 60 s left before --deadline-seconds'}
        _write_json(check_path, check)
        continue
      rate = rates[method]['images_per_second']
      train_images = min(args.max_examples or 50_000, 50_000) * TRAIN_IMAGES // 50_000
      epochs = epochs_for(rate, args.train_seconds, args.rate_margin, args.max_epochs, train_images)
      workdir = os.path.join(args.workdir, method)
      shutil.rmtree(workdir, ignore_errors=True)
      argv = [
        sys.executable,
        '-m',
        'gsg_jax.main',
        f'--config=configs/{method}.py:cifar10_zip',
        f'--workdir={workdir}',
        f'--config.data.path={os.path.abspath(args.zip)}',
        f'--config.data.cache_dir={data}',
        f'--config.data.max_examples={args.max_examples}',
        f'--config.model.width={args.width}',
        f'--config.model.dtype={args.dtype}',
        f'--config.batch_size={args.batch_size}',
        f'--config.num_epochs={epochs}',
        f'--config.eval_every_epochs={max(1, epochs // 4)}',
        '--config.log_every_steps=20',
      ]
      print(f'{method}: {epochs} epochs at {rate:.0f} img/s benchmarked', file=sys.stderr, flush=True)
      t0 = time.time()
      rc = run_until(argv, log, deadline)
      run = {
        'epochs_planned': epochs,
        'returncode': rc,
        'wall_seconds': time.time() - t0,
        'last_eval': _last_eval(workdir),
      }
      for name in ('metrics.jsonl', 'summary.json'):
        if os.path.exists(os.path.join(workdir, name)):
          shutil.copy(os.path.join(workdir, name), os.path.join(args.out, f'{method}_{name}'))
      check['runs'][method] = run
      check['elapsed_seconds'] = time.time() - t_start
      _write_json(check_path, check)
      print(
        f'{method}: rc {rc}, {run["wall_seconds"]:.0f} s, last eval {(run["last_eval"] or {}).get("knn_top1")}',
        file=sys.stderr,
        flush=True,
      )
  print(json.dumps(check, indent=2))


if __name__ == '__main__':
  main()
