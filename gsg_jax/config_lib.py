"""The configuration shared by every config file, its presets, and its checks.

``configs/<method>.py`` files are one line each: they call ``make_config``
with their method's loss, target and predictor (``gsg_jax.methods``) and the
preset named after the colon, e.g. ``--config=configs/byol_gsg.py:quick``.
Presets:

* (none) / ``cifar10``: the paper's CIFAR-10 setting, data from TFDS.
* ``cifar10_zip``: the same recipe on ``../shared/data/cifar10-train-jpeg.zip``
  (an image-folder zip; 10% held out for evaluation).
* ``cifar10_cpu``: the zip's CIFAR-10 sized for 2 CPU cores: the quick ConvNet at 24×24, 8 epochs, under 30
  minutes for the costliest method (docs/results/cifar10_cpu.md).
* ``imagenet``: the reference's ImageNet setting (TFDS imagenet2012, streamed).
* ``quick``: the built-in synthetic dataset and a small ConvNet; about two
  minutes on 2 CPU cores.

Each value carries a comment saying where it comes from.
"""

import importlib.resources
import importlib.util
import os

import ml_collections

from gsg_jax.data import default_data_config
from gsg_jax.data.augment import default_augment_config
from gsg_jax.errors import ConfigError

PRESETS = ('cifar10', 'cifar10_zip', 'cifar10_cpu', 'imagenet', 'quick')
CIFAR10_ZIP = '../shared/data/cifar10-train-jpeg.zip'


def _find_config_dir() -> str:
  """The config files: the copy of the top-level ``configs/`` that a wheel ships as ``gsg_jax/configs``, else the
  checkout's own ``configs/`` (a checkout or an editable install, where the package has no such folder)."""
  packaged = importlib.resources.files('gsg_jax') / 'configs'
  if packaged.is_dir():
    return str(packaged)
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


CONFIG_DIR = _find_config_dir()


def resolve_config_argv(argv: list[str]) -> list[str]:
  """``argv`` with ``--config=configs/<name>.py[:preset]`` read from ``CONFIG_DIR`` when that relative path does not
  exist in the working directory, so every command that takes ``--config`` runs from any folder, installed or not."""
  resolved = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith(('--config=', '-config=')):
      flag, _, value = arg.partition('=')
      prefix = flag + '='
    elif i > 0 and argv[i - 1] in ('--config', '-config'):
      prefix, value = '', arg
    else:
      continue
    path, colon, preset = value.partition(':')
    packaged = os.path.join(CONFIG_DIR, os.path.basename(path))
    if not os.path.exists(path) and os.path.dirname(os.path.normpath(path)) == 'configs' and os.path.isfile(packaged):
      resolved[i] = prefix + packaged + colon + preset
  return resolved


