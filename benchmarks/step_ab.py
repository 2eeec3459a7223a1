"""The train step before and after a code change: two trees' images/s, timed in turn on the same machine.

    python benchmarks/step_ab.py --base 6d0383d --networks cifar10_cpu@128,cifar10:resnet18:16@128 \\
        --rounds 3 --title "..." --out benchmarks/results/throughput/ab_<change>.json

``--base`` is a commit: its tree is exported (``git archive``) into a temporary
folder. The other side is this checkout as it stands, committed or not. Each
round runs ``train_step.py`` once per network from each tree, in a child
process whose ``PYTHONPATH`` puts that tree's ``gsg_jax`` first, base then
change, so that a shared machine's drift falls on both sides alike. A case's
speed-up is the median over rounds of (change ÷ base) within a round; the
images/s shown are each side's fastest round. Both sides start from the same
state, batch and key and run the same steps, so a change meant to keep the
numerics gives the base's first loss up to float32 rounding, and a final loss
that differs by what the updates grew from that rounding: the record keeps
both relative differences. The record is a results-schema table
(``docs/development/results_schema.md``); ``--raw`` keeps every child's rows.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402
import train_step  # noqa: E402
from xla_flags import network_argv, network_label, relative_difference  # noqa: E402

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_tree(commit: str, into: str) -> str:
  """The tree of ``commit`` written under ``into``; a bad commit raises ``ValueError`` with git's message."""
  archive = subprocess.run(['git', 'archive', '--format=tar', commit], cwd=CHECKOUT, capture_output=True)
  if archive.returncode:
    raise ValueError(f'git archive {commit}: {archive.stderr.decode().strip()}')
  subprocess.run(['tar', '-x', '-C', into], input=archive.stdout, check=True)
  return into


def resolve(commit: str) -> str:
  """``commit``'s short hash; ``ValueError`` with git's message when it names none."""
  out = subprocess.run(
    ['git', 'rev-parse', '--short', f'{commit}^{{commit}}'], cwd=CHECKOUT, capture_output=True, text=True
  )
  if out.returncode:
    raise ValueError(f'{commit}: {out.stderr.strip()}')
  return out.stdout.strip()


def tree_rows(tree: str, argv: list[str]) -> list[dict]:
  """``train_step.py`` of ``tree`` run with ``argv`` on one device, importing that tree's ``gsg_jax``."""
  path = os.pathsep.join(p for p in (tree, os.environ.get('PYTHONPATH', '')) if p)
  script = os.path.join(tree, 'benchmarks', 'train_step.py')
  return train_step.script_rows(script, argv, dict(os.environ, PYTHONPATH=path, JAX_PLATFORMS='cpu'), cwd=tree)


def measured_rows(args, trees: dict[str, str]) -> list[dict]:
  """train_step.py's rows, each with ``network``, ``side`` ('base' or 'change') and ``round``."""
  rows = []
  for round_ in range(args.rounds):
    for network in args.networks.split(','):
      argv = network_argv(network, args)
      for side, tree in trees.items():
        for row in tree_rows(tree, argv):
          row.update(network=network, side=side, round=round_)
          print(
            f'round {round_} {network} {side:>6} {row["method"]:>12}: {row["images_per_second"]:8.1f} img/s',
            file=sys.stderr,
            flush=True,
          )
          rows.append(row)
  return rows


