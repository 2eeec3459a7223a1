r"""The authors' full-rank study (p = d = m = 20): warm start, weight normalisation, two losses.

What the authors ran (``scripts/ncl_no_pred_ws_cn.sh`` / ``ncl_no_pred_ws_rn.sh``: ``main.py --model
simplified-pred --use_bn False --use_pred_bias False --use_alt_norm/--use_row_norm``, configs
``fullrank_*_ws*.yaml``; their ``SparseContrastiveModel`` and ``alternate_train``), re-written in JAX:

Data: x = M z (σ₀ = 0: no noise), p = d = m = 20, n = 3000, sparse z with the
exact counts of ``data.latents``; M = I (``--m_identity True``) or the Q of a
Gaussian matrix. Views: independent masks D₁, D₂ (Bernoulli(1 − mask
probability) per coordinate), x_v = D_v x.

Model: online and target encoders f_o(x) = SymReLU(W_o x + b_o, b_o),
f_t(x) = SymReLU(W_t x + b_t, b_t), a shared linear predictor W_p (m×m, no
bias), no BatchNorm. Alternating SGD (lr 0.005, batch 512, the last partial
batch kept: 6 steps per epoch, each epoch starting with an online step):

    online step:  L_o = 2 − 2 · mean_i ⟨n(W_p z_o,i), n(sg z_t,i)⟩     → W_o, b_o, W_p
    target step:  L_t = 2 − 2 · mean_i ⟨n(sg z_o,i), n(W_p z_t,i)⟩     → W_t, b_t, W_p

with z_o = f_o(x₁), z_t = f_t(x₂), and n(v) = v/‖v‖ for the ``cosine`` loss
(``--normalize_repr True``), n(v) = v for the un-normalised ``inner``
product (``--normalize_repr False``). After every step both encoders'
weights are normalised (W: m×p, rows = neurons):

    column:  W[:, k] ← W[:, k] / ‖W[:, k]‖   for every input coordinate k  (``--use_alt_norm``)
    row:     W[j, :] ← W[j, :] / ‖W[j, :]‖   for every neuron j             (``--use_row_norm``)

Init: W_o, W_t = (M + N(0, p^{−c}))ᵀ independently (``gen_Winit`` with m = d:
M_S = M), biases U(±1/√p) and W_p U(±1/√m) (torch's ``nn.Linear``). The
recovery metric reads W_o. The authors' scripts pair M = I with the ``inner``
loss and a random M with ``cosine``; ``variants`` in the config follows them.
Their scripts also run one-hot latents (``fullrank_pre_alter_ws_one_hot.yaml``)
and name a ``fullrank_pre_ws.yaml`` that their repository does not contain;
this module runs the sparse latents of ``fullrank_nopre_ws.yaml`` (σ₀ = 0,
c ∈ {1, 1.25, 1.5, 2}, the default mask probabilities and sparsities).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from gsg_jax.errors import ConfigError
from gsg_jax.experiments.landscape import data as data_lib
from gsg_jax.experiments.landscape import metrics as metrics_lib
from gsg_jax.experiments.landscape.model import sym_relu
from gsg_jax.methods.similarity import l2_normalize

LOSSES = ('inner', 'cosine')
NORMS = ('column', 'row')
DICTIONARIES = ('identity', 'random')


def normalise(w, norm_is_row):
  """W [m, p] with unit columns (``norm_is_row`` = 0) or unit rows (1); a traced flag, so runs share a program."""
  col = w / jnp.linalg.norm(w, axis=0, keepdims=True)
  row = w / jnp.linalg.norm(w, axis=1, keepdims=True)
  return jnp.where(norm_is_row > 0, row, col)


def settings(block, num_seeds: int, seed: int) -> list[dict]:
  """Every run: (loss, dictionary) variant × norm × c × sparsity × mask probability × seed."""
  out = []
  for (loss, dictionary), norm, c, q, mp, i in itertools.product(
    block.variants, block.norms, block.warm_start, block.sparsities, block.mask_probs, range(num_seeds)
  ):
    if loss not in LOSSES or norm not in NORMS or dictionary not in DICTIONARIES:
      raise ConfigError(
        f'fullrank variant ({loss}, {dictionary}, {norm}): expected loss in {LOSSES}, '
        f'dictionary in {DICTIONARIES}, norm in {NORMS}.'
      )
    out.append(
      {
        'loss': loss,
        'dictionary': dictionary,
        'norm': norm,
        'c': float(c),
        'sparsity': q,
        'mask_prob': mp,
        'seed': seed + 1 + i,
      }
    )
  return out


def setting_label(run: dict) -> str:
  return f'{run["loss"]} loss, M={run["dictionary"]}, {run["norm"]} norm, c={run["c"]}, sparsity={run["sparsity"]}'


def init_run(run: dict, p: int, n: int) -> dict:
  """Host arrays of one run: x [n, p], M [p, p], the parameters, keep probability and flags."""
  rng = np.random.default_rng([run['seed'], 20])
  m_dict = np.eye(p) if run['dictionary'] == 'identity' else data_lib.dictionary(rng, p, p)
  z = data_lib.latents(rng, n, p, run['sparsity'])
  x = z @ m_dict.T
  noise = lambda: rng.normal(0.0, 1.0 / p ** (run['c'] / 2), (p, p))
  bound = 1.0 / np.sqrt(p)
  params = {
    'Wo': (m_dict + noise()).T,
    'Wt': (m_dict + noise()).T,
    'bo': rng.uniform(-bound, bound, p),
    'bt': rng.uniform(-bound, bound, p),
    'Wp': rng.uniform(-bound, bound, (p, p)),
  }
  is_row = float(run['norm'] == 'row')  # The weights are normalised after every step (not at init, as theirs).
  f32 = lambda a: np.asarray(a, np.float32)
  return {
    'x': f32(x),
    'M': f32(m_dict),
    'params': {k: f32(v) for k, v in params.items()},
    'keep': np.float32(1.0 - run['mask_prob']),
    'cosine': np.float32(run['loss'] == 'cosine'),
    'row': np.float32(is_row),
  }


def _encode(w, b, x):
  return sym_relu(x @ w.T + b, b)


def _loss(trainable, frozen, online: bool, x1, x2, cosine):
  """L_o (``online``) or L_t of the module docstring; ``trainable``/``frozen`` hold the step's parameters."""
  params = {**frozen, **trainable}
  zo, zt = _encode(params['Wo'], params['bo'], x1), _encode(params['Wt'], params['bt'], x2)
  if online:
    pred, target = zo @ params['Wp'].T, jax.lax.stop_gradient(zt)
  else:
    pred, target = zt @ params['Wp'].T, jax.lax.stop_gradient(zo)
  n = lambda v: jnp.where(cosine > 0, l2_normalize(v), v)
  return 2.0 - 2.0 * jnp.mean(jnp.sum(n(pred) * n(target), -1))


