"""The landscape experiments (gsg_jax/experiments/landscape): data model, encoder, metrics, objectives, runs."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gsg_jax import methods
from gsg_jax.errors import ConfigError
from gsg_jax.experiments import jsonable
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape import experiment, fullrank, metrics
from gsg_jax.experiments.landscape import objectives as obj_lib
from gsg_jax.experiments.landscape import run as run_lib
from gsg_jax.experiments.landscape import settings as settings_lib
from gsg_jax.experiments.landscape import trainer as trainer_lib
from gsg_jax.experiments.landscape.model import SymReLUNetwork, encoder_matrix, sym_relu
from gsg_jax.experiments.landscape.objectives import Objective
from gsg_jax.experiments.landscape.program import build_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFONCE = Objective('infonce')
NEGCOS_ALT_NONE = Objective('negcos', 'alt', 'none')
NEGCOS_ALT_LINEAR = Objective('negcos', 'alt', 'linear')


def landscape_config(preset=None):
  import importlib.util

  spec = importlib.util.spec_from_file_location('landscape_config', os.path.join(REPO, 'configs', 'landscape.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def tiny_config(**overrides):
  """A few-second run: n = 96, batch 32 (3 steps per epoch), p = 12, d = 4, m = 8, 2 seeds, 4 epochs."""
  c = landscape_config('quick')
  c.n, c.batch_size, c.p, c.d, c.m = 96, 32, 12, 4, 8
  c.num_seeds, c.num_epochs, c.log_every_epochs, c.chunk_epochs, c.eval_size = 2, 4, 2, 2, 32
  c.study.grid = study_block((0.5, 0.75), (0.25,))
  for key, value in overrides.items():
    c[key] = value
  return c


def study_block(mask_probs, sparsities, warm_start=()):
  return ml_collections.ConfigDict(
    {
      'mask_probs': mask_probs,
      'sparsities': sparsities,
      'warm_start': warm_start,
      'p': 0,
      'd': 0,
      'm': 0,
      'objectives': (),
    }
  )


# ----------------------------------------------------------------------------- data model


@pytest.mark.parametrize('p,d', [(50, 10), (20, 20), (7, 3)])
def test_dictionary_has_orthonormal_columns(p, d):
  m_dict = data_lib.dictionary(np.random.default_rng(p * d), p, d)
  assert m_dict.shape == (p, d)
  np.testing.assert_allclose(m_dict.T @ m_dict, np.eye(d), atol=1e-12)


def test_sparsity_counts_follow_the_authors_formula():
  # k₋ = ⌈dq/2⌉, k₊ = max(⌈dq⌉, ⌈dq/2⌉ + 1) − k₋, written out for the paper's levels.
  assert [data_lib.sparsity_counts(10, q) for q in (0.1, 0.2, 0.3)] == [(1, 1), (1, 1), (2, 1)]
  assert [data_lib.sparsity_counts(20, q) for q in (0.1, 0.2, 0.3)] == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize('d,q', [(10, 0.1), (10, 0.2), (10, 0.3), (20, 0.3)])
def test_latents_have_exact_counts_at_random_positions(d, q):
  n = 4000
  z = data_lib.latents(np.random.default_rng(0), n, d, q)
  num_neg, num_pos = data_lib.sparsity_counts(d, q)
  assert set(np.unique(z)) <= {-1, 0, 1}
  np.testing.assert_array_equal((z == -1).sum(1), num_neg)
  np.testing.assert_array_equal((z == 1).sum(1), num_pos)
  # Positions: every coordinate is non-zero with frequency (k₋ + k₊)/d (binomial std ≈ 0.007 here).
  np.testing.assert_allclose((z != 0).mean(0), (num_neg + num_pos) / d, atol=0.035)
  assert len({row.tobytes() for row in z[:200]}) > 5


def test_one_hot_latents():
  z = data_lib.latents(np.random.default_rng(1), 3000, 10, 0.0, 'one_hot')
  np.testing.assert_array_equal(np.abs(z).sum(1), 1)
  assert 0.45 < (z.sum(1) > 0).mean() < 0.55  # Random sign per sample.
  np.testing.assert_allclose((z != 0).mean(0), 0.1, atol=0.025)


def test_make_dataset_is_mz_plus_gaussian_noise():
  a = data_lib.make_dataset(3, 50, 10, 3000, 0.2)
  b = data_lib.make_dataset(3, 50, 10, 3000, 0.3)
  np.testing.assert_array_equal(a['M'], b['M'])  # One dictionary per seed, shared by the sparsity levels.
  noise = a['x'] - a['z'] @ a['M'].T
  sigma = np.sqrt(np.log(10)) / 10
  assert noise.std() == pytest.approx(sigma, rel=0.01)
  assert abs(noise.mean()) < 0.005
  again = data_lib.make_dataset(3, 50, 10, 3000, 0.2)
  np.testing.assert_array_equal(a['x'], again['x'])
  assert not np.array_equal(a['x'], data_lib.make_dataset(4, 50, 10, 3000, 0.2)['x'])


@pytest.mark.parametrize('keep', [0.75, 0.5, 0.25, 0.1])
def test_independent_mask_statistics(keep):
  views = data_lib.MaskViews('independent')
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2000, 50)), jnp.float32)
  rows = views({'x': x, 'keep_prob': keep}, jax.random.key(0), 2)
  v = np.asarray(rows).reshape(2000, 2, 50)
  kept = v != 0
  assert np.all((v == 0) | (v == np.asarray(x)[:, None]))  # x_v = D_v x, no rescaling.
  assert kept.mean() == pytest.approx(keep, abs=0.005)  # 200,000 draws: std ≤ 0.0011.
  both = (kept[:, 0] & kept[:, 1]).mean()
  assert both == pytest.approx(keep**2, abs=0.005)  # The two views' masks are independent.
  assert np.abs(np.corrcoef(kept[:, 0, :10].T)[np.triu_indices(10, 1)]).max() < 0.08  # So are coordinates.


def test_bernoulli16_quantisation():
  draws = data_lib.bernoulli16(jax.random.key(1), 0.1, (1000, 1001))  # Odd size: the last word's half is cut.
  assert draws.shape == (1000, 1001)
  assert float(draws.mean()) == pytest.approx(6554 / 65536, abs=0.001)
  assert not bool(data_lib.bernoulli16(jax.random.key(1), 0.0, (100,)).any())
  assert bool(data_lib.bernoulli16(jax.random.key(1), 1.0, (100,)).all())


def test_complementary_masks():
  views = data_lib.MaskViews('complementary')
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1000, 50)), jnp.float32)
  v = np.asarray(views({'x': x, 'keep_prob': 0.1}, jax.random.key(2), 4)).reshape(1000, 4, 50)
  for a, b in ((0, 1), (2, 3)):
    np.testing.assert_allclose(0.5 * (v[:, a] + v[:, b]), x, rtol=1e-6)  # ½(x₁ + x₂) = x.
    assert np.all(v[:, a] * v[:, b] == 0)
    assert np.all((v[:, a] == 0) | (v[:, a] == 2 * np.asarray(x)))
    assert (v[:, a] != 0).mean() == pytest.approx(0.5, abs=0.01)  # D ~ Bernoulli(½), whatever keep_prob says.
  assert (v[:, 0] != v[:, 2]).mean() > 0.3  # Each pair has its own D.
  with pytest.raises(ValueError, match='pairs'):
    views({'x': x}, jax.random.key(0), 3)


def test_init_kernel_random_and_warm_start():
  m_dict = data_lib.dictionary(np.random.default_rng(0), 50, 10)
  w = data_lib.init_kernel(np.random.default_rng(1), m_dict, 50)
  assert w.shape == (50, 50)
  assert w.std() == pytest.approx(np.sqrt(1 / 500), rel=0.05)  # N(0, 1/(p·d)).
  rng = np.random.default_rng(2)
  exact = data_lib.init_kernel(np.random.default_rng(2), m_dict, 50, np.inf)
  cols = rng.choice(10, 50)  # The same draw: M_S = M[:, cols] (with replacement, m > d).
  np.testing.assert_array_equal(exact, m_dict[:, cols].astype(np.float32))
  for c in (1.0, 2.0):
    warm = data_lib.init_kernel(np.random.default_rng(2), m_dict, 50, c)
    assert (warm - exact).std() == pytest.approx(50 ** (-c / 2), rel=0.05)  # Noise std p^{−c/2}.
  np.testing.assert_array_equal(data_lib.init_kernel(rng, m_dict, 10, np.inf), m_dict.astype(np.float32))  # m = d.


# ----------------------------------------------------------------------------- encoder


def test_sym_relu_values():
  u = jnp.array([-3.0, -1.0, -0.2, 0.0, 0.2, 1.0, 3.0])  # u = ⟨w, x⟩.
  for b in (-0.5, 0.0, 0.5):
    got = np.asarray(sym_relu(u + b, b))
    expected = np.maximum(np.asarray(u) + b, 0) - np.maximum(-np.asarray(u) + b, 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sym_relu(-u + b, b)), -got, rtol=1e-6)  # Odd in ⟨w, x⟩.
  # b < 0: a dead zone |u| ≤ −b, then u + b with the sign of u (soft thresholding).
  np.testing.assert_allclose(np.asarray(sym_relu(u - 0.5, -0.5)), [-2.5, -0.5, 0, 0, 0, 0.5, 2.5], atol=1e-6)
  # b > 0: linear (2u) around 0, clipped to ±2b... plus the ReLU beyond: ReLU(u+b) − ReLU(b−u).
  np.testing.assert_allclose(np.asarray(sym_relu(u + 0.5, 0.5)), [-3.5, -1.5, -0.4, 0, 0.4, 1.5, 3.5], atol=1e-6)


def _np_bn(h):
  return (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)


@pytest.mark.parametrize('batch_norm', [False, True])
def test_network_is_the_authors_encoder(batch_norm):
  net = SymReLUNetwork(m=6, towers=2, batch_norm=batch_norm)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4, 5)), jnp.float32)  # 16 samples, 4 views, p = 5.
  variables = net.init(jax.random.key(0), x[:2, 0], train=True)
  params = variables['params']
  assert set(params) == {'backbone', 'projector'}
  assert set(params['backbone']) == set(params['projector']) == {'tower_0', 'tower_1'}  # Both, from one view.
  bound = 1 / np.sqrt(5)
  assert np.all(np.abs(np.asarray(params['projector']['tower_0']['bias'])) <= bound)  # torch's U(±1/√p).
  out, _ = net.apply(variables, x.reshape(64, 5), train=True, num_views=4, mutable=['batch_stats'])
  z = np.asarray(out['projection']).reshape(16, 4, 6)
  np.testing.assert_array_equal(z, np.asarray(out['prediction']).reshape(16, 4, 6))  # No predictor: p = z.
  for v in range(4):
    t = v % 2  # Views a, c → tower A; b, d → tower B.
    w = np.asarray(params['backbone'][f'tower_{t}']['kernel'])
    b = np.asarray(params['projector'][f'tower_{t}']['bias'])
    h = np.asarray(x[:, v]) @ w + b
    if batch_norm:  # The authors' BN(Wx + b), then ReLU(h) − ReLU(2b − h).
      h = _np_bn(h)
    np.testing.assert_allclose(z[:, v], np.maximum(h, 0) - np.maximum(2 * b - h, 0), rtol=1e-4, atol=1e-5)
  single, _ = net.apply(variables, x[:, 0], train=True, num_views=1, mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(single['projection']), z[:, 0], rtol=1e-5, atol=1e-6)  # One view: tower A.
  np.testing.assert_array_equal(encoder_matrix(params), params['backbone']['tower_0']['kernel'].T)


# ----------------------------------------------------------------------------- metrics


def np_recovery(w, m_dict):
  """The authors' check_sparse_coding_learning, in NumPy: per latent, the best |cos| over neurons."""
  best = []
  for i in range(m_dict.shape[1]):
    cos = [abs(w[j] @ m_dict[:, i]) / (np.linalg.norm(w[j]) * np.linalg.norm(m_dict[:, i])) for j in range(len(w))]
    best.append(max(cos))
  return max(best), float(np.median(best)), min(best)


