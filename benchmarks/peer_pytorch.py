"""gsg_jax's train step against the same step in PyTorch, timed in one run: images/s of both and their ratio.

    python benchmarks/peer_pytorch.py --out benchmarks/results/throughput/peer_pytorch.json

PyTorch is never a dependency of gsg_jax: it lives in a virtual environment of
its own, outside the project, made once with

    python3 -m venv /work/torch_venv && /work/torch_venv/bin/pip install torch

(``pip install torch`` from PyPI brings the CUDA libraries, about 5.5 GB; a CPU
machine can take the smaller CPU build). This script runs under the project's
environment, measures gsg_jax's step with ``train_step.py``'s functions, and
runs the PyTorch half as a child process of that environment's Python
(``--torch-python``, else ``$GSG_TORCH_PYTHON``, else
``/work/torch_venv/bin/python``). Without it, or without torch in it, the
script says how to make it and exits 0 ("SKIP").

Each case is built from gsg_jax's config (``--cases``: ``quick`` is the quick
preset's ConvNet width 16 at 24², ``resnet18`` the ``cifar10`` preset's
ResNet-18 CIFAR variant at width 16 and 32², 2048-wide heads), for SimSiam and
SimSiam+GSG, and the PyTorch half gets the same shapes as a JSON spec:

* the backbone (bias-free 3×3 convolutions as gsg_jax's, BatchNorm, ReLU;
  ResNet-18's basic blocks with 1×1 projection shortcuts), the projector and
  predictor MLPs (Linear-BN-ReLU layers, the projector's last BN without
  affine), the online linear probe on detached features with its
  cross-entropy, SGD with momentum and weight decay (the probe's own lr, no
  decay);
* the loss: SimSiam's symmetric negative cosine, or GSG's (four views, a
  random pairing of images, the closest of the four cross-image pairs of
  detached projections by Euclidean distance chooses which prediction is
  pulled toward its own image's other view; the other predictions get no
  gradient);
* the augmentation on the batch as tensors, the same ops as
  ``gsg_jax.data.augment`` (RandomResizedCrop's box sampler and antialiased
  bilinear resampling as two matrix products, colour jitter in a random order
  with p = 0.8, grey p = 0.2, flip p = 0.5, normalisation), per view;
* channels_last, eager; ``--torch-modes eager,compile`` adds ``torch.compile``
  of the network (if it fails, the row says so).

PyTorch forwards each view through the network on its own (the reference code's
way, and BatchNorm's statistics are per view as gsg_jax's ViewBatchNorm);
so does gsg_jax by default (``--views-per-pass 1``; 0 forwards all views in
one pass). "PyTorch, no augmentation" is the same
step on views already made (random tensors), to show what the augmentation
costs it. One image = one source image with all its views, as in
``train_step.py``. Each side keeps the fastest of ``--repeats`` repeats of
``--steps`` steps, its cases in turn; the ratio is gsg_jax's images/s over
PyTorch's (above 1: gsg_jax is faster).
"""

import argparse
import json
import os
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import records  # noqa: E402  (the standard library only: the PyTorch child imports it too)

DEFAULT_TORCH_PYTHON = '/work/torch_venv/bin/python'
INSTALL = 'python3 -m venv /work/torch_venv && /work/torch_venv/bin/pip install torch'
CASES = {  # name → (train_step preset, backbone override, width override)
  'quick': ('quick', '', 0),
  'resnet18': ('cifar10', 'resnet18', 16),
}
SOURCE_IMAGE_SIZE = 32
NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------------ the parent (JAX)


def torch_python(args) -> str:
  return args.torch_python or os.environ.get('GSG_TORCH_PYTHON') or DEFAULT_TORCH_PYTHON


def torch_version(python: str) -> str | None:
  """torch's version in ``python``'s environment, or None when that Python or its torch is missing."""
  if not os.path.isfile(python):
    return None
  try:
    out = subprocess.run(
      [python, '-c', 'import torch; print(torch.__version__)'], capture_output=True, text=True, timeout=120
    )
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() or None if out.returncode == 0 else None


def skip_message(python: str) -> str:
  return (
    f'SKIP: no PyTorch at {python} (set --torch-python or GSG_TORCH_PYTHON). PyTorch is not a dependency of '
    f'gsg_jax; make its own environment, outside the project, with\n    {INSTALL}\n'
    '(from PyPI with its CUDA libraries, about 5.5 GB), then run this script again.'
  )


