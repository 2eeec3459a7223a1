"""The train step in bfloat16 against float32: images/s and the first loss, the two timed in turn.

    python benchmarks/dtype_ab.py --networks cifar10:resnet18:16@128 --rounds 2 \\
        --out benchmarks/results/throughput/bfloat16_cpu.json

``config.model.dtype`` sets the network's compute type (parameters stay float32). Each round runs
``train_step.py`` once per network in a child process with ``--dtype=float32``, then with ``--dtype=bfloat16``, so
that a shared machine's drift falls on both alike; the ratio is the median over rounds of the round's bfloat16 ÷
float32, the images/s each dtype's fastest round (``step_ab.table_rows``, with float32 as the base). Both start
from the same state, batch and key: the first loss's relative difference is what bfloat16's rounding does to one
forward pass. On a CPU it says whether the processor's bfloat16 instructions (``records.vector_isa``: AVX-512
BF16, AMX) reach XLA:CPU's kernels.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402
import step_ab  # noqa: E402
import train_step  # noqa: E402
from xla_flags import network_argv  # noqa: E402

DTYPES = {'base': 'float32', 'change': 'bfloat16'}  # step_ab's sides: the reference first.
COLUMNS = {
  'network': {'label': 'network'},
  'method': {'label': 'method'},
  'base_images_per_second': {'label': 'float32 images/s', 'format': '.1f'},
  'images_per_second': {'label': 'bfloat16 images/s', 'format': '.1f'},
  'speedup': {'label': 'bfloat16 ÷ float32 (median of rounds)', 'format': '.2f'},
  'speedup_lowest': {'label': 'lowest round', 'format': '.2f'},
  'speedup_highest': {'label': 'highest round', 'format': '.2f'},
  'first_loss_difference': {'label': 'first loss, relative difference', 'format': '.1e'},
}


def measured_rows(args) -> list[dict]:
  """train_step.py's rows, each with ``network``, ``side`` ('base': float32, 'change': bfloat16) and ``round``."""
  rows = []
  for round_ in range(args.rounds):
    for network in args.networks.split(','):
      for side, dtype in DTYPES.items():
        for row in train_step.child_rows(1, network_argv(network, args, dtype=dtype)):
          row.update(network=network, side=side, round=round_)
          label = f'round {round_} {network} {dtype:>8} {row["method"]:>12}'
          print(f'{label}: {row["images_per_second"]:8.1f} img/s', file=sys.stderr, flush=True)
          rows.append(row)
  return rows


def dtype_record(rows: list[dict], command: str, order: int = 37) -> dict:
  return records.table(
    'throughput',
    f'bfloat16 against float32 on {records.cpu_model() or "this CPU"}',
    order=order,
    command=command,
    source="benchmarks/dtype_ab.py: train_step.py's rows with --dtype=float32 and --dtype=bfloat16, timed in turn "
    'in child processes, one device',
    columns=[{'key': key, **column} for key, column in COLUMNS.items()],
    rows=[{k: r[k] for k in COLUMNS} for r in step_ab.table_rows(rows)],
    notes=[
      "config.model.dtype = 'bfloat16': the network computes in bfloat16, its parameters and the optimiser stay "
      'float32. Each round times float32, then bfloat16; the ratio is the median over rounds, the images/s each '
      "dtype's fastest round. The first loss is one forward pass from the same state and batch."
    ],
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
    '--networks', default='cifar10:resnet18:16@128', help='comma-separated preset[:backbone:width][@batch]'
  )
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-size', type=int, default=128, help='for networks without @batch')
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--raw', default='', help="also write every child's rows to this JSON file")
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)
  rows = measured_rows(args)
  record = dtype_record(rows, records.command(__file__, argv))
  for row in record['rows']:
    print(f'{row["network"]:>48} {row["method"]:>12}: ×{row["speedup"]:.2f}', file=sys.stderr)
  train_step.write_record(record, rows, args.out, args.raw)


if __name__ == '__main__':
  main()