def named_config(name: str, preset: str | None = None) -> ml_collections.ConfigDict:
  """``configs/<name>.py:<preset>`` from Python, e.g. ``named_config('byol_gsg', 'quick')``."""
  path = os.path.join(CONFIG_DIR, f'{name}.py')
  if not os.path.isfile(path):
    names = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py'))
    raise ConfigError(f'no config named {name!r}: expected one of {names}.')
  spec = importlib.util.spec_from_file_location(f'gsg_jax_configs_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def make_config(
  loss: str = 'negcos', target: str = 'online', predictor: str = 'mlp', preset: str | None = None
) -> ml_collections.ConfigDict:
  """The config of method (``loss``, ``target``, ``predictor``) at ``preset`` (default ``cifar10``)."""
  from gsg_jax import methods  # Local: keep this module light to import.

  preset = preset or 'cifar10'
  if preset not in PRESETS:
    raise ConfigError(f'unknown preset {preset!r}: expected one of {PRESETS}.')
  c = ml_collections.ConfigDict()
  c.seed = 0

  # method.loss / method.target / method.predictor, and one sub-block per component with hyperparameters
  # (method.ema.momentum = 0.99 fixed, as the GSG reference; method.directpred.{rho, eps, freq}).
  c.method = methods.default_method_config(loss, target, predictor)

  c.model = ml_collections.ConfigDict()
  c.model.backbone = 'resnet18'  # SimSiam CIFAR experiments: ResNet-18, CIFAR variant.
  c.model.width = 64
  c.model.cifar_stem = True  # 3×3 stride-1 stem, no max-pool.
  c.model.projection_dim = 2048  # Reference projector/predictor output: 2048.
  c.model.projector_hidden_dim = 2048
  # SimSiam's CIFAR recipe (its appendix D): a 2-layer projector, Linear-BN-ReLU, Linear, BN (no affine), 2048-d.
  # 3 (Linear-BN-ReLU ×2, Linear, BN): the reference's ImageNet projector (the imagenet preset).
  c.model.projector_layers = 2
  c.model.projector_output_bn = True  # The reference's last BN; False: a Linear with bias ends the projector.
  c.model.predictor_hidden_dim = 512  # Reference predictor bottleneck.
  c.model.dtype = 'float32'  # or 'bfloat16' compute (parameters stay float32).
  c.model.remat = False  # Rematerialise ResNet blocks to save memory.
  c.model.views_per_pass = 0  # Views per network pass in training (models.train_pass); 0: all at once, the
  # accelerator's shape.
  # Heads' initialisation (gsg_jax.models.heads): 'torch', PyTorch's nn.Linear default as the reference (weights and
  # biases U(±1/√fan_in)), or 'flax', nn.Dense's default (lecun_normal, √3 times the std; zero biases).
  # The ResNet convolutions are torchvision's Kaiming normal (fan_out) under both.
  c.model.init = 'torch'

  c.data = default_data_config()
  c.data.source = 'tfds'
  c.data.tfds_name = 'cifar10'
  c.augment = default_augment_config()  # SimSiam's CIFAR augmentations (no blur).
  # Streamed datasets crop every view on the host, from the full image (gsg_jax/data/tfds_source.py): the method's
  # number of views, with the augment block's crop (linked: overriding either key sets both).
  c.data.stream_views = methods.LOSSES[loss].num_views
  c.data.stream_image_size = c.augment.get_ref('crop_size')
  c.data.stream_crop_scale = c.augment.get_ref('crop_scale')
  c.data.stream_crop_ratio = c.augment.get_ref('crop_ratio')

  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = 'sgd'  # SimSiam: SGD, momentum 0.9.
  c.optim.momentum = 0.9
  c.optim.base_lr = 0.03  # SimSiam CIFAR-10: lr = 0.03 × batch/256.
  c.optim.weight_decay = 5e-4  # SimSiam CIFAR-10.
  c.optim.warmup_epochs = 0.0
  c.optim.schedule = 'cosine'  # SimSiam: cosine decay; or 'constant'.
  # Per-parameter rules (regex on the parameter path, overrides); see gsg_jax/training/optim.py.
  c.optim.rules = (
    ('predictor/.*', {'schedule': 'constant'}),  # SimSiam reference's --fix-pred-lr: predictor lr not decayed.
    # solo-learn's online classifier: SGD, momentum 0.9, lr 0.1, no weight decay, cosine.
    ('probe/.*', {'lr': 0.1, 'weight_decay': 0.0, 'momentum': 0.9, 'optimizer': 'sgd', 'schedule': 'cosine'}),
  )
  c.batch_size = 512  # SimSiam CIFAR-10.
  c.num_epochs = 800  # SimSiam CIFAR-10.

  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval_every_epochs = 10  # kNN monitor period.
  c.eval = ml_collections.ConfigDict()
  c.eval.knn_k = 200  # GSG reference main_knn.py: k = 200, T = 0.2 (evaluate adds T = 0.1,
  c.eval.knn_temperature = 0.2  # InstDisc's / SimSiam's monitor, and k = 20, 200 beside them).
  c.eval.batch_size = 1024
  c.eval.monitor = ('knn', 'online_probe', 'floors')  # Evaluators run every eval_every_epochs during training.
  # Evaluators of gsg-evaluate, gsg-sweep, gsg-report ('floors': raw pixels and random init beside every figure).
  c.eval.protocols = ('knn', 'fast_linear', 'diagnostics', 'predictor', 'floors')
  c.eval.floor_cache_dir = ''  # Where floors are cached ('' = floor_cache/ beside the workdir).
  c.eval.fast_linear_max_gb = 16.0  # Fast probe's training features (N·D·4 bytes); above: a random subset.

  c.online_probe = ml_collections.ConfigDict()
  c.online_probe.enabled = True  # solo-learn: linear head on stop-gradient features (its rule: optim.rules).

  c.distributed = ml_collections.ConfigDict()
  c.distributed.mode = 'auto'  # 'auto' | 'explicit' | 'off' (see gsg_jax.parallel).
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  c.distributed.local_device_ids = ()

  if preset in ('cifar10_zip', 'cifar10_cpu'):
    c.data.source = 'folder'
    c.data.path = CIFAR10_ZIP
    c.data.heldout_fraction = 0.1  # No test split in the zip: hold out 10% (5,000 images).
  if preset == 'cifar10_cpu':
    # The budget: 30 minutes on 2 CPU cores for the costliest method (GSG's four views), the whole 45,000-image
    # training split every epoch. The quick ConvNet at 24×24 views trains about 30× faster than ResNet-18 at 32.
    c.model.backbone = 'convnet'
    c.model.width = 16
    c.model.projection_dim = 256  # Heads scaled to the 128-d feature, as the quick preset's.
    c.model.projector_hidden_dim = 256
    c.model.predictor_hidden_dim = 64
    c.augment.crop_size = 24  # 24×24 views (evaluation resizes the 32×32 image to 24): half the cost of 32.
    # One network pass per view, the same step: XLA:CPU's convolutions cost more per row as a call's rows grow,
    # which made GSG's four views in one pass cost more than twice SimSiam's two (benchmarks/gsg_cost.py).
    c.model.views_per_pass = 1
    c.optim.base_lr = 0.1  # A short run takes a larger step than the 800-epoch recipe's 0.03.
    c.batch_size = 256
    c.num_epochs = 8  # SimSiam+GSG's 8 epochs fit the budget; SimSiam's take half of it.
    c.eval_every_epochs = 2  # The learning curve: kNN (k = 200, whole training split) every 2 epochs.
    c.log_every_steps = 25
    c.checkpoint_every_steps = 200
  elif preset == 'imagenet':
    c.model.backbone = 'resnet50'  # GSG/SimSiam reference: ResNet-50.
    c.model.cifar_stem = False
    c.model.projector_layers = 3  # GSG/SimSiam reference (gsg/builder.py): 3-layer projector.
    c.data.tfds_name = 'imagenet2012'
    c.data.train_split, c.data.heldout_split = 'train', 'validation'
    c.data.image_size = 256  # Memory/held-out images: resize 256, centre 256 (then centre crop 224).
    # Training: every view RandomResizedCrop(224, scale=(0.2, 1)) from the full decoded image on the host, as the
    # reference's per-view transforms; colour, grey, blur and flip on the accelerator.
    c.augment.crop_size = 224
    c.augment.blur_prob = 0.5  # SimSiam/BYOL ImageNet recipe.
    c.augment.mean = (0.485, 0.456, 0.406)
    c.augment.std = (0.229, 0.224, 0.225)
    c.augment.eval_resize = 256  # Resize 256, centre crop 224.
    c.optim.base_lr = 0.05  # SimSiam reference ImageNet.
    c.optim.weight_decay = 1e-4
    c.batch_size = 512
    c.num_epochs = 100
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 2500
  elif preset == 'quick':
    # Sized for about two minutes on 2 CPU cores (the README's first command; docs/results/quick.md).
    c.data.source = 'builtin'
    c.data.builtin_num_train = 4096
    c.data.builtin_num_heldout = 1024
    c.model.backbone = 'convnet'  # Small enough for a laptop CPU.
    c.model.width = 16
    c.model.projection_dim = 256
    c.model.projector_hidden_dim = 256
    c.model.predictor_hidden_dim = 64
    c.model.projector_layers = 3  # The layout the measured quick figures (docs/results/) were taken with.
    c.augment.crop_size = 24  # 24×24 views of the 32×32 images: half the cost of 32×32.
    c.model.views_per_pass = 1  # As at cifar10_cpu: the faster shape on a CPU.
    c.optim.base_lr = 0.1
    c.batch_size = 128
    c.num_epochs = 6
    c.log_every_steps = 16
    c.checkpoint_every_steps = 64
    c.eval_every_epochs = 2
    c.eval.knn_k = 20  # Small memory bank (4,096 images).
    # BYOL's target must keep up within 192 steps: at m = 0.99 (a 100-step time constant) it stays near its
    # random init and BYOL barely learns; 0.9 learned most of 0.9/0.95/0.99
    # (benchmarks/results/quick/byol_momentum.json).
    c.method.ema.momentum = 0.9
    # Probe lr 1.0: a linear head trained for 192 steps only needs a larger step
    # (benchmarks/results/quick/probe_lr.json).
    c.optim.rules = (c.optim.rules[0], ('probe/.*', {**c.optim.rules[1][1], 'lr': 1.0}))
  return c