def case_config(method: str, case: str):
  """gsg_jax's config of ``method`` at ``case``: the case's preset with its backbone and width."""
  from gsg_jax import config_lib

  preset, backbone, width = CASES[case]
  c = config_lib.named_config(method, preset)
  c.model.backbone = backbone or c.model.backbone
  c.model.width = width or c.model.width
  return c


def case_spec(method: str, case: str, batch_size: int) -> dict:
  """What the PyTorch half needs to build ``method``'s step at ``case``, read from gsg_jax's config."""
  from gsg_jax import methods
  from gsg_jax.training.optim import peak_learning_rate

  c = case_config(method, case)
  c.batch_size = batch_size
  if (c.method.target, c.method.predictor) != ('online', 'mlp') or c.method.loss not in ('negcos', 'gsg'):
    raise ValueError(f'{method}: the PyTorch peer has SimSiam and SimSiam+GSG only (online target, MLP predictor).')
  if c.model.backbone not in ('convnet', 'resnet18') or not c.model.cifar_stem:
    raise ValueError(f'{method} at {case}: the PyTorch peer has the ConvNet and the CIFAR ResNet-18 only.')
  a = c.augment
  if a.blur_prob > 0:
    raise ValueError('the PyTorch peer has no blur (the CIFAR recipes have none).')
  probe = dict(c.optim.rules)['probe/.*']
  return {
    'method': method,
    'case': case,
    'loss': c.method.loss,
    'num_views': methods.LOSSES[c.method.loss].num_views,
    'batch_size': batch_size,
    'image_size': SOURCE_IMAGE_SIZE,
    'num_classes': NUM_CLASSES,
    'model': {
      'backbone': c.model.backbone,
      'width': c.model.width,
      'projection_dim': c.model.projection_dim,
      'projector_hidden_dim': c.model.projector_hidden_dim,
      'projector_layers': c.model.projector_layers,
      'projector_output_bn': c.model.projector_output_bn,
      'predictor_hidden_dim': c.model.predictor_hidden_dim,
    },
    'augment': {
      'crop_size': a.crop_size,
      'crop_scale': list(a.crop_scale),
      'crop_ratio': list(a.crop_ratio),
      'brightness': a.brightness,
      'contrast': a.contrast,
      'saturation': a.saturation,
      'hue': a.hue,
      'jitter_prob': a.jitter_prob,
      'grayscale_prob': a.grayscale_prob,
      'flip_prob': a.flip_prob,
      'mean': list(a.mean),
      'std': list(a.std),
    },
    'optim': {
      'lr': peak_learning_rate(c),
      'momentum': c.optim.momentum,
      'weight_decay': c.optim.weight_decay,
      'probe_lr': probe['lr'],
      'probe_weight_decay': probe['weight_decay'],
    },
  }


def measure_jax(specs, args) -> list[dict]:
  """gsg_jax's rows (train_step.py's) for every spec, timed together."""
  import train_step

  cases = []
  for spec in specs:
    preset, backbone, width = CASES[spec['case']]
    step_args = types.SimpleNamespace(
      preset=preset,
      backbone=backbone,
      width=width,
      dtype='float32',
      compile_only=False,
      steps=args.steps,
      warmup=args.warmup,
      repeats=args.repeats,
      profile='',
    )
    cases.append(train_step.prepare(spec['method'], spec['batch_size'], step_args, views_per_pass=args.views_per_pass))
  return train_step.measure_all(cases, step_args)


def run_torch_child(python: str, specs, args) -> dict:
  """The PyTorch half's results ({'torch', 'threads', 'rows'}) from a child process of ``python``."""
  request = {
    'specs': specs,
    'modes': args.torch_modes.split(','),
    'steps': args.steps,
    'warmup': args.warmup,
    'repeats': args.repeats,
    'threads': args.torch_threads,
  }
  return child_json(python, os.path.abspath(__file__), request)