def test_recovery_against_numpy_on_a_hand_built_w():
  m_dict = data_lib.dictionary(np.random.default_rng(0), 20, 4)
  rng = np.random.default_rng(1)
  w = np.stack(
    [
      3.0 * m_dict[:, 0],  # Latent 0: |cos| = 1.
      -0.5 * m_dict[:, 1],  # Latent 1: the sign does not matter.
      m_dict[:, 2] + m_dict[:, 3],  # Latents 2, 3: cos = 1/√2 each.
      rng.normal(size=20),
      0.6 * m_dict[:, 1] + 0.8 * rng.normal(size=20) / np.sqrt(20),
    ]
  )
  got = metrics.recovery(jnp.asarray(w), jnp.asarray(m_dict))
  ref = np_recovery(w, m_dict)
  np.testing.assert_allclose([got['max'], got['median'], got['min']], ref, rtol=1e-5)
  np.testing.assert_allclose(ref, [1.0, (1.0 + 2**-0.5) / 2, 2**-0.5], rtol=1e-6)  # By construction.
  rand = rng.normal(size=(7, 20))
  got = metrics.recovery(jnp.asarray(rand), jnp.asarray(m_dict))
  np.testing.assert_allclose([got['max'], got['median'], got['min']], np_recovery(rand, m_dict), rtol=1e-5)