def directpred_recipe(c) -> None:
  """Tian et al.'s BYOL/DirectPred CIFAR-10 and STL-10 recipe, in place (their code base, PyTorch-BYOL's config).

  ResNet-18 (CIFAR variant), projector Linear(512)-BN-ReLU-Linear(128), batch
  128, SGD lr 0.03, momentum 0.9, weight decay 4e-4, EMA 0.996; DirectPred's
  ρ = 0.3, ε = 0.1 are the registry's defaults (``gsg_jax.methods``).
  """
  c.model.projection_dim = 128
  c.model.projector_hidden_dim = 512
  c.model.projector_layers = 2
  c.model.projector_output_bn = False
  c.model.predictor_hidden_dim = 512  # The two-layer MLP predictor baseline: 128-512-128.
  c.batch_size = 128
  c.optim.base_lr = 0.06  # 0.06 × 128/256 = 0.03, their lr at batch 128.
  c.optim.weight_decay = 4e-4
  c.optim.schedule = 'constant'  # PyTorch-BYOL steps no schedule.
  c.optim.rules = c.optim.rules[1:]  # Their predictor has no fixed-lr rule; keep the probe's.
  c.method.ema.momentum = 0.996
  c.num_epochs = 100  # The paper's shortest CIFAR-10 run (100/300/500 epochs).


