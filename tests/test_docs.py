"""The documentation site: generated pages equal what their data generate, the results schema is enforced, the
notebook's rendered copy is the example's code, and the README and pages cite no internal issue numbers.

Fast (a few seconds): the docs build itself runs in CI after the tests (.ci/run).
"""

import glob
import os
import re
import sys

import nbformat
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'docs'))
import generate_results  # noqa: E402


@pytest.fixture(scope='module')
def generated():
  return generate_results.generate()


def test_committed_pages_equal_what_the_data_generate(generated):
  pages, _ = generated
  stale = generate_results.differences(pages)
  assert not stale, f'run `python docs/generate_results.py` and commit: {stale}'


def test_every_study_has_its_page(generated):
  pages, _ = generated
  studies = generate_results.load_records()
  assert {'quick', 'cifar10_cpu', 'no_predictor', 'predictors', 'batch_study', 'linear_dynamics'} <= set(studies)
  for study, records in studies.items():
    page = pages[f'results/{study}.md']
    for record in records:
      assert f'Data: `{record["_path"]}`' in page and record['command'] in page, (study, record['_path'])
    assert f'results/{study}.md' in pages and study in pages['results/index.md']


def test_every_result_file_of_a_study_is_read(generated):
  """In a folder with results records, every JSON is a record or a file that a record names: none is ignored."""
  named, folders = set(), set()
  for records in generate_results.load_records().values():
    for record in records:
      folder = os.path.dirname(record['_path'])
      folders.add(folder)
      named.add(record['_path'])
      if 'results_file' in record:
        named.add(os.path.join(folder, record['results_file']))
      if record.get('_floors_source'):
        named.add(re.search(r'`([^`]+\.json)`', record['_floors_source']).group(1))
  on_disk = {os.path.relpath(p, REPO) for folder in folders for p in glob.glob(os.path.join(REPO, folder, '*.json'))}
  assert on_disk - named == set()


def _record(**changes):
  record = {
    'schema': generate_results.SCHEMA,
    'study': 'demo',
    'title': 't',
    'command': 'c',
    'date': 'd',
    'commit': None,
    'source': 's',
    'columns': [{'key': 'run', 'label': 'run'}, {'key': 'knn_top1', 'label': 'kNN', 'format': '.1f'}],
    'rows': [{'run': 'a', 'knn_top1': 40.0}],
  }
  record.update(changes)
  return record


def test_schema_rejects_what_a_reader_could_not_trust():
  check = lambda record: generate_results.check_record(
    record, os.path.join(REPO, 'benchmarks', 'results', 'demo', 'x.json')
  )
  check(_record())
  bad = _record()
  del bad['command']
  with pytest.raises(generate_results.SchemaError, match='command'):
    check(bad)
  with pytest.raises(generate_results.SchemaError, match='folder'):
    check(_record(study='other'))
  with pytest.raises(generate_results.SchemaError, match='not columns'):
    check(_record(rows=[{'run': 'a', 'linear_top1': 1.0}]))
  curves = _record(
    kind='curves',
    x={'label': 'epoch'},
    y={'label': 'kNN', 'metric': 'knn_top1'},
    series=[{'label': 'a', 'x': [0, 1], 'y': [20.0, 30.0]}],
  )
  with pytest.raises(generate_results.SchemaError, match='floors'):
    check(curves)
  check(dict(curves, floors=[{'label': 'raw pixels', 'y': 25.0}]))


def test_table_cells_floors_and_derived_columns():
  record = _record(
    columns=[
      {'key': 'run', 'label': 'run'},
      {'key': 'knn_top1', 'label': 'kNN', 'format': '.1f'},
      {
        'key': 'gap',
        'label': 'gap',
        'format': '+.1f',
        'derived': {'op': 'minus_floor', 'of': 'knn_top1', 'floor': 'raw pixels'},
      },
    ],
    floors=[{'label': 'raw pixels', 'values': {'knn_top1': 37.5}}],
    rows=[{'run': 'a', 'knn_top1': 40.0}, {'run': 'b', 'knn_top1': None}],
  )
  table = generate_results.markdown_table(record).splitlines()
  assert table[2] == '| *floor: raw pixels* | 37.5 |  |'
  assert table[3] == '| a | 40.0 | +2.5 |'
  assert table[4] == '| b | – | – |'


def test_every_accuracy_figure_draws_its_floors(generated):
  _, figures = generated
  assert figures
  accuracy_panels = 0
  for name, data in figures.items():
    for panel in data['panels']:
      if generate_results.is_accuracy(panel['y'].lower().replace(' ', '_')) or 'top-1' in panel['y']:
        accuracy_panels += 1
        assert panel['floors'], (name, panel['title'])
        assert all(f['label'] in ('raw pixels', 'random init') for f in panel['floors'])
  assert accuracy_panels >= 3


def test_figures_drawn_dashed(tmp_path, monkeypatch):
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.axes

  calls = []
  original = matplotlib.axes.Axes.axhline
  monkeypatch.setattr(
    matplotlib.axes.Axes,
    'axhline',
    lambda self, y=0, *a, **k: calls.append((y, k.get('linestyle'))) or original(self, y, *a, **k),
  )
  data = {
    'panels': [
      {
        'title': 't',
        'x': 'epoch',
        'y': 'kNN top-1 (%)',
        'log_x': False,
        'references': [],
        'lines': [{'label': 'a', 'x': [0, 1], 'y': [20.0, 30.0]}],
        'floors': [{'label': 'raw pixels', 'y': 25.0}, {'label': 'random init', 'y': 20.0}],
      }
    ]
  }
  generate_results.draw_figure(data, str(tmp_path / 'f.png'))
  assert sorted(calls) == [(20.0, '--'), (25.0, '--')]
  assert (tmp_path / 'f.png').stat().st_size > 0