def test_warm_start_c_to_infinity_recovers_exactly():
  m_dict = data_lib.dictionary(np.random.default_rng(5), 50, 10)
  for m in (10, 50):
    w = data_lib.init_kernel(np.random.default_rng(0), m_dict, m, np.inf).T  # W = M_Sᵀ.
    covered = len({tuple(np.round(row, 6)) for row in w})
    assert covered == 10  # Every column of M drawn at least once (m = 50 draws with replacement at this seed).
    r = metrics.recovery(jnp.asarray(w), jnp.asarray(m_dict))
    np.testing.assert_allclose([r['min'], r['median'], r['max']], 1.0, atol=1e-6)
  ends = [
    float(
      metrics.recovery(
        jnp.asarray(data_lib.init_kernel(np.random.default_rng(0), m_dict, 50, c).T), jnp.asarray(m_dict)
      )['min']
    )
    for c in (1.0, 2.0, 4.0)
  ]
  assert ends[0] < ends[1] < ends[2] < 1.0 and ends[2] > 0.99  # Noise std p^{−c/2} shrinks with c.


def np_support(w, m_dict, z, rep):
  """The authors' check_support, transcribed (greedy signed-cosine pairing; match, false support, sparsity)."""
  cos = (w @ m_dict) / np.outer(np.linalg.norm(w, axis=1), np.linalg.norm(m_dict, axis=0))
  order = np.array(np.unravel_index(np.argsort(-cos, axis=None), cos.shape))
  neurons, latents = [], []
  for _ in range(m_dict.shape[1]):
    j, i = order[0, 0], order[1, 0]
    neurons.append(j)
    latents.append(i)
    order = order[:, order[0] != j]
    order = order[:, order[1] != i]
  z_est = np.sign(rep)
  match, false, sparse = [], [], []
  for s in range(z.shape[0]):
    match.append(np.sum(np.abs(z[s, latents] * z_est[s, neurons])) / np.sum(np.abs(z[s])))
    false.append(np.sum((z[s, latents] == 0) * np.abs(z_est[s, neurons])) / max(np.sum(np.abs(z_est[s])), 1))
    sparse.append(np.mean(np.abs(z_est[s])) - np.mean(np.abs(z[s])))
  return np.mean(match), np.mean(false), np.mean(sparse)


def test_support_recovery_against_the_authors_loop():
  rng = np.random.default_rng(0)
  m_dict = data_lib.dictionary(rng, 12, 4)
  z = data_lib.latents(rng, 64, 4, 0.5).astype(np.float32)
  w = np.concatenate([m_dict.T[[2, 0, 3, 1]], rng.normal(size=(2, 12))])  # 6 neurons, 4 of them exact.
  perfect = np.zeros((64, 6), np.float32)
  perfect[:, :4] = z[:, [2, 0, 3, 1]]  # Neuron j is latent L[j] = [2, 0, 3, 1][j] and fires exactly with it.
  got = metrics.support_recovery(jnp.asarray(w), jnp.asarray(m_dict), jnp.asarray(z), jnp.asarray(perfect))
  np.testing.assert_allclose(
    [got['match'], got['false_support'], got['sparsity_gap']],
    [1.0, 0.0, np.abs(perfect).mean() - np.abs(z).mean()],
    atol=1e-6,
  )
  noisy = rng.normal(size=(64, 6)) * (rng.random((64, 6)) < 0.4)
  got = metrics.support_recovery(jnp.asarray(w), jnp.asarray(m_dict), jnp.asarray(z), jnp.asarray(noisy))
  np.testing.assert_allclose(
    [got['match'], got['false_support'], got['sparsity_gap']], np_support(w, m_dict, z, noisy), rtol=1e-5, atol=1e-6
  )


def test_collapse_check():
  rep = jnp.asarray(np.random.default_rng(0).normal(size=(256, 8)) * 2.0)
  assert float(metrics.output_variance(rep)) == pytest.approx(4.0, rel=0.1)
  assert float(metrics.output_variance(jnp.ones((256, 8)) * 3.0)) == 0.0


# ----------------------------------------------------------------------------- objective entries


def test_objective_entries_and_their_names():
  assert INFONCE.name == 'infonce' and Objective('infonce', views='independent').name == 'infonce_independent'
  assert NEGCOS_ALT_LINEAR.name == 'negcos_alt_linear'
  assert Objective(loss='gsg', scheme='simsiam', predictor='directpred').name == 'gsg_simsiam_directpred'
  entries = obj_lib.every_objective()
  names = [o.name for o in entries]
  assert len(set(names)) == len(names) == 2 + 2 * 3 * len(methods.PREDICTORS)
  for o in entries:  # A name, the fields or the entry itself: the same objective.
    assert Objective.from_name(o.name) == o == obj_lib.objective(o.name) == obj_lib.objective(dataclasses.asdict(o))
    assert obj_lib.stored(o.name) == o and eval(repr(o), {'Objective': Objective}) == o
    assert jsonable({'objectives': (o,)}) == {'objectives': [o.name]}  # Stored by name.
  assert obj_lib.stored('fullrank') is None  # The full-rank study's runs: no objective.
  # What each entry runs: the scheme's target and towers, InfoNCE's masks and last batch, the learning-rate scales.
  facts = lambda o: (o.target, o.towers, o.views, o.contrastive, o.drop_last, o.encoder_lr_scale, o.predictor_lr_scale)
  assert facts(INFONCE) == ('online', 1, 'complementary', True, True, 1.0, 1.0)
  assert facts(Objective('infonce', views='independent')) == ('online', 1, 'independent', False, True, 1.0, 1.0)
  assert facts(NEGCOS_ALT_LINEAR) == ('online', 2, 'independent', False, False, 4.0, 2.0)
  assert facts(Objective('gsg', 'simsiam', 'none')) == ('online', 1, 'independent', False, False, 2.0, 2.0)
  assert facts(Objective('negcos', 'ema', 'directpred')) == ('ema', 1, 'independent', False, False, 2.0, 2.0)


