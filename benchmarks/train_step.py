"""Train-step throughput: images/s (and FLOP/s from XLA's cost analysis) per method, batch size and device count.

    python benchmarks/train_step.py --methods simsiam,simsiam_gsg --batch-sizes 128,512 \
        --devices 1 --backbone resnet18 --width 16 --steps 10 --out benchmarks/results/cpu.json

One image = one source image (GSG augments and forwards four views of it,
SimSiam two), augmentation included, as in training. Device counts other
than the machine's own are simulated on the CPU by re-running this script
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

``--preset`` picks the whole model, heads, crop size and optimiser:
``cifar10`` (the paper's: ResNet-18, 2048-wide heads, 32×32 views),
``cifar10_cpu`` (the CPU experiments': ConvNet width 16, 256-wide heads,
24×24 views), ``quick``, or ``imagenet`` (ResNet-50, 224×224 views cropped on
the host, as the streamed input hands them over: a batch of
[B, views, 224, 224, 3] uint8, and a 1000-class probe); ``--backbone``/
``--width``, when given, override the preset's network. ``--remat off,on``
compiles each case without and with rematerialised ResNet blocks;
``--views-per-pass 0,1`` with the views in one network pass and in one pass
per view (``config.model.views_per_pass``).

Every row carries ``memory``: XLA's memory analysis of the compiled step, per
device (``argument_bytes``, ``output_bytes``, ``temp_bytes``,
``generated_code_bytes``, ``alias_bytes``, and ``peak_bytes`` = argument +
output + temp − alias: the step's state and batch, its new state, its scratch,
less the state buffers it donates and reuses). With ``--compile-only`` nothing
is allocated or run (the state and batch are shapes only), so the memory of a
step on a device not at hand is read here; on the CPU it is the CPU backend's
buffer assignment, close to but not the same as a GPU's. ``memory_table.py``
turns such rows into a table of what fits on 16, 40 and 80 GB devices.

Every timed row has ``first_loss`` and ``final_loss``: the loss of the case's first step (the initial state's,
before any update) and of its last (after every warm-up and timed step). Every case of a method starts from the
same state, batch and random key, so two runs that compute the same step give the same losses up to rounding.

Every run also times a dense float32 matrix product on the same devices
(``matmul_gflops``), the machine's practical peak for this kind of work, and
reports each step's FLOP/s as a fraction of it (``fraction_of_matmul``): a
CPU has no vendor peak to divide by, and a shared machine's speed drifts, so
the ratio measured in the same run is what compares across runs. Where a run
times SimSiam and SimSiam+GSG at the same batch, ``gsg_cost_ratio`` is GSG's
time per image over SimSiam's (2.0 is the cost of its four views alone).
"""

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402

# Dense peak FLOP/s by device kind and dtype, for the fraction-of-peak column (vendor figures, no sparsity).
PEAK_FLOPS = {
  ('NVIDIA H100 80GB HBM3', 'bfloat16'): 989e12,
  ('NVIDIA H100 80GB HBM3', 'float32'): 67e12,
  ('NVIDIA H200', 'bfloat16'): 989e12,
  ('NVIDIA H200', 'float32'): 67e12,
}


MATMUL_SIZE = 2048  # Large enough to run at the BLAS kernel's full speed, small enough to time in a second.


def matmul_gflops(repeats: int = 10) -> float:
  """GFLOP/s of a float32 [N, N] × [N, N] product on the default device, best of ``repeats``."""
  import jax
  import jax.numpy as jnp

  n = MATMUL_SIZE
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  product = jax.jit(lambda x: x @ x)
  jax.block_until_ready(product(a))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(product(a))
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best / 1e9


SOURCE_IMAGE_SIZE = 32  # The CIFAR presets' images, cropped on the device.
REMAT = {'off': False, 'on': True}


def input_shapes(config, batch_size: int, preset: str) -> tuple[tuple[int, ...], int]:
  """(shape of a batch's ``'image'``, number of classes) at ``preset``: the CIFAR presets hand the step whole 32×32
  images; ImageNet's training split is streamed, and hands it every view already cropped on the host."""
  if preset == 'imagenet':
    crop = config.augment.crop_size
    return (batch_size, config.data.stream_views, crop, crop, 3), 1000
  return (batch_size, SOURCE_IMAGE_SIZE, SOURCE_IMAGE_SIZE, 3), 10