def _step(params, run, idx, rng, online: bool, lr: float):
  x = run['x'][idx]
  masks = data_lib.bernoulli16(rng, run['keep'], (2,) + x.shape).astype(jnp.float32)
  names = ('Wo', 'bo', 'Wp') if online else ('Wt', 'bt', 'Wp')
  trainable = {k: params[k] for k in names}
  frozen = {k: v for k, v in params.items() if k not in names}
  loss, grads = jax.value_and_grad(_loss)(trainable, frozen, online, masks[0] * x, masks[1] * x, run['cosine'])
  params = {**params, **{k: trainable[k] - lr * grads[k] for k in names}}
  params['Wo'] = normalise(params['Wo'], run['row'])
  params['Wt'] = normalise(params['Wt'], run['row'])
  return params, loss


def epoch(params, run, rng, e, batch_size: int, lr: float):
  """One epoch: a fresh permutation, steps online/target alternating from online, the partial batch kept."""
  n = run['x'].shape[0]
  perm = jnp.argsort(jax.random.bits(jax.random.fold_in(jax.random.fold_in(rng, 1), e), (n,)))
  full = n // batch_size
  batches = [perm[k * batch_size : (k + 1) * batch_size] for k in range(full)]
  if n % batch_size:
    batches.append(perm[full * batch_size :])
  losses = []
  for k, idx in enumerate(batches):  # 6 steps at n = 3000: unrolled, each with its static online/target role.
    step_rng = jax.random.fold_in(jax.random.fold_in(rng, 2), e * len(batches) + k)
    params, loss = _step(params, run, idx, step_rng, k % 2 == 0, lr)
    losses.append(loss)
  return params, jnp.mean(jnp.stack(losses))


def evaluate(params, run):
  """Recovery of W_o, and whether its neurons collapsed onto one direction.

  ``row_coherence`` = mean over pairs j ≠ k of |cos(w_j, w_k)| (1: every neuron the same line; about
  √(2/(πp)) ≈ 0.18 for random rows at p = 20, 0 for orthogonal ones; a zero row counts as 0);
  ``top_share`` = σ₁² / Σ σ_k² of W_o (1: rank one; 1/m for orthogonal rows of equal norm).
  """
  w = params['Wo']
  unit = w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)
  m = w.shape[0]
  coherence = (jnp.sum(jnp.abs(unit @ unit.T)) - m) / (m * (m - 1))
  sv = jnp.linalg.svd(w, compute_uv=False)
  return {**metrics_lib.recovery(w, run['M']), 'row_coherence': coherence, 'top_share': sv[0] ** 2 / jnp.sum(sv**2)}


def make_chunk(batch_size: int, lr: float, epochs_per_log: int):
  """jit(vmap) of ``num_logs`` log intervals of ``epochs_per_log`` epochs over stacked runs."""

  def one(params, run, rng, first_epoch, num_logs):
    def interval(params, k):
      es = first_epoch + k * epochs_per_log + jnp.arange(epochs_per_log)
      params, losses = jax.lax.scan(lambda p, e: epoch(p, run, rng, e, batch_size, lr), params, es)
      return params, {'loss': losses[-1], **evaluate(params, run)}

    return jax.lax.scan(interval, params, jnp.arange(num_logs))

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None)), static_argnums=(4,), donate_argnums=(0,))