@pytest.mark.parametrize(
  'make,message',
  [
    (lambda: Objective('negcos', 'byol', 'none'), r"scheme='byol': expected one of \('alt', 'simsiam', 'ema'\)"),
    (lambda: Objective('simclr'), "loss='simclr': expected 'infonce' or one of"),
    (lambda: Objective('infonce', 'alt'), 'infonce takes no scheme'),
    (lambda: Objective('infonce', predictor='linear'), 'infonce runs without a predictor'),
    (lambda: Objective('gsg', 'alt', 'mlpp'), "predictor='mlpp': expected one of"),
    (lambda: Objective('negcos', 'alt', 'none', views='complementary'), "run on 'independent' masks"),
    (lambda: Objective('infonce', views='random'), "views='random'"),
    (lambda: obj_lib.objective('negcos_byol_none'), "objective 'negcos_byol_none': no objective has this name"),
    (lambda: obj_lib.objective({'loss': 'negcos', 'schema': 'alt'}), r"unknown fields \['schema'\]"),
    (lambda: obj_lib.objective(3), 'expected an Objective, its name or a mapping'),
  ],
)
def test_a_bad_objective_entry_is_one_clear_error(make, message):
  with pytest.raises(ConfigError, match=message):
    make()


def test_a_config_with_a_bad_entry_fails_before_any_compute(tmp_path):
  with pytest.raises(ConfigError, match=r"objectives \['infonce'\] are listed more than once"):
    experiment.jobs_of(tiny_config(objectives=(INFONCE, 'infonce')))
  cfg = tiny_config()
  cfg.study.grid.mask_probs_for = {'negcos_alt_nne': (0.5,)}
  with pytest.raises(ConfigError, match="objective 'negcos_alt_nne'"):
    experiment.jobs_of(cfg)
  with pytest.raises(ConfigError, match="objective 'negcos_byol_none'"):
    experiment.run(tiny_config(objectives=('negcos_byol_none',)), str(tmp_path / 'w'), progress=lambda s: None)
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('folder,preset', [('landscape_reduced', 'reduced'), ('landscape_long', 'long')])
def test_stored_results_stay_valid_with_structured_entries(folder, preset):
  """The preset's entries serialise to the stored config.json, its jobs are the stored results' keys, and each stored
  result's meta is what the config gives now: a rerun reuses the results (``store.job_files``), nothing retrains."""
  path = os.path.join(REPO, 'benchmarks', 'results', folder)
  cfg = landscape_config(preset)
  with open(os.path.join(path, 'config.json')) as f:
    assert jsonable(cfg.to_dict(), 6) == json.load(f)
  with open(os.path.join(path, 'results.json')) as f:
    studies = json.load(f)['studies']
  assert set(experiment.jobs_of(cfg)) == {(s, name) for s, results in studies.items() for name in results}
  checked = 0
  for study, results in studies.items():
    for name, result in results.items():
      if name != 'fullrank':
        meta = run_lib.job(cfg, study, Objective.from_name(name))[-1]
        assert jsonable(meta, 6) == jsonable(result['meta'], 6), (study, name)
        checked += 1
  assert checked >= 7


# ----------------------------------------------------------------------------- objectives and the step core

ALL_OBJECTIVES = [INFONCE] + [
  Objective(loss, scheme, predictor)
  for loss in ('negcos', 'gsg')
  for scheme in ('alt', 'simsiam', 'ema')
  for predictor in ('none', 'linear', 'directpred')
]
FAST_OBJECTIVES = (
  INFONCE,
  NEGCOS_ALT_LINEAR,
  Objective('gsg', 'simsiam', 'directpred'),
  Objective('negcos', 'ema', 'none'),
)


def _tiny_program(entry, cfg=None, seeds=2):
  cfg = cfg or tiny_config()
  study = settings_lib.study_config(cfg, 'grid')
  obj = obj_lib.objective(entry)
  runs = settings_lib.run_settings(obj, study, seeds, cfg.seed)
  return (*build_program(cfg, study, obj, runs), runs)


@pytest.mark.parametrize(
  'entry',
  [pytest.param(o, marks=() if o in FAST_OBJECTIVES else pytest.mark.slow, id=o.name) for o in ALL_OBJECTIVES],
)
def test_every_objective_trains_through_the_step_core(entry):
  program, data, rngs, state, runs = _tiny_program(entry)
  obj = program.obj
  assert program.trainer.method.num_views == methods.LOSSES[obj.loss].num_views
  assert program.trainer.method.loss == obj.loss  # The registry's loss, target and predictor.
  step = jax.jit(jax.vmap(program.trainer.train_step))
  batch = {'x': data['x'][:, :32], 'keep_prob': data['keep']}
  before = state.params
  for _ in range(3):
    state, m = step(state, batch, rngs)
    assert np.all(np.isfinite(np.asarray(m['loss'])))
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), before, state.params)
  assert moved['backbone']['tower_0']['kernel'] > 0
  assert int(state.step[0]) == 3
  if obj.predictor == 'directpred':  # Set from F̂, symmetric (frozen in the optimiser).
    k = np.asarray(state.params['predictor']['linear']['kernel'][0])
    np.testing.assert_allclose(k, k.T, atol=1e-5)
  if obj.target == 'ema':
    assert set(state.extras['target'].params) == {'backbone', 'projector'}


def test_alternating_steps_train_one_tower_at_a_time():
  program, data, rngs, state, _ = _tiny_program(NEGCOS_ALT_LINEAR)
  step = jax.jit(jax.vmap(program.trainer.train_step))
  batch = {'x': data['x'][:, :32], 'keep_prob': data['keep']}
  kernel = lambda s, t: np.asarray(s.params['backbone'][f'tower_{t}']['kernel'])
  pred = lambda s: np.asarray(s.params['predictor']['linear']['kernel'])
  for k in range(4):
    new, _ = step(state, batch, rngs)
    active, idle = k % 2, 1 - k % 2
    assert np.abs(kernel(new, active) - kernel(state, active)).max() > 0
    np.testing.assert_array_equal(kernel(new, idle), kernel(state, idle))
    np.testing.assert_array_equal(
      new.params['projector'][f'tower_{idle}']['bias'], state.params['projector'][f'tower_{idle}']['bias']
    )
    assert np.abs(pred(new) - pred(state)).max() > 0  # The shared predictor trains at every step.
    state = new