def memory_row(compiled) -> dict | None:
  """XLA's memory analysis of ``compiled``, per device, in bytes; None where the backend gives none."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  sizes = {
    key: int(getattr(analysis, f'{key}_size_in_bytes'))
    for key in ('argument', 'output', 'temp', 'generated_code', 'alias')
  }
  row = {f'{key}_bytes': value for key, value in sizes.items()}
  # Live at once: the inputs, the outputs and the scratch, less the donated inputs whose buffers the outputs reuse.
  row['peak_bytes'] = sizes['argument'] + sizes['output'] + sizes['temp'] - sizes['alias']
  return row


def prepare(method: str, batch_size: int, args, remat: bool = False, views_per_pass: int | None = None) -> dict:
  """Compile one method's step at ``batch_size``: its row (FLOPs from XLA's cost analysis, memory from its memory
  analysis) and what timing needs. With ``args.compile_only`` the state and batch are shapes, never allocated."""
  import jax
  import numpy as np

  from gsg_jax import compiler, config_lib, parallel
  from gsg_jax.training import build_trainer

  config = config_lib.named_config(method, args.preset)  # configs/<method>.py
  config.model.backbone = args.backbone or config.model.backbone  # Given explicitly, or the preset's.
  config.model.width = args.width or config.model.width
  config.model.dtype = args.dtype
  config.model.remat = remat
  if views_per_pass is not None:  # Given explicitly, or the preset's.
    config.model.views_per_pass = views_per_pass
  config.batch_size = batch_size
  mesh = parallel.create_mesh()
  parallel.check_batch_size(batch_size, mesh)
  batch = parallel.batch_sharding(mesh)
  image_shape, num_classes = input_shapes(config, batch_size, args.preset)
  # With the online probe, as runs are.
  trainer = build_trainer(config, steps_per_epoch=1000, num_classes=num_classes)
  init, step = parallel.jit_trainer(trainer, mesh)
  init_shape = image_shape[-3:]
  if args.compile_only:
    state = jax.eval_shape(lambda key: init(key, init_shape), jax.random.key(0))
    images = {
      'image': jax.ShapeDtypeStruct(image_shape, np.uint8, sharding=batch),
      'label': jax.ShapeDtypeStruct((batch_size,), np.int32, sharding=batch),
    }
  else:
    state = init(jax.random.key(0), init_shape)
    data_rng = np.random.default_rng(0)
    images = jax.device_put(
      {
        'image': data_rng.integers(0, 256, image_shape, np.uint8),
        'label': data_rng.integers(0, num_classes, (batch_size,), np.int32),
      },
      batch,
    )
  rng = jax.random.key(1)

  t0 = time.perf_counter()
  compiled = step.lower(state, images, rng).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  device = jax.devices()[0].device_kind
  # XLA's count is per device program; the step does this much work on every device.
  row = {
    'method': method,
    'batch_size': batch_size,
    'devices': jax.device_count(),
    'batch_per_device': batch_size // jax.device_count(),
    'device_kind': device,
    'platform': jax.default_backend(),
    'preset': args.preset,
    'backbone': config.model.backbone,
    'width': config.model.width,
    'dtype': args.dtype,
    'remat': remat,
    'views_per_pass': config.model.views_per_pass,
    'compiler_options': compiler.options(mesh.devices.flat),  # None: jaxlib's defaults.
    'crop_size': config.augment.crop_size,
    'input_shape': list(image_shape),
    'views_per_image': trainer.method.num_views,
    'compile_seconds': compile_s,
    'flops_per_step': flops * jax.device_count(),
    'flops_per_image': flops * jax.device_count() / batch_size,
    'memory': memory_row(compiled),  # Per device.
  }
  return {'row': row, 'compiled': compiled, 'state': state, 'images': images, 'rng': rng}


def time_steps(case: dict, steps: int) -> float:
  """Seconds per step of ``steps`` steps of a prepared case (its state advances)."""
  import jax

  compiled, images, rng = case['compiled'], case['images'], case['rng']
  state = case['state']
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, images, rng)
    case.setdefault('first_metrics', metrics)  # The case's first step: the initial state's loss.
  jax.block_until_ready(metrics)
  case['state'], case['metrics'] = state, metrics
  return (time.perf_counter() - t0) / steps


def measure_all(cases, args) -> list[dict]:
  """Times every case ``args.repeats`` times, the cases in turn, and keeps each one's fastest repeat: on a shared
  machine a burst of other work slows one repeat, not all, and every case meets the same conditions."""
  import jax

  for case in cases:
    for _ in range(args.warmup):
      time_steps(case, 1)
  best = [float('inf')] * len(cases)
  for _ in range(args.repeats):
    for i, case in enumerate(cases):
      best[i] = min(best[i], time_steps(case, args.steps))
  rows = []
  for case, seconds in zip(cases, best):
    row = case['row']
    profile = None
    if args.profile:
      profile = profile_steps(
        case['compiled'],
        case['state'],
        case['images'],
        case['rng'],
        args.steps,
        os.path.join(
          args.profile,
          f'{row["method"]}_b{row["batch_size"]}_d{row["devices"]}_v{row["views_per_pass"]}' + '_remat' * row['remat'],
        ),
      )
      case['state'] = profile.pop('state')
    flops_per_s = row['flops_per_step'] / seconds
    peak = PEAK_FLOPS.get((row['device_kind'], args.dtype))
    rows.append(
      {
        **row,
        'step_seconds': seconds,
        'repeats': args.repeats,
        'images_per_second': row['batch_size'] / seconds,
        'flops_per_second': flops_per_s,
        'fraction_of_peak': flops_per_s / peak if peak else None,
        'first_loss': float(jax.device_get(case['first_metrics']['loss'])),  # Before any update.
        'final_loss': float(jax.device_get(case['metrics']['loss'])),
        'profile': profile,
      }
    )
  return rows


# The parts of a train step, as named in its ops' metadata: the network's modules (gsg_jax.models) and the named
# scopes of gsg_jax.training.step.
STEP_PARTS = (
  'views',
  'target_network',
  'backbone',
  'projector',
  'predictor',
  'loss',
  'probe',
  'optimizer',
  'target',
  'predictor_update',
)


def part_of(op_name: str) -> str:
  """The part of the step an op belongs to, from its ``op_name`` metadata: the first of ``STEP_PARTS`` among the
  scopes, with `` (backward)`` in a differentiated (transposed) computation, else ``other``.

  ``jit(train_step)/transpose(jvp(SiameseNetwork))/backbone/Conv_3/conv_general_dilated`` → ``backbone (backward)``.
  """
  components = op_name.split('/')[1:]
  names = [re.sub(r'^(?:\w+\()*([^()]*)\)*$', r'\1', c) for c in components]  # transpose(jvp(loss)) → loss
  part = next((n for n in names[:-1] if n in STEP_PARTS), 'other')
  return f'{part} (backward)' if part != 'other' and any(c.startswith('transpose(') for c in components) else part


def op_parts(hlo_text: str) -> dict[str, str]:
  """Each op of a compiled program's text (``Compiled.as_text()``) → its part of the step (``part_of``); a
  fusion takes the part that most of the ops fused into it have."""
  computation, inside, own, calls = None, collections.defaultdict(list), {}, {}
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$', line)
    if header:
      computation = header.group(1)
      continue
    op = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = ', line)
    if not op:
      continue
    name = re.search(r'op_name="([^"]+)"', line)
    if name:
      own[op.group(1)] = part_of(name.group(1))
      inside[computation].append(own[op.group(1)])
    called = re.search(r'calls=%?([\w.\-]+)', line)
    if called:
      calls[op.group(1)] = called.group(1)
  parts = dict(own)
  for op, computation in calls.items():
    if inside.get(computation):
      parts[op] = collections.Counter(inside[computation]).most_common(1)[0][0]
  return parts


# The record's columns: the parts of the step (STEP_PARTS, forward and backward) gathered into what they do.
PART_GROUPS = {
  'views': ('views',),
  'backbone': ('backbone',),
  'backbone_backward': ('backbone (backward)',),
  'heads': ('projector', 'projector (backward)', 'predictor', 'predictor (backward)'),
  'loss': ('loss', 'loss (backward)'),
  'probe': ('probe', 'probe (backward)'),
  'target_network': ('target_network',),  # BYOL's EMA network forward; SimSiam has none.
  'update': ('optimizer', 'target', 'predictor_update'),
}


def parts_record(rows: list[dict], command: str, commit: str | None) -> dict:
  """A results-schema table of the profiled rows' op time by part of the step (``--profile`` with
  ``--parts-record``): each group's share of the op time; the rest (ops outside every named part) in ``other``."""
  table = []
  for row in rows:
    parts = {p['name']: p['share'] for p in row['profile']['parts']}
    shares = {group: sum(parts.get(name, 0.0) for name in names) for group, names in PART_GROUPS.items()}
    table.append(
      {
        'network': f'{row["backbone"]} width {row["width"]}, {row["crop_size"]}²',
        'method': row['method'],
        'batch': row['batch_size'],
        'views_per_pass': row['views_per_pass'],
        'op_ms': 1e3 * row['profile']['op_seconds_per_step'],
        **shares,
        'other': 1.0 - sum(shares.values()),
      }
    )
  share = lambda key, label: {'key': key, 'label': label, 'format': '.0%'}
  return records.table(
    'throughput',
    "Where the step's time goes, by part of the step: "
    + ', '.join(dict.fromkeys(f'{r["network"]}, batch {r["batch"]}' for r in table)),
    order=3,
    command=command,
    commit=commit,
    source="the `profile` field of train_step.py's rows (a jax.profiler trace of the timed steps; each op's part "
    'from its metadata in the compiled program, `op_parts`)',
    columns=[
      {'key': 'network', 'label': 'network'},
      {'key': 'method', 'label': 'method'},
      {'key': 'batch', 'label': 'batch', 'format': 'd'},
      {'key': 'views_per_pass', 'label': 'views/pass', 'format': 'd'},
      {'key': 'op_ms', 'label': 'op time per step (ms)', 'format': '.1f'},
      share('views', 'views (augmentation)'),
      share('backbone', 'backbone forward'),
      share('backbone_backward', 'backbone backward'),
      share('heads', 'projector, predictor'),
      share('loss', 'loss'),
      share('probe', 'online probe'),
      share('target_network', 'target network'),
      share('update', 'optimiser, target, predictor update'),
      share('other', 'other'),
    ],
    rows=table,
    notes=[
      "Shares of the op time of a step, summed over the trace's ops. An op's part is the first Flax module or "
      'named scope of the train step in its metadata; a fusion takes the part most of its fused ops have, so work '
      'XLA fused across parts is counted in one of them: the copies that lay activations out for the weight '
      "gradients' convolutions fuse the forward BatchNorm and ReLU and count as the backbone's forward pass. The "
      'heads, loss and probe include their backward passes. On the CPU a convolution runs asynchronously on '
      "XLA's thread pool: the trace times its dispatch, and its work is counted in the ops that run beside it or "
      "wait for it, which are the backbone's own; the shares by part hold, the op kinds' (`top_kinds`) do not.",
    ],
  )


