"""Train-step throughput: images/s (and FLOP/s from XLA's cost analysis) per method, batch size and device count.

    python benchmarks/train_step.py --methods simsiam,simsiam_gsg --batch-sizes 128,512 \
        --devices 1 --backbone resnet18 --width 16 --steps 10 --out benchmarks/results/cpu.json

One image = one source image (GSG augments and forwards four views of it,
SimSiam two), augmentation included, as in training. Device counts other
than the machine's own are simulated on the CPU by re-running this script
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

``--preset`` picks the heads, crop size and optimiser: ``cifar10`` (the
paper's, 2048-wide heads, 32×32 views) or ``quick`` (the README's CPU run:
256-wide heads, 24×24 views); ``--backbone``/``--width`` override its model.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

# Dense peak FLOP/s by device kind and dtype, for the fraction-of-peak column (vendor figures, no sparsity).
PEAK_FLOPS = {
    ('NVIDIA H100 80GB HBM3', 'bfloat16'): 989e12, ('NVIDIA H100 80GB HBM3', 'float32'): 67e12,
    ('NVIDIA H200', 'bfloat16'): 989e12, ('NVIDIA H200', 'float32'): 67e12,
}


def measure(method: str, batch_size: int, args) -> dict:
  import jax
  import numpy as np
  from gsg_jax import config_lib, parallel
  from gsg_jax.training import build_trainer

  config = config_lib.named_config(method, args.preset)  # configs/<method>.py
  config.model.backbone = args.backbone or config.model.backbone
  config.model.width = args.width or config.model.width
  config.model.dtype = args.dtype
  config.batch_size = batch_size
  mesh = parallel.create_mesh()
  parallel.check_batch_size(batch_size, mesh)
  batch = parallel.batch_sharding(mesh)
  trainer = build_trainer(config, steps_per_epoch=1000, num_classes=10)  # With the online probe, as runs are.
  init, step = parallel.jit_trainer(trainer, mesh)
  state = init(jax.random.key(0), (32, 32, 3))
  data_rng = np.random.default_rng(0)
  images = jax.device_put({'image': data_rng.integers(0, 256, (batch_size, 32, 32, 3), np.uint8),
                           'label': data_rng.integers(0, 10, (batch_size,), np.int32)}, batch)
  rng = jax.random.key(1)

  t0 = time.perf_counter()
  compiled = step.lower(state, images, rng).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  device = jax.devices()[0].device_kind
  # XLA's count is per device program; the step does this much work on every device.
  row = {'method': method, 'batch_size': batch_size, 'devices': jax.device_count(), 'device_kind': device,
         'platform': jax.default_backend(), 'preset': args.preset, 'backbone': config.model.backbone,
         'width': config.model.width, 'dtype': args.dtype, 'crop_size': config.augment.crop_size,
         'views_per_image': trainer.method.num_views, 'compile_seconds': compile_s,
         'flops_per_step': flops * jax.device_count(), 'flops_per_image': flops * jax.device_count() / batch_size}
  if args.compile_only:
    return row
  for _ in range(args.warmup):
    state, metrics = compiled(state, images, rng)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, images, rng)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - t0) / args.steps
  profile = None
  if args.profile:
    profile = profile_steps(compiled, state, images, rng, args.steps,
                            os.path.join(args.profile, f'{method}_b{batch_size}_d{jax.device_count()}'))
    state = profile.pop('state')
  flops_per_s = row['flops_per_step'] / seconds
  peak = PEAK_FLOPS.get((device, args.dtype))
  return {**row, 'step_seconds': seconds, 'images_per_second': batch_size / seconds,
          'flops_per_second': flops_per_s, 'fraction_of_peak': flops_per_s / peak if peak else None,
          'final_loss': float(metrics['loss']), 'profile': profile}


def profile_steps(compiled, state, images, rng, steps: int, log_dir: str) -> dict:
  """Runs ``steps`` steps under ``jax.profiler.trace``; sums the time of XLA's ops from the trace.

  The trace stays in ``log_dir`` (TensorBoard/XProf ``.xplane.pb`` and a
  Perfetto ``.json.gz``). The summary counts the events that name an HLO op
  (``args.hlo_op``: XLA's kernels/thunks on CPU, GPU and TPU), grouped by
  op kind (``convolution``, ``ynn_fusion``, ``copy``, ...: the name without
  its number) and one by one: time per step and share of all op time. On a
  CPU, ops of one step run on several threads, so op time can exceed wall
  time; ``busy_fraction`` < 1 on an accelerator means gaps between ops.
  """
  import glob
  import gzip
  import re
  import jax
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    for _ in range(steps):
      state, metrics = compiled(state, images, rng)
    jax.block_until_ready(metrics)
  paths = glob.glob(os.path.join(log_dir, '**', 'perfetto_trace.json.gz'), recursive=True)
  if not paths:
    return {'state': state, 'log_dir': log_dir, 'error': 'no Perfetto trace written'}
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  ops = [e for e in events if e.get('ph') == 'X' and 'hlo_op' in (e.get('args') or {})]
  if not ops:
    return {'state': state, 'log_dir': log_dir, 'error': 'the trace has no HLO op events'}
  by_op, by_kind = {}, {}
  for e in ops:
    by_op[e['name']] = by_op.get(e['name'], 0.0) + e['dur']
    kind = re.sub(r'[._]\d+$', '', e['name'])
    by_kind[kind] = by_kind.get(kind, 0.0) + e['dur']
  total = sum(by_op.values())
  wall = max(e['ts'] + e['dur'] for e in ops) - min(e['ts'] for e in ops)
  table = lambda d, n: [{'name': k, 'seconds_per_step': v / 1e6 / steps, 'share': v / total}
                        for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]
  return {'state': state, 'log_dir': log_dir, 'steps': steps, 'op_seconds_per_step': total / 1e6 / steps,
          'wall_seconds_per_step': wall / 1e6 / steps, 'busy_fraction': total / wall,
          'top_kinds': table(by_kind, 10), 'top_ops': table(by_op, 10)}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--methods', default='simsiam,simsiam_gsg', help='config names (configs/<name>.py)')
  parser.add_argument('--batch-sizes', default='128,256')
  parser.add_argument('--devices', default='', help='comma-separated simulated CPU device counts (CPU only)')
  parser.add_argument('--preset', default='cifar10', choices=('cifar10', 'quick'),
                      help="config preset for the heads, crop size and optimiser (32×32 source images)")
  parser.add_argument('--backbone', default='resnet18', help="'' for the preset's")
  parser.add_argument('--width', type=int, default=16, help="0 for the preset's")
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--out', default='benchmarks/results/train_step.json')
  parser.add_argument('--profile', default='', help='directory: also trace the timed steps with jax.profiler '
                                                     'and summarise the costliest ops in the JSON')
  parser.add_argument('--compile-only', action='store_true',
                      help='compile and count FLOPs without running: the work of a step on a device not at hand')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.devices and not args.child:  # One child process per simulated device count.
    rows = []
    for n in args.devices.split(','):
      env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}', JAX_PLATFORMS='cpu')
      argv = [f'--methods={args.methods}', f'--batch-sizes={args.batch_sizes}', f'--preset={args.preset}',
              f'--backbone={args.backbone}',
              f'--width={args.width}', f'--dtype={args.dtype}', f'--steps={args.steps}', f'--warmup={args.warmup}',
              f'--profile={args.profile}'] + ['--compile-only'] * args.compile_only
      out = subprocess.run([sys.executable, __file__, *argv, '--child', '--out', '-'], env=env, check=True,
                           stdout=subprocess.PIPE, text=True).stdout
      rows += json.loads(out.strip().splitlines()[-1])
  else:
    rows = []
    for method in args.methods.split(','):
      for b in (int(s) for s in args.batch_sizes.split(',')):
        row = measure(method, b, args)
        speed = ('' if args.compile_only else
                 f"{row['images_per_second']:9.1f} img/s  {row['flops_per_second'] / 1e9:9.1f} GFLOP/s  ")
        print(f"{row['method']:>14}  batch {b:>5}  {row['devices']} {row['device_kind']}: {speed}"
              f"{row['flops_per_image'] / 1e9:.2f} GFLOP/image", file=sys.stderr)
        rows.append(row)
  if args.out == '-':
    print(json.dumps(rows))
    return
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'date': datetime.date.today().isoformat(), 'command': ' '.join(sys.argv), 'results': rows}, f, indent=2)
  print(f'wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
  main()
