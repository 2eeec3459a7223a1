"""The configuration shared by every config file, its presets, and its checks.

``configs/<method>.py`` files are one line each: they call ``make_config``
with their method and the preset named after the colon, e.g.
``--config=configs/byol_gsg.py:quick``. Presets:

* (none) / ``cifar10``: the paper's CIFAR-10 setting, data from TFDS.
* ``cifar10_zip``: the same recipe on ``../shared/data/cifar10-train-jpeg.zip``
  (an image-folder zip; 10% held out for evaluation).
* ``imagenet``: the reference's ImageNet setting (TFDS imagenet2012, streamed).
* ``quick``: the built-in synthetic dataset and a small ConvNet; about two
  minutes on 2 CPU cores.

Each value carries a comment saying where it comes from.
"""

import ml_collections

from gsg_jax.data import default_data_config
from gsg_jax.data.augment import default_augment_config

PRESETS = ('cifar10', 'cifar10_zip', 'imagenet', 'quick')
CIFAR10_ZIP = '../shared/data/cifar10-train-jpeg.zip'


def make_config(method: str, guided: bool, preset: str | None = None) -> ml_collections.ConfigDict:
  preset = preset or 'cifar10'
  if preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r}: expected one of {PRESETS}.')
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.method = ml_collections.ConfigDict()
  c.method.name = method            # 'simsiam' or 'byol'.
  c.method.guided = guided          # Guided stop-gradient (four views, pair guide).
  c.method.predictor = True         # False: identity predictor (p = z).
  c.method.ema_momentum = 0.99      # GSG reference: fixed 0.99 for BYOL.
  c.method.ema_schedule = 'constant'  # or 'cosine' (BYOL paper: from ema_momentum up to 1).

  c.model = ml_collections.ConfigDict()
  c.model.backbone = 'resnet18'     # SimSiam CIFAR experiments: ResNet-18, CIFAR variant.
  c.model.width = 64
  c.model.cifar_stem = True         # 3×3 stride-1 stem, no max-pool.
  c.model.projection_dim = 2048     # Reference projector/predictor output: 2048.
  c.model.projector_hidden_dim = 2048
  c.model.projector_layers = 3      # Linear-BN-ReLU ×2, Linear, BN (no affine).
  c.model.predictor_hidden_dim = 512  # Reference predictor bottleneck.
  c.model.dtype = 'float32'         # or 'bfloat16' compute (parameters stay float32).
  c.model.remat = False             # Rematerialise ResNet blocks to save memory.

  c.data = default_data_config()
  c.data.source = 'tfds'
  c.data.tfds_name = 'cifar10'
  c.augment = default_augment_config()  # SimSiam's CIFAR augmentations (no blur).

  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = 'sgd'         # SimSiam: SGD, momentum 0.9.
  c.optim.momentum = 0.9
  c.optim.base_lr = 0.03            # SimSiam CIFAR-10: lr = 0.03 × batch/256.
  c.optim.weight_decay = 5e-4       # SimSiam CIFAR-10.
  c.optim.warmup_epochs = 0.0
  c.optim.fix_pred_lr = True        # SimSiam reference: predictor lr not decayed.
  c.batch_size = 512                # SimSiam CIFAR-10.
  c.num_epochs = 800                # SimSiam CIFAR-10.

  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval_every_epochs = 10          # kNN monitor period.
  c.eval = ml_collections.ConfigDict()
  c.eval.knn_k = 200                # InstDisc / SimSiam kNN monitor: k = 200, T = 0.1.
  c.eval.knn_temperature = 0.1
  c.eval.batch_size = 1024

  c.online_probe = ml_collections.ConfigDict()
  c.online_probe.enabled = True     # solo-learn: linear head on stop-gradient features, trained alongside.
  c.online_probe.learning_rate = 0.1  # solo-learn's classifier_lr (SGD, momentum 0.9, no weight decay).

  c.distributed = ml_collections.ConfigDict()
  c.distributed.mode = 'auto'       # 'auto' | 'explicit' | 'off' (see gsg_jax.parallel).
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  c.distributed.local_device_ids = ()

  if preset == 'cifar10_zip':
    c.data.source = 'folder'
    c.data.path = CIFAR10_ZIP
    c.data.heldout_fraction = 0.1   # No test split in the zip: hold out 10% (5,000 images).
  elif preset == 'imagenet':
    c.model.backbone = 'resnet50'   # GSG/SimSiam reference: ResNet-50.
    c.model.cifar_stem = False
    c.data.tfds_name = 'imagenet2012'
    c.data.train_split, c.data.heldout_split = 'train', 'validation'
    c.data.image_size = 256
    c.data.stream_image_size = 256  # Host images; random resized crop to 224 on the accelerator.
    c.augment.crop_size = 224
    c.augment.blur_prob = 0.5       # SimSiam/BYOL ImageNet recipe.
    c.augment.mean = (0.485, 0.456, 0.406)
    c.augment.std = (0.229, 0.224, 0.225)
    c.augment.eval_resize = 256     # Resize 256, centre crop 224.
    c.optim.base_lr = 0.05          # SimSiam reference ImageNet.
    c.optim.weight_decay = 1e-4
    c.batch_size = 512
    c.num_epochs = 100
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 2500
  elif preset == 'quick':
    # Sized for about two minutes on 2 CPU cores (measured: ~75 s of training, ~340 img/s for SimSiam).
    c.data.source = 'builtin'
    c.data.builtin_num_train = 4096
    c.data.builtin_num_heldout = 1024
    c.model.backbone = 'convnet'    # Small enough for a laptop CPU.
    c.model.width = 16
    c.model.projection_dim = 256
    c.model.projector_hidden_dim = 256
    c.model.predictor_hidden_dim = 64
    c.augment.crop_size = 24        # 24×24 views of the 32×32 images: half the cost of 32×32.
    c.optim.base_lr = 0.1
    c.batch_size = 128
    c.num_epochs = 6
    c.log_every_steps = 16
    c.checkpoint_every_steps = 64
    c.eval_every_epochs = 2
    c.eval.knn_k = 20               # Small memory bank (4,096 images).
    c.online_probe.learning_rate = 1.0  # 192 steps only: held-out 30.4% at 1.0 against 21.3% at 0.1 (measured).
  return c


