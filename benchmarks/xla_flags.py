"""Which XLA:CPU compiler flags speed up the train step, and whether they keep its numerics.

    python benchmarks/xla_flags.py --out benchmarks/results/throughput/xla_flags.json
    python benchmarks/xla_flags.py --flag-sets='default;--xla_cpu_use_onednn=true' --out /tmp/xla_flags.json

(``--flag-sets=`` with its ``=``: argparse reads a separate value that starts with ``--`` as an option.) With
``--raw``, the rows are saved after every child process, and ``--resume`` measures only what that file lacks: a
run cut short (or one network at a time, to keep each run short) goes on where it stopped.

For every network (``--networks``: ``preset[:backbone:width]@batch``) and flag
set (``--flag-sets``: ``;``-separated, each a space-separated list of XLA
flags; ``default`` is none), ``train_step.py`` times ``--methods`` on one
device in a child process whose ``XLA_FLAGS`` carry the set, without ``gsg_jax.compiler``'s options (which
came out of this benchmark), so that every set is read against jaxlib's own defaults. The record's rows
give each case's images/s, its speed-up over the default's (the same network
and method without extra flags), its FLOP/s as a fraction of a dense float32
matrix product timed in the same child, and the loss of its last step with its
relative difference from the default's. Every child starts from the same state,
batch and random key and runs the same number of steps (warm-up and timed), so
a flag set that keeps the numerics gives the default's loss up to float32
rounding. A flag set whose child fails (an unknown flag, a compiler error, a
crash) gets rows that say so; the others still run.

The flags are read by the installed jaxlib's XLA (``xla/debug_options_flags.cc``
in openxla/xla); what each one in ``FLAG_SETS`` does is in ``FLAG_NOTES``. The
record is a results-schema table (``docs/development/results_schema.md``).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402
import train_step  # noqa: E402
from memory_table import BACKBONES, METHODS  # noqa: E402

DEFAULT = 'default'
# Each set against the installed jaxlib's defaults (0.10.2): XNNPACK on, and YNNPACK (XNNPACK's successor) for
# single convolutions, single dots and reductions (LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION, INDIVIDUAL_DOT,
# REDUCE); every other convolution and dot by XLA's own Eigen kernels.
FLAG_SETS = (
  DEFAULT,
  '--xla_cpu_use_xnnpack=true',
  '--xla_cpu_use_onednn=true',
  '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',
  '--xla_cpu_experimental_ynn_fusion_type=',
)
FLAG_NOTES = {
  '--xla_cpu_use_xnnpack=true': 'XNNPACK for supported operations; already on by default in this jaxlib, so the '
  "default's program again (a check of the timing noise)",
  '--xla_cpu_use_onednn=true': 'oneDNN thunks for matmul and convolution fusions',
  '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution': "removes single convolutions from YNNPACK's "
  "default fusion types: every convolution by XLA's Eigen kernels, dots and reductions still by YNNPACK",
  '--xla_cpu_experimental_ynn_fusion_type=': 'no YNNPACK at all (an empty list of fusion types)',
  '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY': 'greedy extraction of '
  'XNNPACK-compatible subgraphs into XNNPACK graphs (default: disabled)',
  '--xla_cpu_prefer_vector_width=128': "128-bit vectors in XLA's LLVM code (default 256, AVX2 here)",
  '--xla_cpu_enable_fast_math=true': 'LLVM fast-math in generated code (honouring NaNs, infinities, division and '
  'functions unless told otherwise)',
  '--xla_cpu_multi_thread_eigen=false': "single-threaded Eigen calls (runtime only: the default's program)",
  '--xla_cpu_experimental_onednn_custom_call=true': 'oneDNN custom-call thunks',
}


def parse_network(network: str) -> tuple[str, str, str, str]:
  """``preset[:backbone:width][@batch]`` → (preset, backbone, width, batch); empty where not given."""
  network, _, batch = network.partition('@')
  preset, backbone, width = (network.split(':') + ['', ''])[:3]
  return preset, backbone, width, batch


def network_argv(network: str, args, **options) -> list[str]:
  """train_step.py's arguments for one ``preset[:backbone:width][@batch]`` network: ``args``' methods, batch size
  (where the network names none) and timing, and ``options`` by name (``dtype='float32'`` → ``--dtype=float32``)."""
  preset, backbone, width, batch = parse_network(network)
  return [
    f'--methods={args.methods}',
    f'--batch-sizes={batch or args.batch_size}',
    f'--preset={preset}',
    f'--backbone={backbone}',
    f'--width={width or 0}',
    f'--steps={args.steps}',
    f'--warmup={args.warmup}',
    f'--repeats={args.repeats}',
    *(f'--{name.replace("_", "-")}={value}' for name, value in options.items()),
  ]


def flags_of(flag_set: str) -> str:
  return '' if flag_set == DEFAULT else flag_set


def measured_rows(args, flag_sets: list[str], rows: list[dict] | None = None, save=None) -> list[dict]:
  """train_step.py's rows for every network and flag set, one child process each; a child that fails gives one
  row per method with ``error`` instead. ``rows``: rows measured before (``--resume``), whose network and flag set
  are not run again; ``save(rows)`` is called after every child."""
  rows = list(rows or [])
  done = {(r['network'], r['xla_flags']) for r in rows}
  for network in args.networks.split(','):
    argv = network_argv(network, args, dtype=args.dtype, views_per_pass=args.views_per_pass)
    for flag_set in flag_sets:
      if (network, flag_set) in done:
        print(f'{network}: {flag_set}: measured before', file=sys.stderr, flush=True)
        continue
      print(f'{network}: {flag_set} ...', file=sys.stderr, flush=True)
      t0 = time.perf_counter()
      try:
        new = train_step.child_rows(1, argv, flags_of(flag_set), jaxlib_defaults=True)
      except subprocess.CalledProcessError as e:
        how = f'killed by signal {-e.returncode}' if e.returncode < 0 else f'exit status {e.returncode}'
        new = [{'method': m, 'error': f'the child failed ({how})'} for m in args.methods.split(',')]
      except (ValueError, IndexError) as e:  # No JSON rows on the child's last line.
        new = [{'method': m, 'error': f'no rows from the child ({e})'} for m in args.methods.split(',')]
      for row in new:
        row.update(network=network, xla_flags=flag_set)
        outcome = row.get('error') or f'{row["images_per_second"]:.1f} img/s, loss {row["final_loss"]!r}'
        print(f'  {row["method"]:>12}: {outcome}', file=sys.stderr, flush=True)
      print(f'  ({time.perf_counter() - t0:.0f} s)', file=sys.stderr, flush=True)
      rows += new
      if save:
        save(rows)
  return rows


def network_label(network: str, rows: list[dict]) -> str:
  """The network's name from any of its measured rows (``network`` spec otherwise)."""
  row = next((r for r in rows if r['network'] == network and 'error' not in r), None)
  if row is None:
    return network
  name = BACKBONES.get(row['backbone'], row['backbone'])
  return f'{name} width {row["width"]}, {row["crop_size"]}² ({row["preset"]}), batch {row["batch_size"]}'