def child_json(python: str, script: str, request: dict) -> dict:
  """The JSON that ``script --torch-child``, run by ``python`` with ``request`` as JSON on stdin, prints last."""
  out = subprocess.run(
    [python, script, '--torch-child'], input=json.dumps(request), check=True, stdout=subprocess.PIPE, text=True
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


def combine(jax_rows, torch_rows) -> list[dict]:
  """One table row per case: both sides' images/s and the ratios (gsg_jax over PyTorch)."""
  rows = []
  for jax_row, torch_row in zip(jax_rows, torch_rows):
    row = {
      'network': f'{jax_row["backbone"]} width {jax_row["width"]}, {jax_row["crop_size"]}²',
      'method': {'simsiam': 'SimSiam', 'simsiam_gsg': 'SimSiam+GSG'}.get(jax_row['method'], jax_row['method']),
      'batch_size': jax_row['batch_size'],
      'jax_images_per_second': jax_row['images_per_second'],
    }
    for mode in ('eager', 'eager_noaug', 'compile', 'compile_noaug'):
      value = torch_row.get(mode)
      row[f'torch_{mode}'] = value if isinstance(value, (int, float)) else None
    for mode in ('eager', 'compile'):
      torch_ips = row[f'torch_{mode}']
      row[f'ratio_{mode}'] = jax_row['images_per_second'] / torch_ips if torch_ips else None
    rows.append(row)
  return rows


def peer_record(
  rows, command: str, commit, machine: str, notes=(), torch_threads: int | None = None, cores: int | None = None
) -> dict:
  """The results-schema table of ``rows`` (``combine``'s); ``torch_threads``: PyTorch's intra-op threads, named in
  the title (records of two thread counts are two tables); ``cores``: the CPU cores both sides could run on, named
  in the title where the run was pinned to fewer than the machine's (``taskset``)."""
  pinned = cores is not None and cores < (os.cpu_count() or cores)
  has_compile = any(r['torch_compile'] is not None for r in rows)
  columns = [
    {'key': 'network', 'label': 'network'},
    {'key': 'method', 'label': 'method'},
    {'key': 'batch_size', 'label': 'batch', 'format': 'd'},
    {'key': 'jax_images_per_second', 'label': 'gsg_jax images/s', 'format': '.1f'},
    {'key': 'torch_eager', 'label': 'PyTorch eager images/s', 'format': '.1f'},
    {'key': 'torch_eager_noaug', 'label': 'PyTorch eager, no augmentation', 'format': '.1f'},
    {'key': 'ratio_eager', 'label': 'gsg_jax ÷ PyTorch eager', 'format': '.2f'},
  ]
  if has_compile:
    columns += [
      {'key': 'torch_compile', 'label': 'PyTorch compiled images/s', 'format': '.1f'},
      {'key': 'torch_compile_noaug', 'label': 'PyTorch compiled, no augmentation', 'format': '.1f'},
      {'key': 'ratio_compile', 'label': 'gsg_jax ÷ PyTorch compiled', 'format': '.2f'},
    ]
  keys = {c['key'] for c in columns}
  return records.table(
    'throughput',
    "gsg_jax's train step against the same step in PyTorch, on the CPU"
    + (f', PyTorch on {torch_threads} thread{"s" * (torch_threads != 1)}' if torch_threads else '')
    + (f', both sides on {cores} core{"s" * (cores != 1)}' if pinned else ''),
    order=30 + (torch_threads == 1) + 2 * pinned,
    command=command,
    commit=commit,
    machine_text=machine,
    source='the output of benchmarks/peer_pytorch.py: gsg_jax timed in its process, PyTorch in a child process '
    'of its own environment, one after the other in the same run',
    columns=columns,
    rows=[{k: v for k, v in r.items() if k in keys} for r in rows],
    notes=notes,
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--cases', default='quick,resnet18', help=f'comma-separated: {", ".join(CASES)}')
  parser.add_argument('--methods', default='simsiam,simsiam_gsg')
  parser.add_argument('--batch-size', type=int, default=128)
  parser.add_argument(
    '--views-per-pass',
    type=int,
    default=1,
    help="gsg_jax's config.model.views_per_pass (0: all views in one pass); PyTorch's step makes one pass per view",
  )
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--torch-modes', default='eager', help='comma-separated: eager, compile (torch.compile)')
  parser.add_argument(
    '--torch-threads',
    type=int,
    default=0,
    help="PyTorch's intra-op threads (0: its default, one per core). On a machine shared with other work, 1 avoids "
    "OpenMP's threads waiting on each other for a core at every op",
  )
  parser.add_argument('--torch-python', default='', help=f'$GSG_TORCH_PYTHON, else {DEFAULT_TORCH_PYTHON}')
  parser.add_argument('--out', default='', help='write the results-schema table here')
  parser.add_argument(
    '--conditions', default='shared', help="how the machine was used, after its CPU in the record's machine"
  )
  parser.add_argument('--torch-child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torch_child:
    return torch_child()

  for case in args.cases.split(','):
    if case not in CASES:
      parser.error(f'unknown case {case!r}: expected some of {", ".join(CASES)}')
  for mode in args.torch_modes.split(','):
    if mode not in ('eager', 'compile'):
      parser.error(f'unknown --torch-modes entry {mode!r}: expected eager, compile')
  python = torch_python(args)
  version = torch_version(python)
  if version is None:
    print(skip_message(python))
    return 0

  specs = [case_spec(m, c, args.batch_size) for c in args.cases.split(',') for m in args.methods.split(',')]
  print(f'gsg_jax: {len(specs)} cases', file=sys.stderr)
  jax_rows = measure_jax(specs, args)
  print(f'PyTorch {version} ({python}): {len(specs)} cases', file=sys.stderr)
  torch_result = run_torch_child(python, specs, args)
  rows = combine(jax_rows, torch_result['rows'])
  for r in rows:
    compiled = f'  compiled {r["torch_compile"]:7.1f} ({r["ratio_compile"]:.2f}×)' if r['torch_compile'] else ''
    print(
      f'{r["network"]:>24} {r["method"]:>12} batch {r["batch_size"]}: gsg_jax {r["jax_images_per_second"]:7.1f} '
      f'img/s, PyTorch eager {r["torch_eager"]:7.1f} (no augmentation {r["torch_eager_noaug"]:7.1f}), '
      f'gsg_jax ÷ PyTorch {r["ratio_eager"]:.2f}×{compiled}'
    )
  errors = [f'{spec["method"]} at {spec["case"]}: {row["errors"]}' for spec, row in zip(specs, torch_result['rows'])]
  errors = [e for e, row in zip(errors, torch_result['rows']) if row.get('errors')]
  for error in errors:
    print(f'PyTorch error: {error}', file=sys.stderr)
  if args.out:
    import jax

    from gsg_jax import compiler

    command = records.command(__file__, argv)
    notes = [
      f'gsg_jax: JAX {jax.__version__}, {jax.device_count()} CPU device(s), '
      f'{f"{args.views_per_pass} view(s)" if args.views_per_pass else "all views"} per pass, float32, '
      f'compiler options {compiler.options() or "none (jaxlib defaults)"}. '
      f'PyTorch {version} ({torch_result["threads"]} threads), channels_last, one pass per view, float32.',
      f'Each side: the fastest of {args.repeats} repeats of {args.steps} steps after {args.warmup} warm-up steps, '
      'its cases in turn; gsg_jax first, then PyTorch. Images/s counts source images (GSG: four views each).',
      "PyTorch, no augmentation: the same step on views made before it (random tensors of the views' shape).",
      *(f'PyTorch error: {e}' for e in errors),
    ]
    record = peer_record(
      rows,
      command,
      records.git_commit(),
      records.machine(args.conditions),
      notes,
      torch_result['threads'],
      len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
    )
    records.write(record, args.out)
    print(f'wrote {args.out}', file=sys.stderr)
  return 0


# ------------------------------------------------------------------------------------------ the child (PyTorch)
# Runs in PyTorch's own environment: torch and the standard library only, never jax or gsg_jax.


def torch_child() -> int:
  """Reads a request (JSON on stdin), times every spec, prints {'torch', 'threads', 'rows'} as JSON."""
  import torch

  request = json.loads(sys.stdin.read())
  torch.manual_seed(0)
  if request.get('threads'):
    torch.set_num_threads(request['threads'])
  torch.set_flush_denormal(True)  # As XLA:CPU, which flushes denormals to zero; x86 slows down on them otherwise.
  steps = [TorchStep(spec) for spec in request['specs']]
  rows = [{'errors': []} for _ in steps]
  for mode in request['modes']:
    for augment in (True, False):
      key = mode + ('' if augment else '_noaug')
      runners = []
      for step, row in zip(steps, rows):
        try:
          runners.append(step.runner(mode == 'compile', augment))
        except Exception as e:  # noqa: BLE001 (torch.compile can fail in many ways: the row says how)
          row['errors'].append(f'{key}: {type(e).__name__}: {e}'[:300])
          runners.append(None)
      best = time_runners(runners, request, rows, key)
      for row, seconds, step in zip(rows, best, steps):
        row[key] = step.spec['batch_size'] / seconds if seconds else None
        print(f'PyTorch {step.spec["method"]} {step.spec["case"]} {key}: {row[key]}', file=sys.stderr)
  print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'rows': rows}))
  return 0


