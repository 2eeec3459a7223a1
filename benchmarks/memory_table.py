"""What fits on a 16, 40 or 80 GB accelerator: each train step's memory, compiled on the CPU without running it.

    python benchmarks/memory_table.py --out benchmarks/results/throughput/memory.json

For every preset (``cifar10``: ResNet-18 CIFAR variant at 32×32; ``imagenet``:
ResNet-50 at 224×224, views cropped on the host), method, device count and
remat setting, ``train_step.py --compile-only`` compiles the step at the
global batch (default 512, split over the devices) in a child process with
that many simulated CPU devices, and reads XLA's memory analysis of it, per
device. The step's peak is argument + output + temp − alias (its state and
batch shard, the new state, the scratch, less the donated state buffers that
the new state reuses). The record is a results-schema table
(``docs/development/results_schema.md``) with one row per configuration and a
yes/no column per device size: the peak is at most ``--usable`` of the
device's memory (default 0.9: the CUDA context, cuDNN/cuBLAS workspaces and
fragmentation take the rest; JAX preallocates 0.75 of a GPU unless
``XLA_PYTHON_CLIENT_MEM_FRACTION`` says more).

XLA:CPU's buffer assignment is not a GPU's (another scheduler, other fusions
and convolution layouts): the figures are an estimate made before renting an
accelerator, not a measurement on one.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402
import train_step  # noqa: E402

GIB = 2**30
BACKBONES = {'resnet18': 'ResNet-18', 'resnet50': 'ResNet-50', 'convnet': 'ConvNet'}
METHODS = {'simsiam': 'SimSiam', 'simsiam_gsg': 'SimSiam+GSG', 'byol': 'BYOL', 'byol_gsg': 'BYOL+GSG'}


def compile_rows(args) -> list[dict]:
  """train_step.py's --compile-only rows for every preset, device count, method and remat setting."""
  rows = []
  for preset in args.presets.split(','):
    argv = [
      f'--methods={args.methods}',
      f'--batch-sizes={args.batch_size}',
      f'--preset={preset}',
      f'--backbone={args.backbone}',
      f'--width={args.width}',
      f'--dtype={args.dtype}',
      f'--remat={args.remat}',
      '--compile-only',
    ]
    for devices in args.devices.split(','):
      new = train_step.child_rows(int(devices), argv)
      for row in new:
        row['preset'] = preset
        peak = row['memory']['peak_bytes'] / GIB if row['memory'] else float('nan')
        print(
          f'{preset:>9} {row["method"]:>12} {devices} device(s){" remat" * row["remat"]:6}: {peak:7.2f} GiB/device',
          file=sys.stderr,
        )
      rows += new
  return rows


def remat_not_shown(row: dict, rows: list[dict]) -> bool:
  """True for a remat row whose temp is not below the same configuration's without remat: XLA:CPU's buffer
  assignment did not show remat's saving there (its one-device programs, where no collective orders the
  recomputation, see the record's notes), so the row's fits are not judged."""
  if not row['remat']:
    return False
  same = lambda r: all(r[k] == row[k] for k in ('preset', 'method', 'devices', 'backbone', 'width', 'dtype'))
  plain = next((r for r in rows if same(r) and not r['remat']), None)
  return plain is not None and row['memory']['temp_bytes'] >= plain['memory']['temp_bytes']


def table_row(row: dict, capacities, usable: float, judged: bool = True) -> dict:
  """One table row of a train_step.py row: per-device sizes in GiB and whether the peak fits each capacity (None
  where not ``judged``)."""
  memory = row['memory']
  out = {
    'network': f'{BACKBONES.get(row["backbone"], row["backbone"])} width {row["width"]}, '
    f'{row["crop_size"]}² ({row["preset"]})',
    'method': METHODS.get(row['method'], row['method']),
    'dtype': row['dtype'],
    'devices': row['devices'],
    'remat': row['remat'],
    'batch_per_device': row['batch_per_device'],
  }
  for key in ('argument', 'output', 'alias', 'temp', 'peak'):
    out[f'{key}_gib'] = memory[f'{key}_bytes'] / GIB
  for capacity in capacities:
    out[f'fits_{capacity}'] = memory['peak_bytes'] <= usable * capacity * GIB if judged else None
  return out


