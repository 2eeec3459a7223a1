"""End to end: training runs and writes its outputs, the online probe stays off the representation, bad configs
fail clearly. (Resuming after SIGTERM/SIGKILL and unusable workdirs: test_faults.py.)"""

import json
import os
import re

import jax
import numpy as np
import pytest
from conftest import tiny_config

from gsg_jax.training import build_trainer, train_and_evaluate


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow  # Trains end to end.
@pytest.mark.parametrize(
  'name,predictor', [('simsiam_gsg', 'mlp'), ('byol', 'none'), ('byol_directpred', 'directpred')]
)
def test_training_writes_outputs(tmp_path, name, predictor):
  config = tiny_config(name, **{'method.predictor': predictor})
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == 16 and np.isfinite(summary['final_loss'])
  records = read_metrics(tmp_path)
  train_records = [r for r in records if r['kind'] == 'train']
  eval_records = [r for r in records if r['kind'] == 'eval']
  assert [r['step'] for r in train_records] == [4, 8, 12, 16]
  assert [r['step'] for r in eval_records] == [0, 8, 16]  # Random init, then every epoch.
  for key in ('loss', 'learning_rate', 'projection_std', 'images_per_second', 'epoch'):
    assert key in train_records[-1]
  assert 'probe/loss' in train_records[-1]
  k, heldout = config.eval.knn_k, config.data.builtin_num_heldout
  for r in eval_records:
    # The kNN evaluator's keys: the configured k and T, k = 20 and 200 at that T and at T = 0.1 (knn_settings).
    assert set(r) == {'step', 'epoch', 'kind', 'time', 'knn_memory_examples', 'online_probe_top1'} | {
      f'knn_top{t}{at}' for t in (1, 5) for at in ('', *(f'@{kk}{tt}' for kk in (20, 200) for tt in ('', '_t0.1')))
    }
    assert r['knn_memory_examples'] == config.data.builtin_num_train
    assert r['knn_top1'] == r[f'knn_top1@{k}'] <= r['knn_top5'] == r[f'knn_top5@{k}']
    for key in ('knn_top1', 'knn_top5', 'online_probe_top1'):  # Percentages of the held-out images.
      correct = r[key] * heldout / 100
      assert correct == pytest.approx(round(correct), abs=1e-6) and 0 <= round(correct) <= heldout, (key, r)
  assert summary['knn_top1'] == eval_records[-1]['knn_top1']
  assert summary['online_probe_top1'] == eval_records[-1]['online_probe_top1']
  if config.method.loss == 'gsg':
    assert 'gsg/pair_11' in train_records[-1]
  if config.method.target == 'ema':
    assert train_records[-1]['ema_momentum'] == pytest.approx(config.method.ema.momentum)
  if predictor == 'directpred':
    last = train_records[-1]
    assert last['predictor/wp_eig_max'] == pytest.approx(1.1, abs=1e-4)  # √1 + ε for the top eigenvalue.
    assert 0 <= last['predictor/correlation_eig_min'] <= last['predictor/correlation_eig_max']
  assert os.path.isdir(tmp_path / 'checkpoints' / '16')
  assert json.load(open(tmp_path / 'config.json'))['method']['predictor'] == predictor
  assert os.listdir(tmp_path / 'tensorboard')


@pytest.mark.parametrize('name', ['simsiam', 'byol'])
def test_online_probe_gradient_reaches_only_the_probe(name):
  """The probe's cross-entropy must not change the representation: stop-gradient at the features."""
  config = tiny_config(name)
  with_probe, without_probe = build_trainer(config, 8, num_classes=10), build_trainer(config, 8, num_classes=None)
  state = jax.jit(with_probe.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (16,), dtype=np.int32)
  x = jax.jit(lambda b, k: with_probe.views(b, k, 2))({'image': images}, jax.random.key(1))
  target = with_probe.method.target
  targets, _ = jax.jit(lambda e, x: target.projections(e, with_probe.network, x, 2))(state.extras['target'], x)
  assert (targets is None) == (name == 'simsiam')

  def grad_fn(trainer):
    objective = lambda p, labels: trainer.loss(p, state.model_state, x, targets, jax.random.key(2), labels)[0]
    return jax.jit(jax.grad(objective))

  grad = grad_fn(with_probe)
  grads = grad(state.params, labels)
  network_params = {k: v for k, v in state.params.items() if k != 'probe'}
  reference = grad_fn(without_probe)(network_params, None)
  assert set(grads) == set(reference) | {'probe'}
  for name in reference:
    jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads[name], reference[name]
    )
  assert all(float(np.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads['probe']))
  # And the probe's own loss moves the probe: its gradient differs with other labels.
  other = grad(state.params, (labels + 1) % 10)
  assert not np.allclose(other['probe']['kernel'], grads['probe']['kernel'])


