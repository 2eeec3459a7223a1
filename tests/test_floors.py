"""Floors (gsg_jax.evaluation.floors): raw-pixel kNN and fast probe against direct computation, and the cache."""

import json
import os

import numpy as np
import pytest

from gsg_jax.data.augment import default_augment_config
from gsg_jax.data.pipeline import Split
from gsg_jax.evaluation import floors, labelled
from gsg_jax.evaluation.context import Context
from gsg_jax.evaluation.evaluator import get_evaluators, run_evaluators
from gsg_jax.evaluation.knn import weighted_knn
from gsg_jax.evaluation.linear_probe import fast_linear_probe, resolve_protocol


def tiny_split(rng, n):
  """8×8 images whose colour depends on one of three classes, plus noise."""
  labels = rng.integers(0, 3, n).astype(np.int32)
  palette = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]])
  images = palette[labels][:, None, None] + rng.integers(-60, 61, size=(n, 8, 8, 3))
  return Split(np.clip(images, 0, 255).astype(np.uint8), labels)


def test_raw_pixel_floors_match_direct_computation_and_are_cached(tmp_path):
  rng = np.random.default_rng(0)
  memory_split, heldout_split = tiny_split(rng, 60), tiny_split(rng, 24)
  memory = labelled.in_memory(memory_split, {'kind': 'test', 'role': 'memory'})
  heldout = labelled.in_memory(heldout_split, {'kind': 'test', 'role': 'heldout'})
  augment = default_augment_config()
  augment.crop_size = 8
  config = _Config(augment)
  knn = {'k': 5, 'temperature': 0.2, 'ks': [5, 20, 200], 'extra_temperatures': [0.1]}
  fast = resolve_protocol('fast', {'epochs': 3})
  raw = floors.raw_pixel_encoder(augment)
  ctx = Context(
    config,
    lambda x: {'features': raw(x)},
    memory,
    heldout,
    3,
    16,
    options={'fast_linear': {'overrides': {'epochs': 3}}},
  )
  evaluators = get_evaluators(['knn', 'fast_linear'])
  assert [e.settings(ctx) for e in evaluators] == [knn, fast]
  # Memory read in chunks of 16 (the last one padded): streaming must not change the figures.
  got = run_evaluators(evaluators, ctx)[0]

  # Direct: the normalised, flattened pixels, whole.
  pixels = lambda split: ((split.images / 255.0 - np.array(augment.mean)) / np.array(augment.std)).reshape(
    len(split), -1
  )
  train, test = pixels(memory_split), pixels(heldout_split)
  for temperature, suffix in ((0.2, ''), (0.1, '_t0.1')):
    direct = weighted_knn(
      train, memory_split.labels, test, heldout_split.labels, 3, ks=(5, 20, 200), temperature=temperature
    )
    for key, value in direct.items():
      assert got[key + suffix] == pytest.approx(value, abs=1e-9), key + suffix
  assert got['knn_top1'] == got['knn_top1@5'] and got['knn_memory_examples'] == 60
  probe = fast_linear_probe(
    train, memory_split.labels, test, heldout_split.labels, 3, epochs=3, batch_size=256, lr=1e-3, weight_decay=1e-4
  )
  assert got['fast_linear_top1'] == pytest.approx(probe['top1'], abs=100 / 24 + 1e-9)  # Within one test image.
  assert got['fast_linear_train_examples'] == 60

  # Cached: a second request reads the file; another key computes again.
  calls = []
  compute = {'raw_pixels': lambda: calls.append(1) or got}
  key = floors.floor_key('raw_pixels', config, memory, heldout, knn, fast)
  first = floors.get_or_compute(str(tmp_path), {'raw_pixels': key}, compute)
  again = floors.get_or_compute(str(tmp_path), {'raw_pixels': key}, compute)
  assert calls == [1] and first == again == {'raw_pixels': json.loads(json.dumps(got))}
  assert len(os.listdir(tmp_path)) == 1
  other = floors.floor_key('raw_pixels', config, memory, heldout, {**knn, 'temperature': 0.5}, fast)
  floors.get_or_compute(str(tmp_path), {'raw_pixels': other}, compute)
  assert calls == [1, 1] and len(os.listdir(tmp_path)) == 2

  raw = {'floors/raw_pixels/knn_top1': 40.0, 'floors/raw_pixels/fast_linear_top1': 50.0}
  assert floors.beats_raw_pixels({'knn_top1': 41.0, 'fast_linear_top1': 51.0, **raw}) is True
  assert floors.beats_raw_pixels({'knn_top1': 41.0, 'fast_linear_top1': 50.0, **raw}) is False
  assert floors.beats_raw_pixels({'knn_top1': 41.0, 'fast_linear_top1': 50.0, 'linear_top1': 52.0, **raw}) is True
  assert floors.beats_raw_pixels({'knn_top1': 41.0}) is None


class _Config:
  """What ``floor_key`` and the kNN and fast-probe evaluators read of a run's config for the raw-pixel floor."""

  def __init__(self, augment):
    import ml_collections

    self.augment = augment
    self.eval = ml_collections.ConfigDict({'knn_k': 5, 'knn_temperature': 0.2, 'fast_linear_max_gb': 16.0})
