"""What GSG costs per image against SimSiam, with the views in one network pass and in one pass per view.

    python benchmarks/gsg_cost.py --out benchmarks/results/throughput/gsg_cost.json

GSG forwards four views of every image, SimSiam two, so GSG's step has
exactly twice SimSiam's FLOPs per image and, run as well, costs 2.0× its time
per image. For every network (``--networks``: ``preset`` or
``preset:backbone:width``), batch size and ``config.model.views_per_pass``
value, ``train_step.py`` times both methods in one process, their cases in
turn, and the record's rows give images/s of each, the ratio of their times
per image, and each step's FLOP/s as a fraction of a dense float32 matrix
product timed in the same run (the machine's practical peak).

One pass puts B·V rows through every convolution; one pass per view puts B.
Both compute the same function (per-view BatchNorm; ``models.train_pass``).
The record is a results-schema table (``docs/development/results_schema.md``).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402
import train_step  # noqa: E402
from memory_table import BACKBONES  # noqa: E402

PAIRS = (('simsiam', 'simsiam_gsg'), ('byol', 'byol_gsg'))


def measured_rows(args) -> list[dict]:
  """train_step.py's rows for every network, on one device, each network in its own child process."""
  rows = []
  for network in args.networks.split(','):
    network, _, batch_sizes = network.partition('@')
    preset, backbone, width = (network.split(':') + ['', ''])[:3]
    argv = [
      f'--methods={args.methods}',
      f'--batch-sizes={batch_sizes.replace("+", ",") or args.batch_sizes}',
      f'--preset={preset}',
      f'--backbone={backbone}',
      f'--width={width or 0}',
      f'--views-per-pass={args.views_per_pass}',
      f'--steps={args.steps}',
      f'--warmup={args.warmup}',
      f'--repeats={args.repeats}',
    ]
    rows += train_step.child_rows(1, argv)
  return rows


def table_rows(rows: list[dict]) -> list[dict]:
  """One table row per (network, pair of methods, batch, views per pass) measured on both sides."""
  key = lambda r: (r['preset'], r['backbone'], r['width'], r['batch_size'], r['views_per_pass'])
  by_method = {(r['method'],) + key(r): r for r in rows}
  out = []
  for r in rows:
    for plain, gsg in PAIRS:
      other = by_method.get((gsg,) + key(r))
      if r['method'] != plain or other is None:
        continue
      out.append(
        {
          'network': f'{BACKBONES.get(r["backbone"], r["backbone"])} width {r["width"]}, {r["crop_size"]}² '
          f'({r["preset"]})',
          'methods': f'{plain} → {gsg}',
          'batch_size': r['batch_size'],
          'views_per_pass': r['views_per_pass'] or 'all',
          'rows_per_convolution': r['batch_size'] * (r['views_per_pass'] or other['views_per_image']),
          'plain_images_per_second': r['images_per_second'],
          'gsg_images_per_second': other['images_per_second'],
          'gsg_time_ratio': r['images_per_second'] / other['images_per_second'],
          'plain_fraction_of_matmul': r['fraction_of_matmul'],
          'gsg_fraction_of_matmul': other['fraction_of_matmul'],
        }
      )
  return out


def compiler_note(rows: list[dict]) -> str:
  """The record's sentence on the XLA compiler options its rows were compiled with (train_step.py's rows say)."""
  options = {json.dumps(r.get('compiler_options'), sort_keys=True) for r in rows}
  if options == {'null'}:
    return "Compiled with jaxlib's default options."
  return "Compiled with gsg_jax.compiler's options: " + '; '.join(sorted(options)) + '.'


def cost_record(rows: list[dict], command: str) -> dict:
  """The results-schema table of ``rows`` (train_step.py's timed rows)."""
  columns = [
    {'key': 'network', 'label': 'network'},
    {'key': 'methods', 'label': 'plain → GSG'},
    {'key': 'batch_size', 'label': 'batch', 'format': 'd'},
    {'key': 'views_per_pass', 'label': 'views per pass'},
    {'key': 'rows_per_convolution', 'label': 'GSG rows per convolution', 'format': 'd'},
    {'key': 'plain_images_per_second', 'label': 'plain images/s', 'format': '.0f'},
    {'key': 'gsg_images_per_second', 'label': 'GSG images/s', 'format': '.0f'},
    {'key': 'gsg_time_ratio', 'label': 'GSG ÷ plain, time per image', 'format': '.2f'},
    {'key': 'plain_fraction_of_matmul', 'label': 'plain, fraction of matmul', 'format': '.2f'},
    {'key': 'gsg_fraction_of_matmul', 'label': 'GSG, fraction of matmul', 'format': '.2f'},
  ]
  matmul = sorted({round(r['matmul_gflops']) for r in rows})
  return records.table(
    'throughput',
    "GSG's time per image over the plain method's, the views in one network pass or one pass per view",
    order=15,
    command=command,
    machine_text=f'{records.cpu_model()}, 2 CPU cores, one JAX device',
    source='benchmarks/train_step.py rows (both methods of a network timed in one process, their cases in '
    'turn, the fastest of the repeats), paired by benchmarks/gsg_cost.py',
    columns=columns,
    rows=table_rows(rows),
    notes=[
      "GSG forwards four views per image and the plain method two: 2.00 is the cost of GSG's views alone.",
      'Views per pass: all (one network pass over every view row) or 1 (config.model.views_per_pass = 1, one pass '
      'per view); both compute the same step. Rows per convolution: the batch times the views in a pass.',
      f"Fraction of matmul: the step's FLOP/s (XLA's cost analysis) over a dense float32 {train_step.MATMUL_SIZE}² "
      f'matrix product timed in the same run ({", ".join(str(m) for m in matmul)} GFLOP/s).',
      'Images/s count source images, augmentation and the online probe included, as in training.',
      compiler_note(rows),
    ],
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
    '--networks',
    default='cifar10_cpu,cifar10:resnet18:16@128',
    help='comma-separated preset[:backbone:width][@batch+batch...], each timed in its own process (the batch '
    'sizes after @ replace --batch-sizes for that network)',
  )
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-sizes', default='128,256')
  parser.add_argument('--views-per-pass', default='0,1')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--raw', default='', help="also write train_step.py's rows (every field) to this JSON file")
  parser.add_argument('--out', default='benchmarks/results/throughput/gsg_cost.json')
  args = parser.parse_args(argv)

  rows = measured_rows(args)
  argv = sys.argv[1:] if argv is None else argv
  command = ' '.join(['python', os.path.relpath(os.path.abspath(__file__)), *argv])
  record = cost_record(rows, command)
  for row in record['rows']:
    print(
      f'{row["network"]:>40} {row["methods"]:>24} batch {row["batch_size"]:>4} {row["views_per_pass"]!s:>3}/pass: '
      f'{row["plain_images_per_second"]:7.0f} → {row["gsg_images_per_second"]:6.0f} img/s, '
      f'{row["gsg_time_ratio"]:.2f}×',
      file=sys.stderr,
    )
  train_step.write_record(record, rows, args.out, args.raw)


if __name__ == '__main__':
  main()
