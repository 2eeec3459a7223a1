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
  return SiameseNetwork(build_backbone(config), projector, predictor)


def init_variables(network: nn.Module, rng: jax.Array, row_shape) -> dict[str, Any]:
  """Parameters and batch statistics (if any) of ``network`` for rows of ``row_shape`` (images: H, W, C)."""
  x = jnp.zeros((2,) + tuple(row_shape), jnp.float32)
  return dict(jax.jit(lambda r: network.init(r, x, train=True))(rng))