def test_a_bar_figure_of_a_table_has_a_bar_per_row_and_its_floors(tmp_path):
  record = {
    'schema': generate_results.SCHEMA,
    'study': 'demo',
    'title': 'family',
    'command': 'c',
    'date': '2026-12-04',
    'commit': None,
    'source': 's',
    'columns': [{'key': 'run', 'label': 'run'}, {'key': 'knn_top1', 'label': 'kNN top-1 (%)'}],
    'rows': [{'run': 'A', 'knn_top1': 40.0}, {'run': 'B', 'knn_top1': None}, {'run': 'C', 'knn_top1': 42.5}],
    'floors': [{'label': 'raw pixels', 'values': {'knn_top1': 37.8}}],
    'figure': {'bars': 'run', 'panels': [{'y': 'knn_top1'}]},
  }
  generate_results.check_record(record, str(tmp_path / 'demo' / 'family.json'))
  (panel,) = generate_results.figure_data(record)['panels']
  assert panel['bars'] == [{'label': 'A', 'y': 40.0}, {'label': 'C', 'y': 42.5}]  # A row without a value: no bar.
  assert panel['floors'] == [{'label': 'raw pixels', 'y': 37.8}]
  generate_results.draw_figure(generate_results.figure_data(record), str(tmp_path / 'f.png'))
  assert (tmp_path / 'f.png').stat().st_size > 0
  with pytest.raises(generate_results.SchemaError, match='either'):
    generate_results.check_record({**record, 'figure': {'bars': 'run', 'x': 'run', 'panels': []}}, 'demo/f.json')


def test_components_table_lists_every_registered_component(generated):
  from gsg_jax import methods

  pages, _ = generated
  table = pages['_generated/components.md']
  for registry in (methods.LOSSES, methods.TARGETS, methods.PREDICTORS):
    for name in registry:
      assert f'| `{name}` |' in table, name


def test_configs_pages_cover_every_preset_and_config_file(generated):
  from gsg_jax import config_lib

  pages, _ = generated
  presets = pages['_generated/presets.md']
  for preset in config_lib.PRESETS[1:]:
    assert f'## The `{preset}` preset' in presets
  for path in glob.glob(os.path.join(REPO, 'configs', '*.py')):
    assert f'`configs/{os.path.basename(path)}`' in presets
  keys = pages['_generated/config_keys.md']
  assert '| `method.loss` |' in keys and '| `data.source` |' in keys and '| `augment.crop_size` |' in keys
  # The provenance comments: a value with a comment in the code shows it.
  assert 'SimSiam CIFAR-10: lr = 0.03 × batch/256.' in keys


def test_rendered_notebook_is_the_example_executed():
  example = nbformat.read(os.path.join(REPO, 'examples', 'ablation.ipynb'), as_version=4)
  rendered = nbformat.read(os.path.join(REPO, 'docs', 'examples', 'ablation.ipynb'), as_version=4)
  assert [(c.cell_type, c.source) for c in example.cells] == [(c.cell_type, c.source) for c in rendered.cells], (
    'examples/ablation.ipynb changed: run `python docs/generate_results.py --notebook` and commit'
  )
  outputs = [o for c in rendered.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert any(o.output_type == 'display_data' and 'image/png' in o.data for o in outputs)


ISSUE_NUMBER = re.compile(r'\bissues? #?\d+|(?<![\w&/])#\d+\b', re.IGNORECASE)


def test_no_internal_issue_numbers():
  paths = [os.path.join(REPO, 'README.md'), os.path.join(REPO, 'CHANGELOG.md')]
  paths += glob.glob(os.path.join(REPO, 'docs', '**', '*.md'), recursive=True)
  paths += glob.glob(os.path.join(REPO, 'gsg_jax', '**', '*.py'), recursive=True)
  paths += glob.glob(os.path.join(REPO, 'configs', '*.py'))
  found = []
  for path in paths:
    if os.sep + '_build' + os.sep in path:
      continue
    with open(path, encoding='utf-8') as f:
      for number, line in enumerate(f, 1):
        if ISSUE_NUMBER.search(line):
          found.append(f'{os.path.relpath(path, REPO)}:{number}: {line.strip()}')
  assert not found, found


def test_readme_points_at_pages_that_exist():
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  links = re.findall(r'\]\((docs/[^)#]+)', readme) + re.findall(r'\]\((benchmarks/[^)#]+)', readme)
  assert links
  for link in links:
    assert os.path.exists(os.path.join(REPO, link)), link


def test_landscape_tables_equal_what_their_json_generates():
  """The landscape page's tables (between the report's markers) are ``report.py --readme``'s output on the committed
  results: a changed JSON, or a hand edit of the block, fails here."""
  from gsg_jax.experiments.landscape import report

  results_dir = os.path.join(REPO, 'benchmarks', 'results')
  reduced = os.path.join(results_dir, 'landscape_reduced')
  results = report.load(reduced)
  text = report.report_text(
    results, report.load(os.path.join(results_dir, 'landscape_long')), os.path.join(reduced, 'diagnostics.json')
  )
  with open(os.path.join(REPO, 'docs', 'results', 'text', 'landscape.md')) as f:
    page = f.read()
  block = page.split(report.START, 1)[1].split(report.END, 1)[0]
  assert block == '\n' + report.provenance_line(results) + '\n\n' + text