def test_alternating_step_is_the_authors_update():
  """Tower A's step equals W ← W − 0.005·∇[2 − 2 cos(A x₁, sg B x₂)] (their online step, lr 0.005)."""
  cfg = tiny_config()
  program, data, rngs, state, _ = _tiny_program(NEGCOS_ALT_NONE, cfg)
  trainer = program.trainer
  run = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
  s0, rng = run(state), rngs[0]
  batch = {'x': data['x'][0, :32], 'keep_prob': data['keep'][0]}
  new, _ = jax.jit(trainer.train_step)(s0, batch, rng)
  view_rng, _ = jax.random.split(jax.random.fold_in(rng, 0))
  x = trainer.views(batch, view_rng, 2).reshape(32, 2, -1)

  def authors_loss(w_a, b_a):
    z_o = sym_relu(x[:, 0] @ w_a + b_a, b_a)
    b_b = s0.params['projector']['tower_1']['bias']
    z_t = jax.lax.stop_gradient(sym_relu(x[:, 1] @ s0.params['backbone']['tower_1']['kernel'] + b_b, b_b))
    unit = lambda a: a / jnp.linalg.norm(a, axis=1, keepdims=True)
    return 2.0 - 2.0 * jnp.mean(jnp.sum(unit(z_o) * unit(z_t), 1))

  w_a, b_a = s0.params['backbone']['tower_0']['kernel'], s0.params['projector']['tower_0']['bias']
  g_w, g_b = jax.grad(authors_loss, argnums=(0, 1))(w_a, b_a)
  np.testing.assert_allclose(new.params['backbone']['tower_0']['kernel'], w_a - cfg.lr * g_w, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(new.params['projector']['tower_0']['bias'], b_a - cfg.lr * g_b, rtol=1e-4, atol=1e-7)


def test_negcos_is_half_of_two_minus_two_cos():
  """The authors' 2 − 2cos(p₁, sg z₂) = 2(1 + D₁₂), D₁₂ = −cos(p₁, z₂): the registry's negcos per direction."""
  rng = np.random.default_rng(0)
  p1, z2 = jnp.asarray(rng.normal(size=(8, 5))), jnp.asarray(rng.normal(size=(8, 5)))
  unit = lambda a: a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  two_minus_two_cos = lambda p1: 2 - 2 * jnp.mean(jnp.sum(unit(p1) * unit(z2), -1))
  # With both directions equal, negcos = −½(cos(p₁, z₂) + cos(p₁, z₂)) = D₁₂.
  d12 = lambda p1: methods.LOSSES['negcos'].fn(jnp.stack([p1, p1], 1), jnp.stack([z2, z2], 1), None)[0]
  np.testing.assert_allclose(two_minus_two_cos(p1), 2 * (1 + d12(p1)), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(two_minus_two_cos)(p1), 2 * jax.grad(d12)(p1), rtol=1e-5, atol=1e-7)


def test_learning_rates_and_batch_norm_follow_the_authors():
  cfg = landscape_config()
  assert obj_lib.learning_rates(INFONCE, cfg) == (0.005, 0.005)
  assert obj_lib.learning_rates(Objective('negcos', 'simsiam', 'linear'), cfg) == (0.01, 0.01)
  assert obj_lib.learning_rates(Objective('gsg', 'alt', 'linear'), cfg) == (0.02, 0.01)
  assert obj_lib.uses_batch_norm(INFONCE, 'authors')
  assert not obj_lib.uses_batch_norm(NEGCOS_ALT_NONE, 'authors')
  assert obj_lib.uses_batch_norm(NEGCOS_ALT_LINEAR, 'authors')


def test_steps_per_epoch_keep_or_drop_the_last_batch():
  cfg = tiny_config(n=100)
  assert _tiny_program(NEGCOS_ALT_NONE, cfg)[0].steps_per_epoch == 4  # 3 × 32 + a last batch of 4.
  assert _tiny_program(INFONCE, cfg)[0].steps_per_epoch == 3  # drop_last, as main_simclr.py.


# ----------------------------------------------------------------------------- vmapped runs


def test_vmapped_run_is_deterministic(tmp_path):
  cfg = tiny_config(objectives=(NEGCOS_ALT_LINEAR,))
  a = run_lib.train_objective(cfg, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'a'), progress=lambda s: None)
  b = run_lib.train_objective(cfg, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'b'), progress=lambda s: None)
  assert len(a['runs']) == 2 * 1 * 2  # mask probabilities × sparsities × seeds, in one vmapped program.
  assert [r['curves'] for r in a['runs']] == [r['curves'] for r in b['runs']]
  assert a['runs'][0]['curves']['min'] != a['runs'][1]['curves']['min']  # Different seeds, different runs.
  assert a['runs'][0]['curves']['min'][-1] != a['runs'][0]['curves']['min'][0]  # Training moved W.
  assert a['epochs'] == [0, 2, 4]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_end(tmp_path):
  cfg = tiny_config(objectives=(NEGCOS_ALT_LINEAR,))
  a = run_lib.train_objective(cfg, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'a'), progress=lambda s: None)
  # Interrupted right after the first chunk's checkpoint (epoch 2 of 4): a rerun resumes to the same end.

  class Interrupt(Exception):
    pass

  def interrupt(line):
    raise Interrupt(line)

  with pytest.raises(Interrupt, match='epoch 2/4'):
    run_lib.train_objective(cfg, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'c'), progress=interrupt)
  assert int(np.load(tmp_path / 'c' / 'checkpoint.npz')['epochs_done']) == 2
  assert not (tmp_path / 'c' / 'result.json').exists()
  c = run_lib.train_objective(cfg, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'c'), progress=lambda s: None)
  np.testing.assert_allclose(
    [r['curves']['min'] for r in c['runs']], [r['curves']['min'] for r in a['runs']], rtol=1e-5
  )
  more = tiny_config(objectives=(NEGCOS_ALT_LINEAR, INFONCE))  # Another objective list: the result is reused.
  assert run_lib.train_objective(more, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'a'), progress=interrupt) == a
  other = tiny_config(objectives=(NEGCOS_ALT_LINEAR,))
  other.num_epochs = 2
  with pytest.raises(ValueError, match='different configuration'):
    run_lib.train_objective(other, 'grid', NEGCOS_ALT_LINEAR, str(tmp_path / 'a'), progress=lambda s: None)