def time_runners(runners, request, rows, key) -> list:
  """Fastest seconds per step of each runner (None where it failed), the runners in turn each repeat."""
  import time

  best = [None] * len(runners)
  for i, run in enumerate(runners):
    if run is None:
      continue
    try:
      for _ in range(request['warmup']):
        run()
    except Exception as e:  # noqa: BLE001
      rows[i]['errors'].append(f'{key}: {type(e).__name__}: {e}'[:300])
      runners[i] = None
  for _ in range(request['repeats']):
    for i, run in enumerate(runners):
      if run is None:
        continue
      t0 = time.perf_counter()
      for _ in range(request['steps']):
        run()
      seconds = (time.perf_counter() - t0) / request['steps']
      best[i] = seconds if best[i] is None else min(best[i], seconds)
  return best


class TorchStep:
  """One spec's network, optimiser and data in PyTorch; ``runner(compiled, augment)`` → a function of one step."""

  def __init__(self, spec):
    import torch

    self.spec = spec
    self.network, self.probe = build_torch_network(spec)
    o = spec['optim']
    encoder = list(self.network.backbone.parameters()) + list(self.network.projector.parameters())
    self.optimizer = torch.optim.SGD(  # Three groups as gsg_jax's rules (the predictor's lr is not decayed there).
      [
        {'params': encoder, 'lr': o['lr'], 'weight_decay': o['weight_decay']},
        {'params': self.network.predictor.parameters(), 'lr': o['lr'], 'weight_decay': o['weight_decay']},
        {'params': self.probe.parameters(), 'lr': o['probe_lr'], 'weight_decay': o['probe_weight_decay']},
      ],
      momentum=o['momentum'],
    )
    g = torch.Generator().manual_seed(0)
    b, s = spec['batch_size'], spec['image_size']
    self.images = torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=g)
    self.labels = torch.randint(0, spec['num_classes'], (b,), generator=g)
    crop = spec['augment']['crop_size']
    self.ready_views = [
      torch.randn(b, 3, crop, crop, generator=g).contiguous(memory_format=torch.channels_last)
      for _ in range(spec['num_views'])
    ]

  def runner(self, compiled: bool, augment: bool):
    import torch

    forward = torch.compile(self.network) if compiled else self.network
    spec = self.spec
    loss_fn = gsg_loss_torch if spec['loss'] == 'gsg' else simsiam_loss_torch
    num_views = spec['num_views']

    def step():
      views = augment_torch(self.images, num_views, spec['augment']) if augment else self.ready_views
      features, projections, predictions = zip(*(forward(v) for v in views))
      loss = loss_fn(torch.stack(predictions, 1), torch.stack(projections, 1))
      logits = self.probe(torch.cat(features).detach())
      probe_loss = torch.nn.functional.cross_entropy(logits, self.labels.repeat(num_views))
      (loss + probe_loss).backward()
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      return loss

    return step