def validate(c) -> None:
  """Raise ValueError naming the first invalid key. Unknown keys are rejected by ml_collections itself.

  The method, network, optimiser and evaluators are dry-built: each builder checks its own block, so a rule
  lives in one place. What no builder reads (cadence, batch, data views, crop) is checked here.
  """
  from gsg_jax import methods, models, training  # Local: keep this module light.

  loss_views = methods.LOSSES[c.method.loss].num_views if c.method.loss in methods.LOSSES else 0
  checks = [
    # Only streamed (TFDS) data crops views on the host; any extra views beyond the method's are unused.
    (
      'data.stream_views',
      c.data.source != 'tfds' or c.data.stream_views >= loss_views,
      f'>= {loss_views}, the views method.loss={c.method.loss!r} takes',
    ),
    # Before warmup_epochs, which is judged against it.
    ('num_epochs', c.num_epochs > 0, 'positive'),
    ('optim.warmup_epochs', 0 <= c.optim.warmup_epochs < c.num_epochs, 'in [0, num_epochs)'),
    ('batch_size', c.batch_size >= 2, '>= 2'),
    ('log_every_steps', c.log_every_steps > 0, 'positive'),
    ('checkpoint_every_steps', c.checkpoint_every_steps > 0, 'positive'),
    ('keep_checkpoints', c.keep_checkpoints > 0, 'positive'),
    ('eval_every_epochs', c.eval_every_epochs > 0, 'positive'),
    ('eval.knn_k', c.eval.knn_k > 0, 'positive'),
    ('eval.knn_temperature', c.eval.knn_temperature > 0, 'positive'),
    ('eval.fast_linear_max_gb', c.eval.fast_linear_max_gb > 0, 'positive'),
    ('augment.crop_size', c.augment.crop_size > 0, 'positive'),
  ]
  for key, ok, expected in checks:
    if not ok:
      value = c
      for part in key.split('.'):
        value = value[part]
      raise ConfigError(f'config.{key}={value!r} is invalid: expected {expected}.')
  method = methods.build_method(c.method, 1)
  models.build_network(c.model, method.predictor.module(c.model, models.DTYPES.get(c.model.dtype, None)))
  training.build_optimizer(c, 1, method.optimizer_rules)
  from gsg_jax.evaluation.evaluator import get_evaluators  # Local: the evaluators import the data layer.

  for key in ('monitor', 'protocols'):
    get_evaluators(c.eval[key], f'config.eval.{key}')