@pytest.mark.slow
def test_command_line_writes_results_and_figures_and_skips_finished(tmp_path):
  args = [
    sys.executable,
    '-m',
    'gsg_jax.experiments.landscape',
    '--config=configs/landscape.py:quick',
    f'--workdir={tmp_path}',
    '--config.n=96',
    '--config.batch_size=32',
    '--config.p=12',
    '--config.d=4',
    '--config.m=8',
    '--config.num_epochs=4',
    '--config.log_every_epochs=2',
    '--config.chunk_epochs=2',
    '--config.eval_size=32',
    "--config.objectives=('infonce',{'loss':'gsg','scheme':'alt','predictor':'none'})",  # A name, and fields.
    "--config.studies=('grid','warm_start')",
    '--config.study.warm_start.sparsities=(0.25,)',
    '--config.study.grid.sparsities=(0.25,)',
  ]
  first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'epoch 4/4' in first.stdout
  results = json.loads((tmp_path / 'results.json').read_text())
  assert set(results['studies']['grid']) == {'infonce', 'gsg_alt_none'}
  assert results['config']['objectives'] == ['infonce', 'gsg_alt_none']  # Stored by name, however given.
  assert {r['c'] for r in results['studies']['warm_start']['infonce']['runs']} == {1.0, 1.25, 1.5, 2.0}
  for figure in (
    'recovery_curves.png',
    'support_and_collapse.png',
    'end_vs_mask.png',
    'end_vs_sparsity.png',
    'warm_start.png',
  ):
    assert (tmp_path / figure).stat().st_size > 10_000
  second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert ': epoch ' not in second.stdout  # Nothing retrained: every objective's result.json is reused.
  assert json.loads((tmp_path / 'results.json').read_text())['studies'] == results['studies']


# ----------------------------------------------------------------------------- duplicates, the image guide, speed-ups


def test_duplicate_settings_are_detected_from_the_arrays():
  # d = 10: sparsity 0.1 and 0.2 both give one −1 and one +1 per sample, so the same arrays; 0.3 does not.
  cfg = tiny_config(d=10)
  cfg.study.grid = study_block((0.5,), (0.1, 0.2, 0.3))
  study = settings_lib.study_config(cfg, 'grid')
  obj = NEGCOS_ALT_NONE
  settings = settings_lib.run_settings(obj, study, 2, cfg.seed)
  runs, members = settings_lib.distinct_runs(settings, study, cfg, obj.towers)
  assert len(settings) == 6 and len(runs) == 4
  merged = [[settings[i]['sparsity'] for i in g] for g in members if len(g) > 1]
  assert merged == [[0.1, 0.2], [0.1, 0.2]]  # One pair per seed.
  assert all(len({settings[i]['seed'] for i in g}) == 1 for g in members)
  # d = 20: the counts differ ((1, 1) vs (2, 2)), nothing is merged.
  cfg20 = tiny_config(d=20, p=24)
  cfg20.study.grid = study_block((0.5,), (0.1, 0.2))
  study20 = settings_lib.study_config(cfg20, 'grid')
  assert len(settings_lib.distinct_runs(settings_lib.run_settings(obj, study20, 2, 0), study20, cfg20, 2)[0]) == 4


def test_duplicate_runs_train_once_and_say_what_they_stand_for(tmp_path):
  cfg = tiny_config(d=10, objectives=(NEGCOS_ALT_NONE,))
  cfg.study.grid = study_block((0.5,), (0.1, 0.2))
  res = run_lib.train_objective(cfg, 'grid', 'negcos_alt_none', str(tmp_path), progress=lambda s: None)
  assert len(res['runs']) == 2 and res['settings'] == 4
  for r in res['runs']:
    assert [s['sparsity'] for s in r['stands_for']] == [0.1, 0.2]
    assert {s['seed'] for s in r['stands_for']} == {r['seed']}


def _guide_fractions(scale_b: float, guide: str, batch: int = 8192):
  """Pair fractions of GSG's choice on random data through two SymReLU towers (B's kernel scaled)."""
  net = SymReLUNetwork(m=16, towers=2, guide=True)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch * 4, 20)), jnp.float32)
  variables = net.init(jax.random.key(0), x[:4], train=True, num_views=4)
  params = jax.tree_util.tree_map(lambda a: a, variables['params'])
  kernel = params['backbone']['tower_0']['kernel']
  params['backbone']['tower_1']['kernel'] = scale_b * kernel
  params['projector']['tower_1']['bias'] = params['projector']['tower_0']['bias']
  out = net.apply({'params': params}, x, train=True, num_views=4)
  views = lambda a: a.reshape(batch, 4, -1)
  if guide == 'image':
    _, aux = trainer_lib.image_guided_loss(
      views(out['prediction']), views(out['projection']), views(out['guide']), jax.random.key(1)
    )
  else:
    from gsg_jax.methods import gsg

    _, aux = gsg.guided_loss(views(out['prediction']), views(out['projection']), jax.random.key(1))
  return np.array([float(aux[f'gsg/pair_{a}{b}']) for a, b in ((1, 1), (1, 2), (2, 1), (2, 2))])


def test_image_guide_is_symmetric_whatever_the_towers():
  # Identical towers: by symmetry each of the four cross-image pairs wins a quarter of the time
  # (8192 draws: binomial std 0.005).
  np.testing.assert_allclose(_guide_fractions(1.0, 'image'), 0.25, atol=0.03)
  # Tower B three times larger: the image guide still reads tower A only, so still a quarter each ...
  np.testing.assert_allclose(_guide_fractions(3.0, 'image'), 0.25, atol=0.03)
  # ... while the guide on raw projections picks the pair of the smaller tower A (a, c) far more often.
  assert _guide_fractions(3.0, 'tower')[0] > 0.5


