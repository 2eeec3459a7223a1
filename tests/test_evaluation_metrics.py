"""Evaluation metrics (kNN, representation diagnostics, linear probes) against NumPy/sklearn references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from gsg_jax.evaluation import diagnostics
from gsg_jax.evaluation.knn import KNNBank, bank_metrics, knn_settings, knn_topk_merge, weighted_knn
from gsg_jax.evaluation.linear_probe import (
  LINEAR_PROTOCOLS,
  _make_optimizer,
  fast_linear_probe,
  linear_probe,
  resolve_protocol,
)


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def blobs(rng, n, num_classes, dim, spread=10.0):
  centres = rng.normal(size=(num_classes, dim)) * spread
  labels = rng.integers(0, num_classes, n)
  return centres, labels


# ---------------------------------------------------------------- kNN


def sklearn_knn(train, train_labels, queries, query_labels, num_classes, k, temperature):
  """Cosine neighbours from sklearn, then the InstDisc weighted vote in NumPy."""
  distance, index = NearestNeighbors(n_neighbors=k, metric='cosine', algorithm='brute').fit(train).kneighbors(queries)
  weights = np.exp((1 - distance) / temperature)
  scores = np.zeros((len(queries), num_classes))
  np.add.at(scores, (np.arange(len(queries))[:, None], train_labels[index]), weights)
  ranking = np.argsort(-scores, axis=1, kind='stable')
  top1 = np.mean(ranking[:, 0] == query_labels) * 100
  top5 = np.mean((ranking[:, :5] == query_labels[:, None]).any(1)) * 100
  return top1, top5


def test_knn_matches_sklearn_reference_across_chunks_and_clips_k():
  rng = np.random.default_rng(0)
  train, queries = rng.normal(size=(300, 12)), rng.normal(size=(70, 12))
  train_labels, query_labels = rng.integers(0, 9, 300), rng.integers(0, 9, 70)
  result = weighted_knn(
    train,
    train_labels,
    queries,
    query_labels,
    9,
    ks=(1, 5, 20, 1000),
    temperature=0.1,
    chunk_size=32,
    memory_chunk_size=64,
  )
  assert set(result) == {f'knn_top{t}@{k}' for t in (1, 5) for k in (1, 5, 20, 1000)}
  for k in (1, 5, 20, 1000):
    top1, top5 = sklearn_knn(train, train_labels, queries, query_labels, 9, min(k, 300), 0.1)
    assert result[f'knn_top1@{k}'] == pytest.approx(top1, abs=1e-9)
    assert result[f'knn_top5@{k}'] == pytest.approx(top5, abs=1e-9)
  # Chunk sizes change nothing; jax inputs work too.
  assert (
    weighted_knn(jnp.asarray(train), train_labels, jnp.asarray(queries), query_labels, 9, ks=(1, 5, 20, 1000)) == result
  )


def test_knn_is_perfect_on_separable_clusters_and_handles_few_classes():
  rng = np.random.default_rng(1)
  centres, train_labels = blobs(rng, 500, 10, 16)
  query_labels = rng.integers(0, 10, 100)
  train = centres[train_labels] + rng.normal(size=(500, 16))
  queries = centres[query_labels] + rng.normal(size=(100, 16))
  assert weighted_knn(train, train_labels, queries, query_labels, 10) == {
    'knn_top1@20': 100.0,
    'knn_top5@20': 100.0,
    'knn_top1@200': 100.0,
    'knn_top5@200': 100.0,
  }
  # Three classes: top-5 is trivially 100%.
  three = weighted_knn(train, train_labels % 3, queries, query_labels % 3, 3, ks=(20,))
  assert three['knn_top5@20'] == 100.0


def test_knn_topk_merge_equals_one_top_k_over_the_whole_bank():
  rng = np.random.default_rng(11)
  queries, memory = unit(rng.normal(size=(17, 8))), unit(rng.normal(size=(203, 8)))
  ids = np.arange(203, dtype=np.int32)  # Labels = row ids: the merge must keep exactly the brute-force rows.
  similarity = queries @ memory.T
  nearest = np.argsort(-similarity, axis=1, kind='stable')[:, :10]
  merge = jax.jit(knn_topk_merge)
  for chunk in (7, 64, 500):  # Chunk sizes that divide N = 203, do not, and exceed it.
    best = (jnp.full((17, 10), -jnp.inf), jnp.full((17, 10), -1, jnp.int32))
    for start in range(0, 203, chunk):
      rows, labels = memory[start : start + chunk], ids[start : start + chunk]
      pad = chunk - len(rows)  # Padding rows (label −1) as close to the queries as can be: never chosen.
      rows = np.concatenate([rows, queries[:1].repeat(pad, 0)])
      labels = np.concatenate([labels, np.full(pad, -1, np.int32)])
      best = merge(*best, jnp.asarray(queries, jnp.float32), jnp.asarray(rows, jnp.float32), jnp.asarray(labels))
    np.testing.assert_array_equal(np.asarray(best[1]), nearest, err_msg=f'chunk {chunk}')
    np.testing.assert_allclose(np.asarray(best[0]), np.take_along_axis(similarity, nearest, 1), atol=1e-5)


def test_knn_bank_reports_the_configured_and_the_reference_temperature():
  rng = np.random.default_rng(12)
  train, queries = rng.normal(size=(300, 12)), rng.normal(size=(70, 12))
  train_labels, query_labels = rng.integers(0, 9, 300), rng.integers(0, 9, 70)
  bank = KNNBank(queries, 50, query_block=32)
  for start, stop in ((0, 100), (100, 131), (131, 300)):  # Uneven chunks.
    bank.add(train[start:stop], train_labels[start:stop])
  assert bank.size == 300
  result = bank_metrics(bank, query_labels, 9, ks=(5, 50), temperature=0.2, extra_temperatures=(0.1,))
  assert set(result) == {f'knn_top{t}@{k}{s}' for t in (1, 5) for k in (5, 50) for s in ('', '_t0.1')}
  for k in (5, 50):
    for temperature, suffix in ((0.2, ''), (0.1, '_t0.1')):
      top1, top5 = sklearn_knn(train, train_labels, queries, query_labels, 9, k, temperature)
      assert result[f'knn_top1@{k}{suffix}'] == pytest.approx(top1, abs=1e-9)
      assert result[f'knn_top5@{k}{suffix}'] == pytest.approx(top5, abs=1e-9)


def test_knn_settings_follow_the_config():
  from gsg_jax import config_lib

  c = config_lib.make_config()
  assert (c.eval.knn_k, c.eval.knn_temperature) == (200, 0.2)  # The GSG reference's main_knn.py.
  assert knn_settings(c.eval) == {'k': 200, 'temperature': 0.2, 'ks': [20, 200], 'extra_temperatures': [0.1]}
  c.eval.knn_k, c.eval.knn_temperature = 50, 0.1
  assert knn_settings(c.eval) == {'k': 50, 'temperature': 0.1, 'ks': [20, 50, 200], 'extra_temperatures': []}


# ---------------------------------------------------------------- spectrum


def test_singular_values_are_those_of_the_centred_features():
  rng = np.random.default_rng(2)
  tall = rng.normal(size=(3000, 24)) * np.linspace(0.05, 4, 24) + 7.0
  wide = rng.normal(size=(10, 24)) + 3.0
  for x, chunk in ((tall, 512), (tall, 4096), (wide, 4)):
    reference = PCA(n_components=min(x.shape)).fit(x).singular_values_
    sigma = np.asarray(diagnostics.singular_values(x, chunk_size=chunk))
    assert sigma.shape == (min(x.shape),)
    np.testing.assert_allclose(sigma, reference, rtol=1e-4, atol=1e-5 * reference[0])


def erank_reference(sigma):
  p = sigma / sigma.sum()
  p = p[p > 0]
  return np.exp(-np.sum(p * np.log(p)))


def test_effective_rank_known_cases():
  rng = np.random.default_rng(3)
  d = 16
  isotropic = rng.normal(size=(40000, d))
  assert diagnostics.effective_rank(isotropic) == pytest.approx(d, rel=5e-3)
  rank_one = np.outer(rng.normal(size=2000), rng.normal(size=32)) + rng.normal(size=32)
  assert diagnostics.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)
  # Prescribed spectrum: X = A diag(s) Bᵀ, A orthonormal and orthogonal to 1 (so X is centred).
  a = np.linalg.qr(rng.normal(size=(500, d)) - rng.normal(size=(500, d)).mean(0))[0]
  a = np.linalg.qr(a - a.mean(0))[0]
  b = np.linalg.qr(rng.normal(size=(d, d)))[0]
  s = np.geomspace(10, 0.01, d)
  x = a @ np.diag(s) @ b.T + 2.5
  np.testing.assert_allclose(np.asarray(diagnostics.singular_values(x, chunk_size=128)), s, rtol=1e-3)
  assert diagnostics.effective_rank(x, chunk_size=128) == pytest.approx(erank_reference(s), rel=1e-4)
  # Same as NumPy on arbitrary data, and usable inside jit.
  y = rng.normal(size=(300, 20)) @ rng.normal(size=(20, 20))
  expected = erank_reference(np.linalg.svd(y - y.mean(0), compute_uv=False))
  assert float(jax.jit(diagnostics.effective_rank)(y)) == pytest.approx(expected, rel=1e-4)


def test_normalized_std_matches_numpy_and_detects_collapse():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(5000, 64)) * rng.uniform(0.5, 2, 64) + 0.3
  expected = unit(x).std(0).mean()
  assert float(diagnostics.normalized_std(x, chunk_size=700)) == pytest.approx(expected, rel=1e-5)
  assert float(diagnostics.normalized_std(rng.normal(size=(50000, 64)))) == pytest.approx(1 / 8, rel=1e-2)
  collapsed = rng.normal(size=(1, 64)) * rng.uniform(1, 5, (1000, 1))  # One direction, varying norms.
  assert float(diagnostics.normalized_std(collapsed)) < 1e-6


# ---------------------------------------------------------------- alignment / uniformity


def test_alignment_and_uniformity_match_brute_force():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(257, 10))
  y = x + 0.3 * rng.normal(size=x.shape)
  for alpha in (1.0, 2.0):
    expected = np.mean(np.linalg.norm(unit(x) - unit(y), axis=1) ** alpha)
    assert float(diagnostics.alignment(x, y, alpha)) == pytest.approx(expected, rel=1e-5)
  for t in (1.0, 2.0):
    expected = np.log(np.mean(np.exp(-t * pdist(unit(x), 'sqeuclidean'))))
    assert float(diagnostics.uniformity(x, t, chunk_size=50)) == pytest.approx(expected, rel=1e-5)
  assert float(diagnostics.alignment(x, 3 * x)) == pytest.approx(0.0, abs=1e-6)
  assert float(diagnostics.uniformity(np.ones((20, 4)))) == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- predictor eigenspaces


def test_eigenspace_alignment_commuting_vs_random_predictor():
  rng = np.random.default_rng(6)
  d = 12
  z = rng.normal(size=(4000, d)) @ np.diag(np.linspace(0.3, 3, d)) @ np.linalg.qr(rng.normal(size=(d, d)))[0]
  f = z.T @ z / len(z)
  commuting = f @ f + 0.5 * f + 0.1 * np.eye(d)  # A polynomial in F: same eigenvectors.
  aligned = diagnostics.eigenspace_alignment(commuting, z, top_k=4, chunk_size=1000)
  assert set(aligned) == {'alignment_all', 'alignment_top_k', 'off_diagonal_ratio'}
  assert aligned['alignment_all'] == pytest.approx(1.0, abs=1e-4)
  assert aligned['alignment_top_k'] == pytest.approx(1.0, abs=1e-4)
  assert aligned['off_diagonal_ratio'] < 1e-3

  random = diagnostics.eigenspace_alignment(rng.normal(size=(d, d)), z, top_k=4)
  assert random['alignment_all'] < 0.6 and random['off_diagonal_ratio'] > 0.5

  # Reference: the same quantities from NumPy's eigendecomposition of F.
  w = rng.normal(size=(d, d)) + 3 * np.eye(d)
  _, u = np.linalg.eigh(f)
  u = u[:, ::-1]
  cosines = np.abs(np.einsum('ij,ij->j', u, w @ u)) / np.linalg.norm(w @ u, axis=0)
  m = u.T @ w @ u
  result = diagnostics.eigenspace_alignment(w, z, top_k=3)
  assert result['alignment_all'] == pytest.approx(cosines.mean(), abs=1e-4)
  assert result['alignment_top_k'] == pytest.approx(cosines[:3].mean(), abs=1e-4)
  assert result['off_diagonal_ratio'] == pytest.approx(
    np.linalg.norm(m - np.diag(np.diag(m))) / np.linalg.norm(m), abs=1e-4
  )


def test_mlp_jacobian_matches_analytic_derivative():
  rng = np.random.default_rng(7)
  w1, w2 = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(8, 5)).astype(np.float32)
  apply_fn = lambda x: jnp.tanh(x @ w1) @ w2  # Batched [B, 6] -> [B, 5].
  x0 = rng.normal(size=6).astype(np.float32)
  expected = (w2.T * (1 - np.tanh(x0 @ w1) ** 2)) @ w1.T
  jacobian = np.asarray(diagnostics.mlp_jacobian(apply_fn, x0))
  assert jacobian.shape == (5, 6)
  np.testing.assert_allclose(jacobian, expected, rtol=1e-4, atol=1e-5)
  linear = rng.normal(size=(4, 4)).astype(np.float32)
  np.testing.assert_allclose(diagnostics.mlp_jacobian(lambda x: x @ linear.T, x0[:4]), linear, atol=1e-6)


def test_collapse_report():
  rng = np.random.default_rng(8)
  features, projections = rng.normal(size=(2000, 32)), rng.normal(size=(2000, 16))
  healthy = diagnostics.collapse_report(features, projections)
  assert set(healthy) == {
    'features/effective_rank',
    'features/normalized_std',
    'projections/effective_rank',
    'projections/normalized_std',
    'collapsed',
  }
  assert healthy['collapsed'] is False
  assert healthy['projections/effective_rank'] == pytest.approx(16, rel=0.02)
  assert healthy['features/normalized_std'] == pytest.approx(1 / np.sqrt(32), rel=0.02)
  collapsed = np.ones((2000, 16)) + 1e-3 * rng.normal(size=(2000, 16))
  report = diagnostics.collapse_report(features, collapsed)
  assert report['collapsed'] is True and report['features/effective_rank'] == healthy['features/effective_rank']


# ---------------------------------------------------------------- linear probes


def test_fast_linear_probe_separates_gaussian_blobs():
  rng = np.random.default_rng(9)
  centres, train_labels = blobs(rng, 3000, 10, 32, spread=3.0)
  test_labels = rng.integers(0, 10, 1000)
  train = centres[train_labels] + rng.normal(size=(3000, 32)) + 50.0  # Offset: standardisation must handle it.
  test = centres[test_labels] + rng.normal(size=(1000, 32)) + 50.0
  result = fast_linear_probe(train, train_labels, test, test_labels, 10, epochs=100, batch_size=256)
  assert set(result) == {'top1', 'top5'}
  assert result['top1'] > 95 and result['top5'] >= result['top1']
  # Chance level on random labels.
  noise = fast_linear_probe(train, rng.permutation(train_labels), test, test_labels, 10, epochs=5)
  assert noise['top1'] < 25


def coloured_images(rng, n, palette):
  labels = rng.integers(0, len(palette), n)
  images = palette[labels][:, None, None, :] + rng.integers(-30, 31, size=(n, 12, 12, 3))
  return np.clip(images, 0, 255).astype(np.uint8), labels


# LARS moves W and b (as apex's LARC) by about trust_coefficient · lr of their norms per step, so a short run
# needs a large lr.
@pytest.mark.parametrize('optimizer, base_lr, batch_size', [('sgd', 5.0, 64), ('lars', 512.0, 16)])
def test_linear_probe_on_colour_coded_images(optimizer, base_lr, batch_size):
  rng = np.random.default_rng(10)
  palette = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40], [128, 128, 128]])
  train_images, train_labels = coloured_images(rng, 512, palette)
  test_images, test_labels = coloured_images(rng, 200, palette)

  encode_fn = jax.jit(lambda images: images.mean(axis=(1, 2)) - 0.5)  # Mean colour per channel.
  eval_preprocess_fn = lambda images_u8: images_u8.astype(jnp.float32) / 255.0

  def augment_fn(key, images_u8):
    flip, dy, dx = jax.random.split(key, 3)
    images = jnp.where(jax.random.bernoulli(flip, 0.5), images_u8[:, :, ::-1], images_u8)
    padded = jnp.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='edge')
    top, left = jax.random.randint(dy, (), 0, 5), jax.random.randint(dx, (), 0, 5)
    return eval_preprocess_fn(jax.lax.dynamic_slice(padded, (0, top, left, 0), images.shape))

  logs = []
  result = linear_probe(
    encode_fn,
    (train_images, train_labels),
    (test_images, test_labels),
    len(palette),
    augment_fn=augment_fn,
    eval_preprocess_fn=eval_preprocess_fn,
    epochs=8,
    batch_size=batch_size,
    base_lr=base_lr,
    optimizer=optimizer,
    log_fn=lambda epoch, m: logs.append((epoch, m)),
  )
  assert [epoch for epoch, _ in logs] == list(range(8))
  assert set(logs[0][1]) == {'loss', 'train_top1', 'lr'} and logs[-1][1]['lr'] == pytest.approx(0.0, abs=1e-7)
  assert logs[-1][1]['loss'] < logs[0][1]['loss']
  assert result['top1'] > 95 and result['top5'] == 100.0


# ---------------------------------------------------------------- linear protocols


def test_linear_protocol_table():
  from gsg_jax.data.augment import default_augment_config

  assert set(LINEAR_PROTOCOLS) == {'fast', 'cifar', 'imagenet'}
  imagenet = resolve_protocol('imagenet')  # The GSG reference's main_lincls.py --lars.
  assert {
    k: imagenet[k]
    for k in (
      'name',
      'inputs',
      'optimizer',
      'trust_coefficient',
      'momentum',
      'base_lr',
      'batch_size',
      'weight_decay',
      'epochs',
      'schedule',
      'crop_scale',
      'flip',
      'crop_size',
      'eval_resize',
    )
  } == {
    'name': 'imagenet',
    'inputs': 'images',
    'optimizer': 'lars',
    'trust_coefficient': 0.001,
    'momentum': 0.9,
    'base_lr': 0.1,
    'batch_size': 4096,
    'weight_decay': 0.0,
    'epochs': 90,
    'schedule': 'cosine',
    'crop_scale': (0.08, 1.0),
    'flip': True,
    'crop_size': 224,
    'eval_resize': 256,
  }
  assert imagenet['lr'] == pytest.approx(1.6)
  cifar = resolve_protocol('cifar', augment_config=default_augment_config())  # None: the run's geometry.
  assert (
    cifar['optimizer'],
    cifar['base_lr'],
    cifar['batch_size'],
    cifar['epochs'],
    cifar['weight_decay'],
    cifar['crop_size'],
    cifar['eval_resize'],
    cifar['lr'],
  ) == ('sgd', 30.0, 256, 100, 0.0, 32, 0, 30.0)
  fast = resolve_protocol('fast', {'epochs': 3})
  assert (fast['inputs'], fast['epochs'], fast['lr'], fast['overrides']) == ('features', 3, 1e-3, {'epochs': 3})
  with pytest.raises(ValueError, match='unknown linear protocol'):
    resolve_protocol('moco')
  with pytest.raises(ValueError, match="no setting 'epoch'"):
    resolve_protocol('cifar', {'epoch': 1})


def test_imagenet_protocol_optimizer_is_larc():
  """One step: Δp = −lr · 0.001 · ‖p‖ / ‖g‖ · g for weight and bias (apex's LARC, no clip, no decay)."""
  tx = _make_optimizer(resolve_protocol('imagenet'), 1.6)
  params = {'w': jnp.array([[3.0, -4.0]]), 'b': jnp.array([0.5, 1.0])}
  grads = {'w': jnp.array([[1.0, 2.0]]), 'b': jnp.array([-2.0, 0.0])}
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  for name in ('w', 'b'):
    p, g = np.asarray(params[name]), np.asarray(grads[name])
    expected = -1.6 * 0.001 * np.linalg.norm(p) / np.linalg.norm(g) * g
    np.testing.assert_allclose(np.asarray(updates[name]), expected, rtol=1e-5)