def relative_difference(value: float, reference: float) -> float:
  return abs(value - reference) / abs(reference) if reference else abs(value - reference)


def table_rows(rows: list[dict]) -> list[dict]:
  """One table row per measured row, in order: each against the default flag set's row of its network and method."""
  default = {(r['network'], r['method']): r for r in rows if r['xla_flags'] == DEFAULT and 'error' not in r}
  labels = {r['network']: network_label(r['network'], rows) for r in rows}
  out = []
  for r in rows:
    base = default.get((r['network'], r['method']))
    row = {
      'network': labels[r['network']],
      'method': METHODS.get(r['method'], r['method']),
      'xla_flags': r['xla_flags'],
      'compiled': 'error' not in r,
    }
    if 'views_per_pass' in r:
      row['views_per_pass'] = r['views_per_pass']
    if 'error' in r:
      row['error'] = r['error']
    else:
      row.update(
        images_per_second=r['images_per_second'],
        speedup=r['images_per_second'] / base['images_per_second'] if base else None,
        fraction_of_matmul=r['fraction_of_matmul'],
        compile_seconds=r['compile_seconds'],
        first_loss_difference=relative_difference(r['first_loss'], base['first_loss']) if base else None,
        final_loss=r['final_loss'],
        loss_difference=relative_difference(r['final_loss'], base['final_loss']) if base else None,
      )
    out.append(row)
  return out