def test_nt_xent_once_equals_the_registry_infonce():
  from gsg_jax.methods import contrastive

  rng = np.random.default_rng(0)
  z1, z2 = (jnp.asarray(rng.normal(size=(64, 10)), jnp.float32) for _ in range(2))
  once = lambda a, b: trainer_lib.nt_xent(a, b, 0.05)
  contrastive_loss = lambda a, b: 0.5 * (contrastive.infonce(a, b, 0.05) + contrastive.infonce(b, a, 0.05))
  np.testing.assert_allclose(once(z1, z2), contrastive_loss(z1, z2), rtol=1e-5)
  ga, gb = jax.grad(once, argnums=(0, 1))(z1, z2)
  ra, rb = jax.grad(contrastive_loss, argnums=(0, 1))(z1, z2)
  np.testing.assert_allclose(ga, ra, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gb, rb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('entry', [NEGCOS_ALT_LINEAR, NEGCOS_ALT_NONE], ids=lambda o: o.name)
def test_per_tower_steps_equal_the_gated_generic_step(entry):
  program, data, rngs, state, _ = _tiny_program(entry)
  assert program.per_tower is not None
  one = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
  s0, rng = one(state), rngs[0]
  batch = {'x': data['x'][0, :32], 'keep_prob': data['keep'][0]}
  generic = jax.jit(program.trainer.train_step)
  for k in range(2):  # An A-step, then a B-step.
    want, mw = generic(s0, batch, rng)
    got, mg = jax.jit(program.per_tower[k].train_step)(s0, batch, rng)
    np.testing.assert_allclose(float(mg['loss']), float(mw['loss']), rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got.params, want.params)
    s0 = want


# ----------------------------------------------------------------------------- the full-rank study


def _fullrank_block(**kw):
  block = dict(
    kind='fullrank',
    p=20,
    num_epochs=2,
    warm_start=(1.0,),
    sparsities=(0.1,),
    mask_probs=(0.5,),
    norms=('column', 'row'),
    variants=(('inner', 'identity'), ('cosine', 'random')),
  )
  block.update(kw)
  return ml_collections.ConfigDict(block)


def test_fullrank_normalisation_gives_unit_columns_or_rows():
  w = jnp.asarray(np.random.default_rng(0).normal(size=(20, 20)) * 3.0, jnp.float32)
  np.testing.assert_allclose(np.linalg.norm(fullrank.normalise(w, 0.0), axis=0), 1.0, rtol=1e-5)  # Columns.
  np.testing.assert_allclose(np.linalg.norm(fullrank.normalise(w, 1.0), axis=1), 1.0, rtol=1e-5)  # Rows.
  assert not np.allclose(np.linalg.norm(fullrank.normalise(w, 0.0), axis=1), 1.0)


@pytest.mark.parametrize('loss,dictionary,norm', [('inner', 'identity', 'column'), ('cosine', 'random', 'row')])
def test_fullrank_step_is_the_authors_update(loss, dictionary, norm):
  """Online step: W_o ← normalise(W_o − lr ∇L_o), b_o, W_p by SGD; W_t, b_t untouched (then normalised)."""
  run = {'loss': loss, 'dictionary': dictionary, 'norm': norm, 'c': 1.0, 'sparsity': 0.1, 'mask_prob': 0.5, 'seed': 1}
  host = fullrank.init_run(run, 20, 64)
  data = {k: jnp.asarray(v) for k, v in host.items() if k != 'params'}
  params = {k: jnp.asarray(v) for k, v in host['params'].items()}
  idx, rng, lr = jnp.arange(32), jax.random.key(3), 0.005
  new, got_loss = fullrank._step(params, data, idx, rng, True, lr)
  masks = data_lib.bernoulli16(rng, data['keep'], (2, 32, 20)).astype(jnp.float32)
  x1, x2 = masks[0] * data['x'][:32], masks[1] * data['x'][:32]

  def authors(wo, bo, wp):  # Their SparseContrastiveModel.forward(optimize_online=True), use_bn False.
    zo = jax.nn.relu(x1 @ wo.T + bo) - jax.nn.relu(-(x1 @ wo.T + bo) + 2 * bo)
    h = x2 @ params['Wt'].T + params['bt']
    zt = jax.lax.stop_gradient(jax.nn.relu(h) - jax.nn.relu(-h + 2 * params['bt']))
    po = zo @ wp.T
    if loss == 'cosine':
      po = po / jnp.linalg.norm(po, axis=1, keepdims=True)
      zt = zt / jnp.linalg.norm(zt, axis=1, keepdims=True)
    return 2 - 2 * jnp.mean(jnp.sum(po * zt, 1))

  value, (g_wo, g_bo, g_wp) = jax.value_and_grad(authors, argnums=(0, 1, 2))(params['Wo'], params['bo'], params['Wp'])
  np.testing.assert_allclose(float(got_loss), float(value), rtol=1e-5)
  axis = 0 if norm == 'column' else 1
  unit = lambda w: w / np.linalg.norm(w, axis=axis, keepdims=True)
  np.testing.assert_allclose(new['Wo'], unit(np.asarray(params['Wo'] - lr * g_wo)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new['bo'], params['bo'] - lr * g_bo, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(new['Wp'], params['Wp'] - lr * g_wp, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(new['Wt'], unit(np.asarray(params['Wt'])), rtol=1e-5)
  np.testing.assert_array_equal(new['bt'], params['bt'])


@pytest.mark.parametrize('dictionary', ['identity', 'random'])
def test_fullrank_warm_start_to_infinity_recovers_exactly(dictionary):
  mins = []
  for c in (1.0, 2.0, 60.0):  # Noise std p^{−c/2}: 0.22, 0.05, 1e-39.
    run = {
      'loss': 'inner',
      'dictionary': dictionary,
      'norm': 'row',
      'c': c,
      'sparsity': 0.1,
      'mask_prob': 0.5,
      'seed': 2,
    }
    host = fullrank.init_run(run, 20, 16)
    if dictionary == 'identity':
      np.testing.assert_array_equal(host['M'], np.eye(20))
    mins.append(float(metrics.recovery(host['params']['Wo'], host['M'])['min']))
  assert mins[0] < mins[1] < mins[2]
  assert mins[2] == pytest.approx(1.0, abs=1e-6)


def test_fullrank_settings_cover_the_variants():
  runs = fullrank.settings(_fullrank_block(warm_start=(1.0, 2.0)), 2, 0)
  assert len(runs) == 2 * 2 * 2 * 2  # variants × norms × c × seeds.
  assert {(r['loss'], r['dictionary']) for r in runs} == {('inner', 'identity'), ('cosine', 'random')}
  with pytest.raises(ValueError, match='fullrank variant'):
    fullrank.settings(_fullrank_block(norms=('diagonal',)), 1, 0)


# ----------------------------------------------------------------------------- the reduced preset, end to end


def tiny_reduced_config():
  """The reduced preset's studies and objectives at toy sizes: seconds per objective."""
  c = landscape_config('reduced')
  c.n, c.batch_size, c.p, c.d, c.m, c.eval_size = 128, 32, 12, 4, 8, 32
  c.num_epochs, c.log_every_epochs, c.chunk_epochs = 4, 2, 2
  c.study.fullrank.num_epochs = 4
  c.objectives = (INFONCE, NEGCOS_ALT_NONE, Objective('gsg', 'alt', 'none'))
  c.study.grid.mask_probs_for = {}
  c.studies = ('grid', 'fullrank', 'infonce_nobn')
  return c


@pytest.mark.slow
def test_short_reduced_run_is_deterministic_for_a_seed(tmp_path):
  from gsg_jax.experiments.landscape import experiment

  a = experiment.run(tiny_reduced_config(), str(tmp_path / 'a'), progress=lambda s: None)
  b = experiment.run(tiny_reduced_config(), str(tmp_path / 'b'), progress=lambda s: None)
  assert a['summary'] == b['summary']
  for s in a['studies']:
    for o in a['studies'][s]:
      assert [r['curves'] for r in a['studies'][s][o]['runs']] == [r['curves'] for r in b['studies'][s][o]['runs']]
  gsg_end = a['studies']['grid']['gsg_alt_none']['runs'][0]['end']
  assert sum(gsg_end[f'pair_{k}'] for k in ('11', '12', '21', '22')) == pytest.approx(1.0, abs=1e-5)
  assert a['provenance']['cpu'] and a['provenance']['date']
  other = tiny_reduced_config()
  other.seed = 5
  c = experiment.run(other, str(tmp_path / 'c'), progress=lambda s: None)
  assert c['summary'] != a['summary']  # The seed matters.


def test_diagnostics_separate_mixing_from_out_of_span_weight():
  from gsg_jax.experiments.landscape import diagnostics

  m_dict = data_lib.dictionary(np.random.default_rng(0), 12, 3)
  pure = m_dict.T * np.array([[2.0], [-1.0], [0.5]])  # One neuron per latent, exact.
  d = diagnostics.describe(pure, m_dict)
  assert d['recovery_min'] == pytest.approx(1.0) and d['span'] == pytest.approx(1.0)
  assert d['purity'] == pytest.approx(1.0) and d['in_span_recovery'] == pytest.approx(1.0) and d['covered'] == 3
  mixed = np.stack([m_dict[:, 0] + m_dict[:, 1], m_dict[:, 1] + m_dict[:, 2], m_dict[:, 2] + m_dict[:, 0]])
  d = diagnostics.describe(mixed, m_dict)  # Every neuron reads two latents equally: in-span, not pure.
  assert d['span'] == pytest.approx(1.0) and d['purity'] == pytest.approx(2**-0.5)
  assert d['in_span_recovery'] == pytest.approx(2**-0.5) and d['covered'] == 0
  out_of_span = np.linalg.qr(np.concatenate([m_dict, np.random.default_rng(1).normal(size=(12, 1))], 1))[0][:, 3]
  noisy = pure / np.linalg.norm(pure, axis=1, keepdims=True) + out_of_span  # Pure, half the energy outside.
  d = diagnostics.describe(noisy, m_dict)
  assert d['span'] == pytest.approx(0.5) and d['purity'] == pytest.approx(1.0)
  assert d['recovery_min'] == pytest.approx(2**-0.5) and d['in_span_recovery'] == pytest.approx(1.0)


def _fake_result(name, ends_by_setting, m=50):
  """A result.json-like dict: runs with end values per (mask_prob, sparsity, c) and flat curves."""
  runs = []
  for (mask, q, c), values in ends_by_setting.items():
    for seed, v in enumerate(values, 1):
      end = {'min': v[0], 'median': v[0], 'max': v[0], 'normalized_std': v[1]}
      run = {'mask_prob': mask, 'sparsity': q, 'c': c, 'seed': seed}
      runs.append(
        {**run, 'stands_for': [run], 'end': end, 'curves': {k: [v[2] if len(v) > 2 else x, x] for k, x in end.items()}}
      )
  return {'objective': name, 'epochs': [0, 100], 'runs': runs, 'meta': {'study': {}}}


def test_report_verdicts_follow_their_rules():
  from gsg_jax.experiments.landscape import claims as claims_lib

  healthy = 1 / np.sqrt(50)
  grid = {
    'infonce': _fake_result('infonce', {(None, 0.1, None): [(0.97, 0.1)] * 3, (None, 0.3, None): [(0.96, 0.1)] * 3}),
    'negcos_alt_none': _fake_result(
      'negcos_alt_none', {(0.5, 0.1, None): [(0.45, healthy)] * 3, (0.9, 0.1, None): [(0.40, 0.0)] * 3}
    ),
  }
  warm = {
    'negcos_alt_none': _fake_result(
      'negcos_alt_none', {(0.5, 0.1, 1.0): [(0.40, healthy, 0.60)] * 3, (0.5, 0.1, 2.0): [(0.95, healthy, 0.96)] * 3}
    )
  }
  rows = {
    r['claim'][:2]: r['verdict']
    for r in claims_lib.claims({'studies': {'grid': grid, 'warm_start': warm}, 'config': {'m': 50}})
  }
  assert rows['C1'] == 'reproduced'
  assert rows['C2'] == 'partly'  # Bad minima at both masks, but collapsed (std 0) at mask 0.9.
  assert rows['C3'] == 'not run'
  assert rows['C4'] == 'reproduced'  # c = 2 stays (0.96 → 0.95), c = 1 drifts (0.60 → 0.40).
  assert rows['C5'] == 'not reproduced'  # One collapsed setting fails the arm.
  grid['infonce'] = _fake_result('infonce', {(None, 0.1, None): [(0.86, 0.1)] * 3, (None, 0.3, None): [(0.6, 0.1)] * 3})
  c1 = claims_lib.claims({'studies': {'grid': grid}, 'config': {'m': 50}})[0]
  assert c1['verdict'] == 'partly'  # Near at 0.1 (≥ 0.8), far at 0.3: not every latent, not every sparsity.


def test_fullrank_collapse_measures():
  run = {'M': jnp.eye(20)}
  orthogonal = fullrank.evaluate({'Wo': jnp.eye(20) * 3.0}, run)
  assert float(orthogonal['min']) == pytest.approx(1.0)
  assert float(orthogonal['row_coherence']) == pytest.approx(0.0, abs=1e-6)
  assert float(orthogonal['top_share']) == pytest.approx(1 / 20, rel=1e-5)
  rank_one = fullrank.evaluate({'Wo': jnp.ones((20, 20)) / np.sqrt(20)}, run)  # Every neuron the same line.
  assert float(rank_one['min']) == pytest.approx(20**-0.5, rel=1e-5)
  assert float(rank_one['row_coherence']) == pytest.approx(1.0, rel=1e-5)
  assert float(rank_one['top_share']) == pytest.approx(1.0, rel=1e-5)