@pytest.mark.parametrize('name,views_per_pass', [('simsiam_gsg', 1), ('simsiam_gsg', 2), ('byol_gsg', 2), ('byol', 1)])
def test_views_per_pass_takes_the_same_steps(name, views_per_pass):
  """A step with the views in several network passes equals the one-pass step: the same losses, parameters,
  BatchNorm running statistics and target network (BYOL's EMA pass is split too)."""
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
    'label': rng.integers(0, 10, (16,), dtype=np.int32),
  }
  results = []
  for k in (0, views_per_pass):
    trainer = build_trainer(tiny_config(name, **{'model.views_per_pass': k}), 8, num_classes=10)
    state = jax.jit(trainer.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
    step = jax.jit(trainer.train_step)
    for i in range(2):
      state, metrics = step(state, batch, jax.random.key(i))
    results.append((state, metrics))
  (one, one_metrics), (split, split_metrics) = results
  for key in ('loss', 'probe/loss'):
    np.testing.assert_allclose(split_metrics[key], one_metrics[key], rtol=1e-5)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for part in ('params', 'model_state', 'extras'):
    jax.tree_util.tree_map(close, getattr(split, part), getattr(one, part))
  # And the split program is what it says: the first convolution sees 16·k rows of 16×16×3 crops per pass.
  lowered = jax.jit(trainer.train_step).lower(state, batch, jax.random.key(0)).as_text()
  rows = {int(n) for n in re.findall(r'convolution.*?tensor<(\d+)x16x16x3xf32>', lowered)}
  assert rows == {16 * views_per_pass}


def test_restoring_a_mismatched_checkpoint_says_why(tmp_path):
  import jax.numpy as jnp

  from gsg_jax.training.checkpointing import Checkpointer

  checkpointer = Checkpointer(str(tmp_path), 1, 1)
  checkpointer.save(1, {'params': {'backbone': jnp.zeros(3)}}, force=True)
  checkpointer.close()
  checkpointer = Checkpointer(str(tmp_path), 1, 1)
  try:
    with pytest.raises(ValueError, match='does not match the state this config builds'):
      checkpointer.restore({'params': {'backbone': jnp.zeros(3), 'probe': jnp.zeros(2)}})
  finally:
    checkpointer.close()


@pytest.mark.parametrize(
  'key,value,message',
  [
    ('method.loss', 'simclr', 'method.loss'),
    ('method.predictor', 'True', 'method.predictor'),
    ('method.target', 'momentum', 'method.target'),
    ('optim.rules', (('predictor/.*', {'schedul': 'constant'}),), 'schedul'),
    ('model.backbone', 'vit', 'model.backbone'),
    ('optim.base_lr', -1.0, 'optim.base_lr'),
    ('batch_size', 1, 'batch_size'),
    ('data.source', 'nowhere', 'source'),
    ('model.views_per_pass', -1, 'views_per_pass'),
    ('model.views_per_pass', 3, 'views_per_pass=3 is invalid: it must divide'),
  ],
)
def test_bad_config_values_fail_clearly(tmp_path, key, value, message):
  with pytest.raises(ValueError, match=message):
    train_and_evaluate(tiny_config(**{key: value}), str(tmp_path))


def test_cifar10_cpu_preset_is_one_footing_for_every_method():
  """Every method config has the CPU preset, and it differs between methods only in the method: the table in the
  README compares methods at equal data, model, crop, batch, schedule and epochs. The contrastive losses differ
  in their recipe's learning rate only."""
  from gsg_jax import config_lib

  shared = None
  for name in ('simsiam', 'simsiam_gsg', 'byol', 'byol_gsg', 'byol_directpred', 'simclr', 'dcl', 'dhel', 'kcl'):
    c = config_lib.named_config(name, 'cifar10_cpu')
    if name in ('simclr', 'dcl', 'dhel', 'kcl'):
      assert c.optim.base_lr == 1.0, name
      c.optim.base_lr = 0.1
    config_lib.validate(c)
    assert c.data.source == 'folder' and c.data.path == config_lib.CIFAR10_ZIP
    assert c.model.backbone == 'convnet' and c.augment.crop_size == 24 and c.eval.knn_k == 200
    footing = {k: v for k, v in c.to_dict().items() if k != 'method'}
    footing['data'] = {k: v for k, v in footing['data'].items() if k != 'stream_views'}  # The method's views.
    assert shared is None or footing == shared, name
    shared = footing