def flags_record(rows: list[dict], command: str, steps: int, tolerance: float = 1e-4) -> dict:
  """The results-schema table of ``rows`` (train_step.py's timed rows, with ``network`` and ``xla_flags``); ``steps``
  is how many steps each case ran (warm-up and timed), ``tolerance`` the relative loss difference judged."""
  columns = [
    {'key': 'network', 'label': 'network'},
    {'key': 'method', 'label': 'method'},
    {'key': 'xla_flags', 'label': 'XLA flags'},
    {'key': 'views_per_pass', 'label': 'views per network pass (0: all)'},
    {'key': 'compiled', 'label': 'compiled and ran'},
    {'key': 'images_per_second', 'label': 'images/s', 'format': '.1f'},
    {'key': 'speedup', 'label': 'speed-up over default', 'format': '.2f'},
    {'key': 'fraction_of_matmul', 'label': 'fraction of matmul', 'format': '.2f'},
    {'key': 'compile_seconds', 'label': 'compile s', 'format': '.0f'},
    {
      'key': 'first_loss_difference',
      'label': "first step's loss, relative difference from default's",
      'format': '.1e',
    },
    {'key': 'final_loss', 'label': 'final loss', 'format': '.7f'},
    {'key': 'loss_difference', 'label': "final loss, relative difference from default's", 'format': '.1e'},
    {'key': 'error', 'label': 'error'},
  ]
  measured = [r for r in rows if 'error' not in r]
  matmul = [round(r['matmul_gflops']) for r in measured]
  flag_sets = list(dict.fromkeys(r['xla_flags'] for r in rows))
  explained = [f'{f}: {FLAG_NOTES[f]}' for f in flag_sets if f in FLAG_NOTES]
  table = table_rows(rows)
  compared = [r for r in table if r['xla_flags'] != DEFAULT and r.get('loss_difference') is not None]
  beyond = lambda key: sum(r[key] > tolerance for r in compared)
  same = [
    f
    for f in flag_sets
    if f != DEFAULT
    and any(r['xla_flags'] == f for r in compared)
    and all(r['first_loss_difference'] == r['loss_difference'] == 0 for r in compared if r['xla_flags'] == f)
  ]
  notes = [
    f'Numerics: every case starts from the same state, batch and random key and runs the same {steps} steps '
    "(warm-up and timed). The first step's loss is the initial state's (the forward pass and augmentation only); "
    "the final loss is the last step's, after every update, where rounding differences have compounded. A flag "
    "set that keeps the numerics gives the default's losses up to float32 rounding; the tests give one compiled "
    f'step against another way of computing it a relative {tolerance:g} (tests/test_gsg_cost.py: two compiled '
    'train steps at rel 1e-4; most numerical tests use rtol 1e-4 to 1e-5). Beyond it: '
    f"{beyond('first_loss_difference')} of {len(compared)} rows in the first step's loss, "
    f'{beyond("loss_difference")} in the final loss.',
    'The losses are near 0 (minus a cosine similarity, near 0 this early in training), so the relative '
    'difference divides by a small number: a strict measure.',
  ]
  if same:
    notes.append(
      'The same losses as the default, bit for bit, in every case (the same program, or a setting that changes '
      f'no arithmetic): {"; ".join(same)}.'
    )
  passes = sorted({r['views_per_pass'] for r in measured if 'views_per_pass' in r})
  notes += [
    "Every child compiles without gsg_jax.compiler's options (GSG_JAX_XLA_CPU_OPTIONS=0): each row is jaxlib's "
    "defaults plus its flags. The project's own options are one of these rows' settings: convolutions out of "
    'YNNPACK, as --xla_cpu_experimental_ynn_fusion_type=-individual_convolution does.',
    "Speed-up: images/s over the default flag set's, the same network and method; each flag set in its own "
    'child process, the methods timed in turn and the fastest of the repeats kept. Fraction of matmul: the '
    f"step's FLOP/s (XLA's cost analysis) over a dense float32 {train_step.MATMUL_SIZE}² matrix product timed "
    f'in the same child ({min(matmul)}–{max(matmul)} GFLOP/s).',
    "The installed jaxlib's XLA:CPU defaults: XNNPACK on; YNNPACK for single convolutions, single dots and "
    "reductions (--xla_cpu_experimental_ynn_fusion_type's default list: individual_convolution, individual_dot, "
    "reduce), XLA's Eigen kernels for the convolutions YNNPACK does not take (in the ResNet-18 width-16 step, "
    'YNNPACK takes 44 of its 59 convolutions, every weight gradient among them).',
  ] + explained
  return records.table(
    'throughput',
    'XLA:CPU compiler flags: train-step images/s and final loss against the default flags'
    + {(0,): ', all views in one network pass', (1,): ', one network pass per view'}.get(tuple(passes), ''),
    order=16 if passes != [1] else 17,
    command=command,
    machine_text=f'{records.cpu_model()}, 2 CPU cores, one JAX device (other jobs paused while timing)',
    source='benchmarks/train_step.py rows, one child process per network and flag set (XLA_FLAGS), paired '
    'with the default flag set by benchmarks/xla_flags.py',
    columns=columns,
    rows=table,
    notes=notes,
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
    '--networks',
    default='cifar10_cpu@256,cifar10:resnet18:16@128',
    help='comma-separated preset[:backbone:width][@batch], each flag set timed on each in its own process',
  )
  parser.add_argument(
    '--flag-sets',
    default=';'.join(FLAG_SETS),
    help="';'-separated sets of space-separated XLA flags; 'default' (no extra flags) is added first if missing",
  )
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-size', type=int, default=128, help='for networks without @batch')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument(
    '--views-per-pass', default='', help="config.model.views_per_pass (default: each preset's own; 0: one pass)"
  )
  parser.add_argument('--tolerance', type=float, default=1e-4, help="relative loss difference from the default's")
  parser.add_argument(
    '--raw',
    default='',
    help="also write train_step.py's rows (every field) to this JSON file, after every child process",
  )
  parser.add_argument(
    '--resume',
    action='store_true',
    help='keep the rows already in --raw (a run cut short) and measure only the network and flag set pairs '
    'missing there',
  )
  parser.add_argument('--out', default='benchmarks/results/throughput/xla_flags.json')
  args = parser.parse_args(argv)

  flag_sets = [s.strip() for s in args.flag_sets.split(';') if s.strip()]
  if DEFAULT not in flag_sets:
    flag_sets.insert(0, DEFAULT)
  argv = sys.argv[1:] if argv is None else argv
  command = records.command(__file__, argv)
  before, commands = [], []
  if args.resume:
    with open(args.raw) as f:
      raw = json.load(f)
    before, commands = raw['results'], raw['command'].splitlines()
  commands.append(command)
  date, commit = datetime.date.today().isoformat(), records.git_commit()

  def save(rows):
    if args.raw:
      with open(args.raw, 'w') as f:
        json.dump({'date': date, 'command': '\n'.join(commands), 'commit': commit, 'results': rows}, f, indent=1)

  t0 = time.perf_counter()
  rows = measured_rows(args, flag_sets, before, save)
  print(f'measured in {time.perf_counter() - t0:.0f} s', file=sys.stderr)
  record = flags_record(rows, '\n'.join(commands), args.warmup + args.repeats * args.steps, args.tolerance)
  for row in record['rows']:
    figures = (
      f'{row["images_per_second"]:7.1f} img/s  ×{row["speedup"] or float("nan"):.2f}  '
      f'loss diff {row["loss_difference"] if row["loss_difference"] is not None else float("nan"):.1e}'
      if row['compiled']
      else row['error']
    )
    print(f'{row["network"]:>48} {row["method"]:>12} {row["xla_flags"]:>64}: {figures}', file=sys.stderr)
  train_step.write_record(record, rows, args.out, args.raw)


if __name__ == '__main__':
  main()