def table_rows(rows: list[dict]) -> list[dict]:
  """One row per network and method: each side's best images/s, the median paired speed-up, the loss difference."""
  out = []
  for network in dict.fromkeys(r['network'] for r in rows):
    for method in dict.fromkeys(r['method'] for r in rows if r['network'] == network):
      case = [r for r in rows if r['network'] == network and r['method'] == method]
      by_round = {}
      for r in case:
        by_round.setdefault(r['round'], {})[r['side']] = r
      ratios = [
        s['change']['images_per_second'] / s['base']['images_per_second'] for s in by_round.values() if len(s) == 2
      ]
      base = max((r for r in case if r['side'] == 'base'), key=lambda r: r['images_per_second'])
      change = max((r for r in case if r['side'] == 'change'), key=lambda r: r['images_per_second'])
      out.append(
        {
          'network': network_label(network, case),
          'method': method,
          'views_per_pass': change['views_per_pass'],
          'base_images_per_second': base['images_per_second'],
          'images_per_second': change['images_per_second'],
          'speedup': statistics.median(ratios),
          'speedup_lowest': min(ratios),
          'speedup_highest': max(ratios),
          'first_loss_difference': relative_difference(change['first_loss'], base['first_loss']),
          'loss_difference': relative_difference(change['final_loss'], base['final_loss']),
        }
      )
  return out


def ab_record(rows: list[dict], command: str, title: str, base: str, change: str, notes=(), order: int = 35) -> dict:
  return records.table(
    'throughput',
    title,
    order=order,
    command=command,
    commit=change,
    source=f"benchmarks/step_ab.py: train_step.py's rows of the base commit {base} and of commit {change}, "
    'timed in turn in child processes, one device',
    columns=[
      {'key': 'network', 'label': 'network'},
      {'key': 'method', 'label': 'method'},
      {'key': 'views_per_pass', 'label': 'views per pass (0: all)', 'format': 'd'},
      {'key': 'base_images_per_second', 'label': f'images/s at {base}', 'format': '.1f'},
      {'key': 'images_per_second', 'label': 'images/s after', 'format': '.1f'},
      {'key': 'speedup', 'label': 'speed-up (median of rounds)', 'format': '.2f'},
      {'key': 'speedup_lowest', 'label': 'lowest round', 'format': '.2f'},
      {'key': 'speedup_highest', 'label': 'highest round', 'format': '.2f'},
      {'key': 'first_loss_difference', 'label': 'first loss, relative difference', 'format': '.1e'},
      {'key': 'loss_difference', 'label': 'final loss, relative difference', 'format': '.1e'},
    ],
    rows=table_rows(rows),
    notes=[
      "Each round times both trees in turn; the speed-up is the median over rounds of the round's ratio (the lowest "
      "and highest beside it), the images/s each side's fastest round. The same steps from the same state: a "
      'change that keeps the numerics gives the same first loss up to float32 rounding; the final loss, after '
      'every warm-up and timed update, carries the rounding differences those updates grew.',
      *notes,
    ],
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--base', required=True, help='the commit to compare this checkout against')
  parser.add_argument(
    '--networks',
    default='cifar10_cpu@128,cifar10:resnet18:16@128',
    help='comma-separated preset[:backbone:width][@batch]',
  )
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-size', type=int, default=128, help='for networks without @batch')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--title', default='', help="the record's title: what the change is")
  parser.add_argument('--order', type=int, default=35, help="the record's place on the throughput page")
  parser.add_argument('--note', action='append', default=[], help='a sentence for the notes (repeatable)')
  parser.add_argument('--raw', default='', help="also write every child's rows to this JSON file")
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)

  command = records.command(__file__, argv)
  base = resolve(args.base)
  change = records.git_commit()
  with tempfile.TemporaryDirectory(prefix='step_ab_') as tmp:
    trees = {'base': export_tree(args.base, tmp), 'change': CHECKOUT}
    rows = measured_rows(args, trees)
  record = ab_record(
    rows, command, args.title or f'The train step against commit {base}', base, change, args.note, args.order
  )
  for row in record['rows']:
    print(
      f'{row["network"]:>48} {row["method"]:>12}: {row["base_images_per_second"]:8.1f} → '
      f'{row["images_per_second"]:8.1f} img/s  ×{row["speedup"]:.2f}',
      file=sys.stderr,
    )
  train_step.write_record(record, rows, args.out, args.raw)


if __name__ == '__main__':
  main()
