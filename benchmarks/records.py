"""What every results record made by a benchmark shares: the schema's header, the commit and the CPU.

A record is a results-schema file (``docs/development/results_schema.md``) that ``docs/generate_results.py`` turns
into a section of its study's page. The benchmarks build their tables; this module fills in the rest the same way
for all of them.
"""

import datetime
import json
import os
import shlex
import subprocess
import sys

SCHEMA = 'gsg_jax.results/1'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(cwd: str = REPO) -> str | None:
  """The checkout's short commit, with ``+dirty`` when tracked files have uncommitted changes; None outside git."""
  try:
    commit = subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ['git', 'status', '--porcelain', '--untracked-files=no'], cwd=cwd, capture_output=True, text=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ('+dirty' if dirty else '')


def command(script: str, argv: list[str] | None = None) -> str:
  """The shell line that ran ``script`` (a path) with ``argv`` (default: this process's), quoted so that it can be
  pasted back into a shell, the script named from the repository's root."""
  args = sys.argv[1:] if argv is None else argv
  return shlex.join(['python', os.path.relpath(os.path.abspath(script), REPO), *args])


def cpu_model() -> str | None:
  """The CPU's model name from ``/proc/cpuinfo`` and, in brackets, its widest vector instructions (``vector_isa``);
  None where there is no model name. Machines named alike differ here: XLA's and PyTorch's kernels do not gain alike
  from AVX-512, so a ratio between them is read with it."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  model = next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), None)
  flags = next((line.split(':', 1)[1].split() for line in lines if line.startswith('flags')), [])
  isa = vector_isa(flags)
  return f'{model} ({isa})' if model and isa else model


def vector_isa(flags) -> str | None:
  """'AVX-512' (with 'BF16' and 'AMX' where present), 'AVX2' or None, from a CPU's ``/proc/cpuinfo`` flags."""
  flags = set(flags)
  if 'avx512f' in flags:
    extras = [name for flag, name in (('avx512_bf16', 'BF16'), ('amx_tile', 'AMX')) if flag in flags]
    return ' '.join(['AVX-512'] + extras)
  return 'AVX2' if 'avx2' in flags else None


def machine(detail: str = '') -> str:
  """``'<CPU model> (<vector ISA>), <n> CPUs'``, then ``detail`` (e.g. how the machine was shared) after a comma."""
  text = f'{cpu_model() or "unknown CPU"}, {os.cpu_count()} CPUs'
  return f'{text}, {detail}' if detail else text


def table(
  study: str,
  title: str,
  *,
  command: str,
  source: str,
  columns: list[dict],
  rows: list[dict],
  notes=(),
  order: int = 0,
  commit: str | None = None,
  machine_text: str | None = None,
  **fields,
) -> dict:
  """A results-schema table dated today; ``commit`` defaults to this checkout's, ``machine_text`` to ``machine()``.
  ``fields``: further keys of the schema (``figure``, ``floors``, ``results_file``)."""
  return {
    'schema': SCHEMA,
    'study': study,
    'title': title,
    'order': order,
    'command': command,
    'date': datetime.date.today().isoformat(),
    'commit': git_commit() if commit is None else commit,
    'machine': machine() if machine_text is None else machine_text,
    'source': source,
    'columns': columns,
    'rows': rows,
    'notes': list(notes),
    **fields,
  }


def write(record, path: str) -> None:
  """``record`` as indented JSON at ``path`` (its folder made), ending in a newline; UTF-8 as it stands (labels'
  ``²`` and ``÷`` readable in a diff), which is how ``docs/generate_results.py`` reads it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1, ensure_ascii=False)
    f.write('\n')