def profile_steps(compiled, state, images, rng, steps: int, log_dir: str) -> dict:
  """Runs ``steps`` steps under ``jax.profiler.trace``; sums the time of XLA's ops from the trace.

  The trace stays in ``log_dir`` (TensorBoard/XProf ``.xplane.pb`` and a
  Perfetto ``.json.gz``). The summary counts the events that name an HLO op
  (``args.hlo_op``: XLA's kernels/thunks on CPU, GPU and TPU), grouped by
  op kind (``convolution``, ``ynn_fusion``, ``copy``, ...: the name without
  its number), by part of the step (``parts``: ``op_parts``) and one by one: time per step and share of all op
  time. On a
  CPU, ops of one step run on several threads, so op time can exceed wall
  time; ``busy_fraction`` < 1 on an accelerator means gaps between ops. A CPU
  convolution (XLA's Eigen kernel) runs asynchronously: its event is the
  dispatch, and its work shows in the ops beside it, so op kinds misstate
  convolutions and copies there, while parts of the step stay apart.
  """
  import glob
  import gzip

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
  parts = op_parts(compiled.as_text())
  by_op, by_kind, by_part = {}, {}, {}
  for e in ops:
    by_op[e['name']] = by_op.get(e['name'], 0.0) + e['dur']
    kind = re.sub(r'[._]\d+$', '', e['name'])
    by_kind[kind] = by_kind.get(kind, 0.0) + e['dur']
    part = parts.get(e['name'], 'other')
    by_part[part] = by_part.get(part, 0.0) + e['dur']
  total = sum(by_op.values())
  wall = max(e['ts'] + e['dur'] for e in ops) - min(e['ts'] for e in ops)
  table = lambda d, n: [
    {'name': k, 'seconds_per_step': v / 1e6 / steps, 'share': v / total}
    for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]
  ]
  return {
    'state': state,
    'log_dir': log_dir,
    'steps': steps,
    'op_seconds_per_step': total / 1e6 / steps,
    'wall_seconds_per_step': wall / 1e6 / steps,
    'busy_fraction': total / wall,
    'parts': table(by_part, len(by_part)),
    'top_kinds': table(by_kind, 10),
    'top_ops': table(by_op, 10),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--methods', default='simsiam,simsiam_gsg', help='config names (configs/<name>.py)')
  parser.add_argument('--batch-sizes', default='128,256')
  parser.add_argument('--devices', default='', help='comma-separated simulated CPU device counts (CPU only)')
  parser.add_argument(
    '--preset',
    default='cifar10',
    choices=('cifar10', 'cifar10_cpu', 'quick', 'imagenet'),
    help='config preset for the network, heads, crop size and optimiser (32×32 source images; imagenet: '
    '224×224 views cropped on the host)',
  )
  parser.add_argument(
    '--remat',
    default='off',
    help='comma-separated: off, on (rematerialise ResNet blocks; the ConvNet has none); every case with each',
  )
  parser.add_argument(
    '--views-per-pass',
    default='',
    help='comma-separated config.model.views_per_pass values (0: all views in one network pass; default: the '
    "preset's); every case with each",
  )
  parser.add_argument('--backbone', default='', help="override the preset's backbone (e.g. resnet18, convnet)")
  parser.add_argument('--width', type=int, default=0, help="override the preset's width")
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument(
    '--repeats',
    type=int,
    default=3,
    help='timed repeats of --steps steps, the cases in turn; the fastest repeat is kept',
  )
  parser.add_argument('--out', default='benchmarks/results/train_step.json')
  parser.add_argument(
    '--profile',
    default='',
    help='directory: also trace the timed steps with jax.profiler and summarise the costliest ops in the JSON',
  )
  parser.add_argument(
    '--parts-record',
    default='',
    help='with --profile: also write a results-schema record of op time by part of the step (--out: its rows)',
  )
  parser.add_argument(
    '--compile-only',
    action='store_true',
    help='compile and count FLOPs without running: the work of a step on a device not at hand',
  )
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.parts_record and not args.profile:
    parser.error('--parts-record needs --profile')

  remats = [REMAT[r] for r in args.remat.split(',')]
  if args.devices and not args.child:  # One child process per simulated device count.
    argv = [
      f'--methods={args.methods}',
      f'--batch-sizes={args.batch_sizes}',
      f'--preset={args.preset}',
      f'--backbone={args.backbone}',
      f'--width={args.width}',
      f'--dtype={args.dtype}',
      f'--remat={args.remat}',
      f'--views-per-pass={args.views_per_pass}',
      f'--steps={args.steps}',
      f'--warmup={args.warmup}',
      f'--repeats={args.repeats}',
      f'--profile={args.profile}',
    ] + ['--compile-only'] * args.compile_only
    rows = [row for n in args.devices.split(',') for row in child_rows(int(n), argv)]
  else:
    cases = [
      prepare(method, int(b), args, remat, int(k) if k else None)
      for method in args.methods.split(',')
      for b in args.batch_sizes.split(',')
      for remat in remats
      for k in args.views_per_pass.split(',')
    ]
    rows = [case['row'] for case in cases] if args.compile_only else measure_all(cases, args)
    for row in rows:
      speed = (
        ''
        if args.compile_only
        else f'{row["images_per_second"]:9.1f} img/s  {row["flops_per_second"] / 1e9:9.1f} GFLOP/s  '
      )
      memory = f'  {row["memory"]["peak_bytes"] / 2**30:.2f} GiB/device' if row['memory'] else ''
      passes = f' {row["views_per_pass"]} views/pass' if row['views_per_pass'] else ''
      print(
        f'{row["method"]:>14}  batch {row["batch_size"]:>5}  {row["devices"]} {row["device_kind"]}'
        f'{" remat" * row["remat"]}{passes}: {speed}{row["flops_per_image"] / 1e9:.2f} GFLOP/image{memory}',
        file=sys.stderr,
      )
    if not args.compile_only:
      peak = matmul_gflops()
      print(f'dense float32 matmul {MATMUL_SIZE}²: {peak:.1f} GFLOP/s', file=sys.stderr)
      for row in rows:
        row['matmul_gflops'] = peak
        row['fraction_of_matmul'] = row['flops_per_second'] / 1e9 / peak
  if args.out == '-':
    print(json.dumps(rows))
    return
  if not args.compile_only:
    add_ratios(rows)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(
      {
        'date': datetime.date.today().isoformat(),
        'command': ' '.join(sys.argv),
        'commit': records.git_commit(),
        'cpu': records.cpu_model(),
        'results': rows,
      },
      f,
      indent=2,
    )
  print(f'wrote {args.out}', file=sys.stderr)
  if args.parts_record:
    record = parts_record(rows, ' '.join(['python', *sys.argv]), records.git_commit())
    record['results_file'] = os.path.relpath(
      os.path.abspath(args.out), os.path.dirname(os.path.abspath(args.parts_record))
    )
    records.write(record, args.parts_record)
    print(f'wrote {args.parts_record}', file=sys.stderr)


def write_record(record: dict, rows: list[dict], out: str, raw: str = '') -> None:
  """Writes a results-schema ``record`` made from train_step rows to ``out``, and with ``raw`` the ``rows`` (every
  field) to that file too, named in the record as its ``results_file`` so the docs know where its table came from."""
  if raw:
    record['results_file'] = os.path.relpath(os.path.abspath(raw), os.path.dirname(os.path.abspath(out)))
    with open(raw, 'w') as f:
      json.dump({k: record[k] for k in ('date', 'command', 'commit')} | {'results': rows}, f, indent=1)
  records.write(record, out)
  print(f'wrote {out}', file=sys.stderr)


def child_rows(devices: int, argv: list[str], xla_flags: str = '', jaxlib_defaults: bool = False) -> list[dict]:
  """The rows of this script run with ``argv`` in a child process on ``devices`` simulated CPU devices; ``xla_flags``
  (e.g. ``'--xla_cpu_use_onednn=true'``) go into the child's ``XLA_FLAGS`` after the device count. With
  ``jaxlib_defaults`` the step compiles without ``gsg_jax.compiler``'s options."""
  flags = f'--xla_force_host_platform_device_count={devices} {xla_flags}'.strip()
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu')
  if jaxlib_defaults:
    from gsg_jax.compiler import ENV_SWITCH

    env[ENV_SWITCH] = '0'
  return script_rows(os.path.abspath(__file__), [*argv, '--child'], env)


def script_rows(script: str, argv: list[str], env: dict, cwd: str | None = None) -> list[dict]:
  """The rows that ``script`` (this file, or another tree's copy of it) prints with ``--out -``, run as a child
  process with ``env``."""
  out = subprocess.run(
    [sys.executable, script, *argv, '--out', '-'], env=env, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


def add_ratios(rows) -> None:
  """``gsg_cost_ratio`` on every GSG row with a plain row of the same batch, devices and network: time per image
  over the plain method's (SimSiam's for SimSiam+GSG, BYOL's for BYOL+GSG)."""
  key = lambda r, method: (
    method,
    r['batch_size'],
    r['devices'],
    r['backbone'],
    r['width'],
    r.get('remat', False),
    r.get('views_per_pass', 0),
  )
  plain = {key(r, r['method']): r for r in rows}
  for r in rows:
    if r['method'].endswith('_gsg'):
      base = plain.get(key(r, r['method'][: -len('_gsg')]))
      if base:
        r['gsg_cost_ratio'] = base['images_per_second'] / r['images_per_second']
        print(
          f'{r["method"]} / {base["method"]}, batch {r["batch_size"]}, {r["devices"]} device(s), '
          f'{r.get("views_per_pass", 0)} views/pass: '
          f'{r["gsg_cost_ratio"]:.2f}× the time per image',
          file=sys.stderr,
        )


if __name__ == '__main__':
  main()