def memory_record(rows: list[dict], capacities, usable: float, command: str, batch_size: int) -> dict:
  """The results-schema table of ``rows`` (train_step.py's rows with ``memory``)."""
  columns = [
    {'key': 'network', 'label': 'network'},
    {'key': 'method', 'label': 'method'},
    {'key': 'dtype', 'label': 'dtype'},
    {'key': 'devices', 'label': 'devices', 'format': 'd'},
    {'key': 'remat', 'label': 'remat'},
    {'key': 'batch_per_device', 'label': 'batch per device', 'format': 'd'},
    {'key': 'argument_gib', 'label': 'argument GiB', 'format': '.2f'},
    {'key': 'output_gib', 'label': 'output GiB', 'format': '.2f'},
    {'key': 'alias_gib', 'label': 'alias GiB', 'format': '.2f'},
    {'key': 'temp_gib', 'label': 'temp GiB', 'format': '.2f'},
    {'key': 'peak_gib', 'label': 'peak GiB per device', 'format': '.2f'},
  ] + [{'key': f'fits_{c}', 'label': f'fits {c} GB'} for c in capacities]
  return records.table(
    'throughput',
    f'Train-step memory per device at global batch {batch_size}, compiled on the CPU without running',
    order=20,
    command=command,
    machine_text=f'{records.cpu_model()}, 2 CPU cores shared (compilation only; nothing is run)',
    source="XLA's memory analysis (jax.stages.Compiled.memory_analysis) of each step compiled by "
    'benchmarks/train_step.py --compile-only, read by benchmarks/memory_table.py',
    columns=columns,
    rows=[table_row(row, capacities, usable, not remat_not_shown(row, rows)) for row in rows],
    notes=[
      'Per device, in GiB (2^30 bytes). Peak = argument + output + temp − alias: the replicated state and the '
      "device's batch shard, the new state, the step's scratch, less the donated state buffers the new state "
      'reuses. Generated code is not counted (XLA:CPU reports none).',
      f'Fits: the peak is at most {usable:g} × the nominal size in GiB (the rest for the CUDA context, '
      'cuDNN/cuBLAS workspaces and fragmentation). JAX preallocates 0.75 of a GPU unless '
      f'XLA_PYTHON_CLIENT_MEM_FRACTION={usable:g} is set.',
      "XLA:CPU's memory analysis: the CPU backend's buffer assignment (its scheduler, fusions and convolution "
      "layouts), which approximates but is not a GPU's. Devices other than one are simulated CPU devices "
      '(XLA_FLAGS=--xla_force_host_platform_device_count=N); the program is the SPMD one each device would run.',
      "Remat on one device: XLA:CPU's one-device program recomputes the blocks (its FLOP count grows by a "
      'sixth to a fifth) but its buffer assignment does not come out lower than without remat; on 8 devices, '
      'where the all-reduces of the per-view BatchNorm statistics order the recomputation inside the backward '
      'pass, remat cuts the peak 1.9–2.4×. A GPU compiler schedules for memory and is expected to show the saving on '
      "one device too, but that is not measured here: those rows' fits are left blank (–).",
      'The train step only: a training run also holds the next batch in flight and, at evaluation, the '
      "evaluation's own buffers. The ImageNet rows take the streamed input's batch, every view cropped on the host "
      '(uint8 [B, views, 224, 224, 3]).',
    ],
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--presets', default='cifar10,imagenet')
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-size', type=int, default=512, help='global batch, split over the devices')
  parser.add_argument('--devices', default='1,8', help='comma-separated simulated device counts')
  parser.add_argument('--remat', default='off,on')
  parser.add_argument('--backbone', default='', help="override the presets' backbone")
  parser.add_argument('--width', type=int, default=0, help="override the presets' width")
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--capacities', default='16,40,80', help='device memory sizes, GB')
  parser.add_argument('--usable', type=float, default=0.9, help='fraction of a device the step may take')
  parser.add_argument('--raw', default='', help="also write train_step.py's rows (every field) to this JSON file")
  parser.add_argument('--out', default='benchmarks/results/throughput/memory.json')
  args = parser.parse_args(argv)

  rows = compile_rows(args)
  capacities = [int(c) for c in args.capacities.split(',')]
  argv = sys.argv[1:] if argv is None else argv
  command = ' '.join(['python', os.path.relpath(os.path.abspath(__file__)), *argv])
  record = memory_record(rows, capacities, args.usable, command, args.batch_size)
  train_step.write_record(record, rows, args.out, args.raw)


if __name__ == '__main__':
  main()
