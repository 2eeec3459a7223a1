"""gsg-report's figures a reader can trust: kNN curves with their floors dashed, embeddings with class names."""

import json

import matplotlib

matplotlib.use('Agg')
import matplotlib.axes  # noqa: E402
import matplotlib.pyplot  # noqa: E402
import numpy as np  # noqa: E402

from gsg_jax import report  # noqa: E402
from gsg_jax.data.synthetic import SHAPES  # noqa: E402


def _run(path, raw, init, source='builtin'):
  path.mkdir()
  rows = [
    {'kind': 'train', 'step': 1, 'epoch': 0.5, 'loss': -0.2},
    {
      'kind': 'eval',
      'step': 0,
      'epoch': 0.0,
      'knn_top1': init,
      'floors/raw_pixels/knn_top1': raw,
      'floors/random_init/knn_top1': init,
    },
    {
      'kind': 'eval',
      'step': 2,
      'epoch': 1.0,
      'knn_top1': init + 5.0,
      'floors/raw_pixels/knn_top1': raw,
      'floors/random_init/knn_top1': init,
    },
  ]
  (path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  (path / 'config.json').write_text(json.dumps({'data': {'source': source}}))
  return str(path)


def test_loss_knn_draws_each_distinct_floor_dashed(tmp_path, monkeypatch):
  a = _run(tmp_path / 'a', raw=51.8, init=24.1)
  b = _run(tmp_path / 'b', raw=51.8, init=24.1)  # Same data and seed: its floors are a's, drawn once.
  c = _run(tmp_path / 'c', raw=51.8, init=22.0)  # Another seed: its own random-init floor.
  lines = []
  original = matplotlib.axes.Axes.axhline

  def spy(self, y=0, *args, **kwargs):
    lines.append((y, kwargs.get('linestyle'), kwargs.get('label')))
    return original(self, y, *args, **kwargs)

  monkeypatch.setattr(matplotlib.axes.Axes, 'axhline', spy)
  report.plot_loss_knn([a, b, c], ['a', 'b', 'c'], str(tmp_path / 'loss_knn.png'))
  assert (tmp_path / 'loss_knn.png').stat().st_size > 0
  assert sorted(y for y, _, _ in lines) == [22.0, 24.1, 51.8]
  assert all(style == '--' for _, style, _ in lines)
  assert {label.split(' [')[0] for _, _, label in lines} == {'floor: raw pixels', 'floor: random init'}


def test_floors_come_from_the_monitor_records():
  rows = [
    {'kind': 'train', 'floors/raw_pixels/knn_top1': 1.0},
    {'kind': 'eval', 'knn_top1': 30.0, 'floors/raw_pixels/knn_top1': 50.0},
  ]
  assert report.knn_floors(rows) == {'raw_pixels': 50.0}
  assert report.knn_floors([{'kind': 'eval', 'knn_top1': 30.0}]) == {}


def test_class_names_in_legends(tmp_path):
  builtin = _run(tmp_path / 'builtin', raw=50.0, init=20.0)
  folder = _run(tmp_path / 'folder', raw=50.0, init=20.0, source='folder')
  assert report.run_class_names(builtin) == list(SHAPES)
  assert report.run_class_names(folder) is None
  fig, ax = matplotlib.pyplot.subplots()
  report._scatter_by_class(ax, np.zeros((4, 2)), np.array([0, 1, 9, 9]), list(SHAPES))
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ['disc', 'ring', 'dots']
  fig2, ax2 = matplotlib.pyplot.subplots()
  report._scatter_by_class(ax2, np.zeros((2, 2)), np.array([0, 1]), None)
  assert [t.get_text() for t in ax2.get_legend().get_texts()] == ['class 0', 'class 1']
  matplotlib.pyplot.close(fig)
  matplotlib.pyplot.close(fig2)