def validate(c) -> None:
  """Raise ValueError naming the first invalid key. Unknown keys are rejected by ml_collections itself."""
  from gsg_jax import methods, models, training  # Local: keep this module light.
  checks = [
      ('method.name', c.method.name in methods.METHODS, f'one of {methods.METHODS}'),
      ('method.ema_schedule', c.method.ema_schedule in ('constant', 'cosine'), "'constant' or 'cosine'"),
      ('method.ema_momentum', 0.0 <= c.method.ema_momentum < 1.0, 'in [0, 1)'),
      ('model.backbone', c.model.backbone in models.BACKBONES, f'one of {models.BACKBONES}'),
      ('model.dtype', c.model.dtype in models.DTYPES, f'one of {tuple(models.DTYPES)}'),
      ('model.width', c.model.width > 0, 'positive'),
      ('model.projection_dim', c.model.projection_dim > 0, 'positive'),
      ('model.projector_layers', c.model.projector_layers >= 1, '>= 1'),
      ('optim.optimizer', c.optim.optimizer in training.OPTIMIZERS, f'one of {training.OPTIMIZERS}'),
      ('optim.base_lr', c.optim.base_lr > 0, 'positive'),
      ('optim.weight_decay', c.optim.weight_decay >= 0, '>= 0'),
      ('optim.warmup_epochs', 0 <= c.optim.warmup_epochs < c.num_epochs, 'in [0, num_epochs)'),
      ('batch_size', c.batch_size >= 2, '>= 2'),
      ('num_epochs', c.num_epochs > 0, 'positive'),
      ('log_every_steps', c.log_every_steps > 0, 'positive'),
      ('checkpoint_every_steps', c.checkpoint_every_steps > 0, 'positive'),
      ('keep_checkpoints', c.keep_checkpoints > 0, 'positive'),
      ('eval_every_epochs', c.eval_every_epochs > 0, 'positive'),
      ('eval.knn_k', c.eval.knn_k > 0, 'positive'),
      ('eval.knn_temperature', c.eval.knn_temperature > 0, 'positive'),
      ('online_probe.learning_rate', c.online_probe.learning_rate > 0, 'positive'),
      ('augment.crop_size', c.augment.crop_size > 0, 'positive'),
  ]
  for key, ok, expected in checks:
    if not ok:
      value = c
      for part in key.split('.'):
        value = value[part]
      raise ValueError(f'config.{key}={value!r} is invalid: expected {expected}.')