def build_torch_network(spec):
  """(the Siamese network: view → (features, projection, prediction), the linear probe), channels_last."""
  import torch
  from torch import nn

  m = spec['model']
  w = m['width']

  def conv(cin, cout, k=3, stride=1):
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)

  class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1, self.bn1 = conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
      self.conv2, self.bn2 = conv(cout, cout), nn.BatchNorm2d(cout)
      nn.init.zeros_(self.bn2.weight)
      self.shortcut = (
        nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
      )

    def forward(self, x):
      y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
      return torch.relu((x if self.shortcut is None else self.shortcut(x)) + y)

  if m['backbone'] == 'convnet':
    layers, cin = [], 3
    for i, stride in enumerate((1, 2, 2, 2)):
      layers += [conv(cin, w * 2**i, 3, stride), nn.BatchNorm2d(w * 2**i), nn.ReLU()]
      cin = w * 2**i
    trunk = nn.Sequential(*layers)
  else:  # resnet18, CIFAR stem.
    layers, cin = [conv(3, w), nn.BatchNorm2d(w), nn.ReLU()], w
    for stage in range(4):
      for i in range(2):
        layers.append(Basic(cin, w * 2**stage, 2 if stage > 0 and i == 0 else 1))
        cin = w * 2**stage
    trunk = nn.Sequential(*layers)
  feature_dim = cin

  class Backbone(nn.Module):
    def __init__(self):
      super().__init__()
      self.trunk = trunk

    def forward(self, x):
      return self.trunk(x).mean((2, 3))

  hidden, out = m['projector_hidden_dim'], m['projection_dim']
  projector, dim = [], feature_dim
  for _ in range(m['projector_layers'] - 1):
    projector += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
    dim = hidden
  projector.append(nn.Linear(dim, out, bias=not m['projector_output_bn']))
  if m['projector_output_bn']:
    projector.append(nn.BatchNorm1d(out, affine=False))
  predictor = nn.Sequential(
    nn.Linear(out, m['predictor_hidden_dim'], bias=False),
    nn.BatchNorm1d(m['predictor_hidden_dim']),
    nn.ReLU(),
    nn.Linear(m['predictor_hidden_dim'], out),
  )

  class Siamese(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone, self.projector, self.predictor = Backbone(), nn.Sequential(*projector), predictor

    def forward(self, x):
      features = self.backbone(x)
      projection = self.projector(features)
      return features, projection, self.predictor(projection)

  network = Siamese().to(memory_format=torch.channels_last).train()
  return network, nn.Linear(feature_dim, spec['num_classes'])


def negative_cosine(p, z):
  """−cos(p, z) along the last axis, with torch's F.normalize (x / max(‖x‖, 1e-8)), as gsg_jax's similarity."""
  from torch.nn import functional as F

  return -(F.normalize(p, dim=-1, eps=1e-8) * F.normalize(z, dim=-1, eps=1e-8)).sum(-1)


def simsiam_loss_torch(p, z):
  """SimSiam's symmetric loss; ``p``, ``z``: [B, 2, D]."""
  z = z.detach()
  return 0.5 * (negative_cosine(p[:, 0], z[:, 1]) + negative_cosine(p[:, 1], z[:, 0])).mean()


def gsg_loss_torch(p, z, permutation=None):
  """GSG's loss (gsg_jax.methods.gsg, the reference's): ``p``, ``z`` [B, 4, D]; image 2 of pair i is r(i)."""
  import torch

  if permutation is None:
    permutation = torch.randperm(p.shape[0])
  z = z.detach()
  p11, p12, p21, p22 = p[:, 0], p[:, 1], p[permutation, 2], p[permutation, 3]
  z11, z12, z21, z22 = z[:, 0], z[:, 1], z[permutation, 2], z[permutation, 3]
  distances = torch.stack(
    [(z11 - z21).norm(dim=-1), (z11 - z22).norm(dim=-1), (z12 - z21).norm(dim=-1), (z12 - z22).norm(dim=-1)], -1
  )
  one_hot = torch.nn.functional.one_hot(distances.argmin(-1), 4).to(p.dtype)
  s11, s12 = negative_cosine(p11, z12), negative_cosine(p12, z11)
  s21, s22 = negative_cosine(p21, z22), negative_cosine(p22, z21)
  branches = 0.5 * torch.stack([s11 + s21, s11 + s22, s12 + s21, s12 + s22], -1)
  return (one_hot * branches).sum(-1).mean()


def augment_torch(images_u8, num_views: int, cfg):
  """uint8 [B, H, W, 3] → ``num_views`` float views [B, 3, crop, crop] (channels_last): gsg_jax.data.augment's ops
  on the batch as tensors, each view with its own random numbers (torch's, not JAX's)."""
  import math

  import torch

  b, height, width, _ = images_u8.shape
  n, crop, attempts = b * num_views, cfg['crop_size'], 10
  x = (images_u8.permute(0, 3, 1, 2).float() / 255.0).repeat_interleave(num_views, 0)  # [N, 3, H, W], image-major
  u = torch.rand(n, 5 + 4 * attempts + 8)
  u_jitter, u_gray, u_flip = u[:, 0], u[:, 1], u[:, 4]
  u_area, u_ratio, u_top, u_left = u[:, 5 : 5 + 4 * attempts].reshape(n, 4, attempts).unbind(1)

  # RandomResizedCrop.get_params on all candidates at once; the first that fits, else the whole image.
  lo, hi = cfg['crop_scale']
  area = height * width * (lo + (hi - lo) * u_area)
  log_lo, log_hi = math.log(cfg['crop_ratio'][0]), math.log(cfg['crop_ratio'][1])
  aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
  w = torch.round(torch.sqrt(area * aspect))
  h = torch.round(torch.sqrt(area / aspect))
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = fits.int().argmax(1, keepdim=True)
  pick = lambda t, fallback: torch.where(fits.any(1), t.gather(1, first)[:, 0], torch.full_like(t[:, 0], fallback))
  top = pick(torch.floor(u_top * (height - h + 1)), 0.0)
  left = pick(torch.floor(u_left * (width - w + 1)), 0.0)
  h, w = pick(h, float(height)), pick(w, float(width))

  def weights(start, length, size):  # [N, crop, size]: antialiased bilinear, pixels of the box only.
    s = length / crop
    centre = start[:, None] + (torch.arange(crop) + 0.5)[None] * s[:, None]
    j = torch.arange(size, dtype=torch.float32)
    wt = torch.clamp(1 - (j[None, None] + 0.5 - centre[:, :, None]).abs() / torch.clamp(s, min=1)[:, None, None], 0)
    inside = (j[None] >= start[:, None]) & (j[None] < (start + length)[:, None])
    wt = wt * inside[:, None]
    return wt / wt.sum(-1, keepdim=True)

  x = weights(top, h, height)[:, None] @ x @ weights(left, w, width)[:, None].transpose(-1, -2)  # [N, 3, crop, crop]

  # Colour jitter, p = 0.8, its four ops in a random order; then grey, flip, normalisation.
  gray = lambda t: (0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2])[:, None]
  strengths = [cfg['brightness'], cfg['contrast'], cfg['saturation']]
  low = torch.tensor([max(0.0, 1 - s) for s in strengths] + [-cfg['hue']])
  high = torch.tensor([1 + s for s in strengths] + [cfg['hue']])
  params = u[:, 5 + 4 * attempts :]
  order = params[:, :4].argsort(1)
  factors = low + (high - low) * params[:, 4:]
  y = x
  for t in range(4):
    op = order[:, t]
    f = factors.gather(1, op[:, None])[:, :, None, None]
    op = op[:, None, None, None]
    g = gray(y)
    target = torch.where(op == 1, g.mean((1, 2, 3), keepdim=True), torch.where(op == 2, g, torch.zeros_like(g)))
    blended = (f * y + (1 - f) * target).clamp(0, 1)
    y = torch.where(op == 3, adjust_hue_torch(y, f), blended)
  x = torch.where((u_jitter < cfg['jitter_prob'])[:, None, None, None], y, x)
  x = torch.where((u_gray < cfg['grayscale_prob'])[:, None, None, None], gray(x).expand_as(x), x)
  x = torch.where((u_flip < cfg['flip_prob'])[:, None, None, None], x.flip(-1), x)
  x = (x - torch.tensor(cfg['mean'])[:, None, None]) / torch.tensor(cfg['std'])[:, None, None]
  x = x.reshape(b, num_views, 3, crop, crop)
  return [x[:, v].contiguous(memory_format=torch.channels_last) for v in range(num_views)]


def adjust_hue_torch(x, f):
  """gsg_jax.data.augment.adjust_hue on [N, 3, H, W], ``f`` [N, 1, 1, 1] turns."""
  import torch

  r, g, b = x[:, 0], x[:, 1], x[:, 2]
  v = torch.maximum(torch.maximum(r, g), b)
  c = v - torch.minimum(torch.minimum(r, g), b)
  d = torch.where(c > 0, c, torch.ones_like(c))
  sixths = torch.where(r == v, (g - b) / d, torch.where(g == v, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
  hue = sixths / 6.0 + f[:, 0]
  hue = hue - torch.floor(hue)
  k = torch.tensor([5.0, 3.0, 1.0])[None, :, None, None] + 6.0 * hue[:, None]
  k = torch.where(k >= 6.0, k - 6.0, k)
  return (v[:, None] - c[:, None] * torch.clamp(torch.minimum(k, 4.0 - k), 0, 1)).clamp(0, 1)


if __name__ == '__main__':
  sys.exit(main())
