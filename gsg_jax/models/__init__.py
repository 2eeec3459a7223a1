"""Networks: backbones, heads, and the Siamese network that combines them.

``build_network(model_config, predictor)`` returns a ``SiameseNetwork``:

    features   = backbone(x)            # the representation that is evaluated
    projection = projector(features)    # z
    prediction = predictor(projection)  # p (p = z when there is no predictor)

Called as ``network.apply(variables, x, train=..., num_views=V)`` on image-major
rows (row ``b·V + v`` is view ``v`` of image ``b``), it returns a dict of the
three arrays. ``with_predictor=False`` runs backbone and projector only: the
BYOL target network is that part of the online network, with its own
(EMA) parameters ``{'backbone', 'projector'}``. The predictor module comes
from the method's predictor component (``gsg_jax.methods.predictors``).

``model.init`` chooses the heads' initialisation (``heads.INIT_SCHEMES``:
PyTorch's ``nn.Linear`` default, the reference's, or Flax's ``nn.Dense``
default). The backbones' convolutions are initialised as torchvision's
ResNet under both (Kaiming normal, fan_out: the reference's already).
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsg_jax.errors import ConfigError
from gsg_jax.models.convnet import ConvNet
from gsg_jax.models.heads import INIT_SCHEMES, Projector
from gsg_jax.models.resnet import resnet18, resnet50

BACKBONES = ('resnet18', 'resnet50', 'convnet')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class SiameseNetwork(nn.Module):
  backbone: nn.Module
  projector: nn.Module
  predictor: Optional[nn.Module] = None
  views_per_pass: int = 0  # Training passes (``train_pass``) take this many views at a time; 0: all at once.

  def __call__(self, x, *, train: bool, num_views: int = 1, with_predictor: bool = True):
    features = self.backbone(x, train=train, num_views=num_views)
    projection = self.projector(features, train=train, num_views=num_views)
    if with_predictor and self.predictor is not None:
      prediction = self.predictor(projection, train=train, num_views=num_views)
    else:
      prediction = projection
    f32 = lambda a: a.astype(jnp.float32)
    return {'features': f32(features), 'projection': f32(projection), 'prediction': f32(prediction)}

  def encode(self, x):
    """Backbone features in evaluation mode (running BatchNorm statistics)."""
    return self.backbone(x, train=False).astype(jnp.float32)


def train_pass(network: SiameseNetwork, variables, x, num_views: int, with_predictor: bool = True):
  """Training-mode ``network`` on view rows ``x`` [B·V, ...] → (outputs, new ``batch_stats``).

  With ``network.views_per_pass = k`` (0 < k < V) the V views go through the
  network in V/k passes of k views each instead of one pass over all rows.
  The function is the same: BatchNorm's statistics are per view either way,
  every pass starts from the same running statistics, and their new values
  are averaged over the passes, which equals the one-pass update
  ``m · running + (1 − m) · mean over views``. Why it exists: XLA:CPU's
  convolutions (and most of all their input gradients) cost more per row as
  a call's rows grow, so on a CPU the views in several smaller passes run
  faster than all at once (``benchmarks/gsg_cost.py`` measures it). On an
  accelerator one big pass is the usual faster shape; leave it at 0 there.
  """
  k = getattr(network, 'views_per_pass', 0) or num_views  # Other networks (the landscape's) take one pass.
  if num_views % k:
    raise ConfigError(f"config.model.views_per_pass={k} is invalid: it must divide the method's {num_views} views.")
  apply = lambda rows, v: network.apply(
    variables, rows, train=True, num_views=v, with_predictor=with_predictor, mutable=['batch_stats']
  )
  if k == num_views:
    out, updates = apply(x, num_views)
    return out, updates.get('batch_stats', {})
  by_view = x.reshape((x.shape[0] // num_views, num_views) + x.shape[1:])  # [B, V, ...]
  passes = [apply(by_view[:, g : g + k].reshape((-1,) + x.shape[1:]), k) for g in range(0, num_views, k)]
  # Back to image-major rows: [B, k, D] per pass, joined along the view axis.
  out = {
    key: jnp.concatenate([o[key].reshape(by_view.shape[0], k, -1) for o, _ in passes], 1).reshape(x.shape[0], -1)
    for key in passes[0][0]
  }
  stats = [u.get('batch_stats', {}) for _, u in passes]
  return out, jax.tree_util.tree_map(lambda *s: sum(s) / len(s), *stats)


def _dtype(config):
  if config.dtype not in DTYPES:
    raise ConfigError(f'config.model.dtype={config.dtype!r} is invalid: expected one of {tuple(DTYPES)}.')
  return DTYPES[config.dtype]


def build_backbone(config) -> nn.Module:
  """The backbone ``config`` (the ``config.model`` block) names; a ConfigError for a bad value."""
  dtype = _dtype(config)
  if not config.width > 0:
    raise ConfigError(f'config.model.width={config.width!r} is invalid: expected positive.')
  if config.backbone == 'convnet':
    return ConvNet(width=config.width, dtype=dtype)
  factories = {'resnet18': resnet18, 'resnet50': resnet50}
  if config.backbone not in factories:
    raise ConfigError(f'config.model.backbone={config.backbone!r} is invalid: expected one of {BACKBONES}.')
  return factories[config.backbone](width=config.width, cifar_stem=config.cifar_stem, remat=config.remat, dtype=dtype)


def build_network(config, predictor: Optional[nn.Module] = None) -> SiameseNetwork:
  """The Siamese network described by ``config`` (the ``config.model`` block), with ``predictor`` (None: p = z).

  Building checks the block (ConfigError naming the key): ``config_lib.validate`` dry-builds.
  """
  dtype = _dtype(config)
  init_scheme = config.init
  if init_scheme not in INIT_SCHEMES:
    raise ConfigError(f'config.model.init={init_scheme!r} is invalid: expected one of {INIT_SCHEMES}.')
  for key, minimum in (('projection_dim', 1), ('projector_hidden_dim', 1), ('projector_layers', 1)):
    if not config[key] >= minimum:
      raise ConfigError(f'config.model.{key}={config[key]!r} is invalid: expected >= {minimum}.')
  projector = Projector(
    config.projector_hidden_dim,
    config.projection_dim,
    config.projector_layers,
    dtype,
    config.projector_output_bn,
    init_scheme,
  )
  if predictor is not None and hasattr(predictor, 'init_scheme'):
    predictor = predictor.clone(init_scheme=init_scheme)
  views_per_pass = config.get('views_per_pass', 0)  # Absent from the configs of runs made before it existed.
  if views_per_pass < 0:
    raise ConfigError(f'config.model.views_per_pass={views_per_pass!r} is invalid: expected >= 0.')
  return SiameseNetwork(build_backbone(config), projector, predictor, views_per_pass)


def init_variables(network: nn.Module, rng: jax.Array, row_shape) -> dict[str, Any]:
  """Parameters and batch statistics (if any) of ``network`` for rows of ``row_shape`` (images: H, W, C)."""
  x = jnp.zeros((2,) + tuple(row_shape), jnp.float32)
  return dict(jax.jit(lambda r: network.init(r, x, train=True))(rng))
