"""benchmarks/records.py: the header every benchmark's results record shares, accepted by the docs generator."""

import datetime
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402
import records  # noqa: E402

COLUMNS = [{'key': 'network', 'label': 'network'}, {'key': 'ms', 'label': 'ms', 'format': '.1f'}]
ROWS = [{'network': 'convnet 16²', 'ms': 1.5}]


def git(cwd, *args) -> str:
  return subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_table_fills_the_header_and_the_generator_accepts_it():
  record = records.table(
    'throughput', 'A table', command='python x', source='a test', columns=COLUMNS, rows=ROWS, notes=('a note',)
  )
  assert record['schema'] == records.SCHEMA == generate_results.SCHEMA
  assert record['date'] == datetime.date.today().isoformat()
  assert record['commit'] == records.git_commit()
  assert record['machine'] == records.machine() and record['machine'].endswith(f', {os.cpu_count()} CPUs')
  assert record['order'] == 0 and record['notes'] == ['a note']  # A list, as JSON writes it.
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'throughput', 'a.json'))


def test_table_takes_a_commit_machine_wording_and_further_fields():
  record = records.table(
    'throughput',
    'A table',
    command='python x',
    source='a test',
    columns=COLUMNS,
    rows=ROWS,
    order=7,
    commit='abc1234',
    machine_text='a CPU, shared',
    results_file='a_raw.json',
  )
  assert (record['commit'], record['machine'], record['order']) == ('abc1234', 'a CPU, shared', 7)
  assert record['results_file'] == 'a_raw.json'
  assert records.machine('shared') == f'{records.machine()}, shared'


@pytest.mark.parametrize(
  'flags,isa',
  [
    ('fpu sse2 avx avx2 fma', 'AVX2'),
    ('avx2 avx512f avx512bw', 'AVX-512'),
    ('avx2 avx512f avx512_bf16', 'AVX-512 BF16'),
    ('avx512f avx512_bf16 amx_tile amx_bf16', 'AVX-512 BF16 AMX'),
    ('fpu sse2 avx', None),
  ],
)
def test_vector_isa_names_the_widest_vector_instructions(flags, isa):
  assert records.vector_isa(flags.split()) == isa


def test_command_is_a_shell_line_that_gives_the_arguments_back():
  import shlex

  argv = ['--conditions', 'AMD EPYC, nothing else running', '--flag-sets=default;--x=1']
  line = records.command(os.path.join(REPO, 'benchmarks', 'peer_pytorch.py'), argv)
  assert line.startswith('python benchmarks/peer_pytorch.py ')
  assert shlex.split(line)[2:] == argv


def test_learning_margins_record_is_accepted_by_the_generator():
  import learning_margins

  rows = [{'run': 'kcl', 'seed': 0, 'knn_init': 24.1, 'gain': 2.8}]
  record = learning_margins.margins_record('kcl', rows, 'python benchmarks/learning_margins.py kcl --seeds=0')
  assert record['rows'] == rows and record['study'] == 'quick'
  generate_results.check_record(record, os.path.join(REPO, 'benchmarks', 'results', 'quick', 'a.json'))


def test_git_commit_is_this_checkouts_short_hash():
  try:
    short = git(REPO, 'rev-parse', '--short', 'HEAD')
  except (OSError, subprocess.CalledProcessError):
    pytest.skip('not a git checkout')
  commit = records.git_commit()
  assert re.fullmatch(r'[0-9a-f]{4,40}(\+dirty)?', commit), commit
  assert commit.removesuffix('+dirty') == short


def test_git_commit_is_dirty_only_for_changed_tracked_files(tmp_path):
  git(tmp_path, 'init', '-q')
  (tmp_path / 'a.txt').write_text('a\n')
  git(tmp_path, 'add', 'a.txt')
  git(tmp_path, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'a')
  short = git(tmp_path, 'rev-parse', '--short', 'HEAD')
  (tmp_path / 'untracked.txt').write_text('b\n')
  assert records.git_commit(str(tmp_path)) == short  # Untracked files are not part of the code that ran.
  (tmp_path / 'a.txt').write_text('changed\n')
  assert records.git_commit(str(tmp_path)) == f'{short}+dirty'


def test_git_commit_is_none_outside_a_repository(tmp_path, monkeypatch):
  monkeypatch.setenv('GIT_CEILING_DIRECTORIES', str(tmp_path.parent))  # Git must not find a repository above.
  assert records.git_commit(str(tmp_path)) is None


def test_write_makes_the_folders_and_ends_with_a_newline(tmp_path):
  path = tmp_path / 'results' / 'throughput' / 'a.json'
  record = {'title': 'convnet 16², GSG ÷ plain', 'rows': ROWS}
  records.write(record, str(path))
  text = path.read_text(encoding='utf-8')
  assert text.endswith('}\n') and '16², GSG ÷ plain' in text  # UTF-8 as it stands, not \u escapes.
  assert json.loads(text) == record