def contrastive_recipe(c, preset: str | None = None) -> None:
  """The recipe of the contrastive losses (InfoNCE, DCL, DHEL, KCL) at ``preset``, in place.

  ``cifar10`` (default) and ``cifar10_zip``: the CIFAR-10 recipe below.
  ``quick`` and ``cifar10_cpu``: the shared preset with this recipe's base lr,
  1.0 (its 1% warm-up would be 2 of 192 steps: none). The shared lr 0.1 is too
  small for these losses, KCL's above all: its Gaussian alignment term has a
  small gradient (benchmarks/results/quick/contrastive_lr.json).
  Other presets (``imagenet``) are left as ``make_config`` sets them.

  Koromilas et al. (ICML 2024) train on the simclr-pytorch code base
  (github.com/AndrewAtanov/simclr-pytorch); the values below come from that
  code base's ResNet-18 CIFAR model and CIFAR config, and from the setting this
  project's specification gives for the paper (batch 256, SGD lr 1.0, 200
  epochs; not checked against the paper's text). The losses'
  temperatures are the registry defaults (``gsg_jax.methods.LOSSES``): 0.5 for
  InfoNCE/DCL (simclr-pytorch's CIFAR config), τ = 0.3 for DHEL and t = 2,
  γ = 16 for KCL (the authors' DHEL-KCL ``losses.py``).
  """
  preset = preset or 'cifar10'
  if preset in ('quick', 'cifar10_cpu'):
    c.optim.base_lr = 1.0
    return
  if preset not in ('cifar10', 'cifar10_zip'):
    return
  # simclr-pytorch models/encoder.py, resnet18: Linear(512, 512, no bias)-BN-ReLU-Linear(512, 128, no bias)-BN.
  # (Its last BN learns a scale, with the bias frozen at 0; ours has neither: projector_output_bn's BN.)
  c.model.projector_layers = 2
  c.model.projector_hidden_dim = 512  # = the ResNet-18 feature width.
  c.model.projection_dim = 128
  c.model.projector_output_bn = True
  c.augment.crop_scale = (0.08, 1.0)  # simclr-pytorch CIFAR: RandomResizedCrop(scale_lower=0.08); its colour
  # distortion s = 0.5 is SimSiam's ColorJitter(0.4, 0.4, 0.4, 0.1), p = 0.8.
  c.batch_size = 256  # The paper's CIFAR-10 batch (per the specification above).
  c.optim.optimizer = 'sgd'  # SGD, momentum 0.9 (simclr-pytorch's --opt sgd).
  c.optim.base_lr = 1.0  # lr 1.0 at batch 256 (per the specification); × batch/256, linear scaling.
  c.optim.weight_decay = 1e-6  # simclr-pytorch CIFAR config: weight_decay 1e-6.
  c.optim.warmup_epochs = 2.0  # simclr-pytorch 'warmup-anneal': linear warm-up over 1% of the
  c.optim.schedule = 'cosine'  # iterations (warmup: 0.01), then cosine to 0: 2 of 200 epochs.
  c.num_epochs = 200  # The paper's CIFAR-10 length (per the specification).
