"""Export a run's trained weights to safetensors or npz, for use outside gsg_jax.

    python -m gsg_jax.export --workdir=RUN [--step=N] --out=PATH [--format=safetensors|npz] \
        [--with_heads] [--layout=flax|torchvision]

(console script ``gsg-export``) or ``export(workdir, out, ...)`` from Python.
Writes the online backbone (BYOL's evaluated encoder, not its EMA target)
with its BatchNorm running statistics, and with ``--with_heads`` the
projector and predictor too, as one flat name → array file, plus a JSON
sidecar ``PATH.json``: architecture (backbone, width, stem, feature size),
the evaluation preprocessing, the step, the layout, the run's config and
the gsg_jax version. ``--format`` defaults to the extension of ``--out``.

Layouts:

* ``flax`` (default): ``<collection>/<module path>/<leaf>`` with Flax's
  names and shapes, e.g. ``params/backbone/stem_conv/kernel`` (HWIO) and
  ``batch_stats/backbone/stem_norm/mean``;
  ``flax.traverse_util.unflatten_dict(arrays, sep='/')`` gives back the
  variables of ``gsg_jax.models.build_backbone(config.model)``.
* ``torchvision`` (ResNet-18 and ResNet-50 backbones): the ``state_dict``
  of ``torchvision.models.resnet18()`` / ``resnet50()`` without ``fc``:
  ``conv1.weight`` (kernels transposed HWIO → OIHW), ``bn1.weight`` /
  ``bias`` / ``running_mean`` / ``running_var`` / ``num_batches_tracked``
  (int64 scalar, set to the step), ``layerX.Y.convK`` / ``bnK``, and
  ``layerX.Y.downsample.0`` / ``.1`` for the projection shortcuts. The
  backbones pad as torchvision does, so the loaded model computes the same
  features (docs/encoder.md, "Taking the encoder out", says how to load it). The
  heads have no torchvision counterpart: ``--with_heads`` needs ``flax``.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

import gsg_jax
from gsg_jax import cli, storage
from gsg_jax.errors import ConfigError, UnusablePathError
from gsg_jax.run_dir import Run, find_run, restore_variables

FORMATS = {'.safetensors': 'safetensors', '.npz': 'npz'}
LAYOUTS = ('flax', 'torchvision')
TORCHVISION_BACKBONES = ('resnet18', 'resnet50')
HEADS = ('projector', 'predictor')


def check_arguments(out: str, fmt: str | None, layout: str, with_heads: bool) -> str:
  """Validates the export options before any weights are read; returns the format."""
  if not out:
    raise ConfigError('no output path given (--out=PATH.safetensors or PATH.npz).')
  if layout not in LAYOUTS:
    raise ConfigError(f'unknown layout {layout!r}: expected one of {LAYOUTS}.')
  if with_heads and layout == 'torchvision':
    raise ConfigError('torchvision has no projector or predictor: --with_heads needs --layout=flax.')
  if not fmt:
    fmt = FORMATS.get(os.path.splitext(out)[1].lower())
    if fmt is None:
      raise ConfigError(f'cannot tell the format from {out!r}: end it in .safetensors or .npz, or pass --format.')
  if fmt not in FORMATS.values():
    raise ConfigError(f'unknown format {fmt!r}: expected one of {tuple(FORMATS.values())}.')
  return fmt


def check_layout(config, layout: str) -> None:
  backbone = config.model.backbone
  if layout == 'torchvision' and backbone not in TORCHVISION_BACKBONES:
    raise ConfigError(
      f"--layout=torchvision needs a {' or '.join(TORCHVISION_BACKBONES)} backbone; this run's is "
      f'{backbone!r} (use --layout=flax).'
    )


def flax_arrays(variables: dict) -> dict[str, np.ndarray]:
  """``{'params': {...}, 'batch_stats': {...}}`` → ``{'params/backbone/.../kernel': array}``."""
  flat = {}

  def visit(prefix, tree):
    for key, value in tree.items():
      if isinstance(value, dict):
        visit(f'{prefix}{key}/', value)
      else:
        flat[f'{prefix}{key}'] = np.asarray(value)

  visit('', variables)
  return flat


_TORCH_LEAF = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
_SHORTCUT = {'shortcut_conv': 'downsample.0', 'shortcut_norm': 'downsample.1'}


def torchvision_arrays(params: dict, batch_stats: dict, stage_sizes, step: int) -> dict[str, np.ndarray]:
  """The backbone's variables (a gsg_jax ResNet's) under torchvision's ``state_dict`` names and layouts.

  ``stage_sizes``: blocks per stage ((2, 2, 2, 2) for ResNet-18), to place
  the Flax blocks ``BasicBlock_<i>`` / ``Bottleneck_<i>`` (numbered
  through all stages) at ``layer<stage + 1>.<index in stage>``.
  """
  starts = np.cumsum((0,) + tuple(stage_sizes))

  def module_name(path: tuple[str, ...]) -> str:
    if path == ('stem_conv',):
      return 'conv1'
    if path == ('stem_norm',):
      return 'bn1'
    block = re.fullmatch(r'(?:BasicBlock|Bottleneck)_(\d+)', path[0])
    inner = re.fullmatch(r'(Conv|ViewBatchNorm)_(\d+)', path[-1]) if len(path) == 2 else None
    if block is None or len(path) != 2 or (inner is None and path[1] not in _SHORTCUT):
      raise RuntimeError(f'no torchvision name for the backbone module {"/".join(path)}.')
    index = int(block.group(1))
    stage = int(np.searchsorted(starts, index, side='right')) - 1
    prefix = f'layer{stage + 1}.{index - starts[stage]}.'
    if inner is None:
      return prefix + _SHORTCUT[path[1]]
    return prefix + ('conv' if inner.group(1) == 'Conv' else 'bn') + str(int(inner.group(2)) + 1)

  out = {}
  for collection in (params, batch_stats):
    for path, value in flax_arrays(collection).items():
      *modules, leaf = path.split('/')
      name = module_name(tuple(modules))
      value = np.asarray(value, np.float32)
      if leaf == 'kernel':
        value = value.transpose(3, 2, 0, 1)  # HWIO → OIHW.
      if leaf == 'mean':  # One per BatchNorm: torchvision's counter of the batches that updated its statistics.
        out[f'{name}.num_batches_tracked'] = np.array(step, np.int64)
      out[f'{name}.{_TORCH_LEAF[leaf]}'] = value.copy(order='C')
  return out


def _torchvision_notes(config) -> dict:
  model = config.model
  width = model.width
  notes = {
    'model': f'torchvision.models.{model.backbone}()'
    + ('' if width == 64 else f' builds width 64; this backbone has width {width} (stage i: {width}·2^i channels)'),
    'fc': 'absent: set model.fc = torch.nn.Identity() (no parameters), then load_state_dict(strict=True); '
    'the model then returns the pooled features',
  }
  if model.cifar_stem:
    notes['stem'] = (
      f'CIFAR stem: model.conv1 = torch.nn.Conv2d(3, {width}, 3, 1, 1, bias=False) and '
      'model.maxpool = torch.nn.Identity() before loading'
    )
  return notes


def sidecar(run: Run, out: str, fmt: str, layout: str, parts, feature_dim: int) -> dict:
  """What ``PATH.json`` says about the exported weights (see the module docstring)."""
  config = run.config
  augment = config.augment
  info = {
    'file': storage.basename(out),
    'format': fmt,
    'layout': layout,
    'parts': list(parts),
    'step': run.step,
    'architecture': {
      'backbone': config.model.backbone,
      'width': int(config.model.width),
      'cifar_stem': bool(config.model.cifar_stem),
      'feature_dim': feature_dim,
      'dtype': config.model.dtype,
    },
    'preprocessing': {
      'input': 'RGB / 255, resized to crop_size (eval_resize > 0: shorter side to eval_resize, then centre '
      'crop_size), then (x - mean) / std per channel',
      'image_size': int(config.data.image_size),
      'crop_size': int(augment.crop_size),
      'eval_resize': int(augment.eval_resize),
      'mean': list(augment.mean),
      'std': list(augment.std),
    },
    'workdir': run.workdir,
    'gsg_jax_version': gsg_jax.__version__,
  }
  if layout == 'torchvision':
    info['torchvision'] = _torchvision_notes(config)
  info['config'] = json.loads(config.to_json_best_effort())
  return info


def write_arrays(arrays: dict[str, np.ndarray], out: str, fmt: str, metadata: dict[str, str]) -> None:
  """Writes ``arrays`` to ``out`` (a local path or an object-store URL) whole or not at all."""
  try:
    storage.makedirs(storage.dirname(out))
    if fmt == 'safetensors':
      from safetensors.numpy import save

      # np.ascontiguousarray would turn the int64 scalars into shape [1].
      storage.write_bytes(out, save({k: np.asarray(v).copy(order='C') for k, v in arrays.items()}, metadata))
    else:
      storage.save_npz(out, **arrays)
  except OSError as e:
    raise UnusablePathError(f'cannot write {out!r}: {e.strerror or e}.') from e


def write_export(run: Run, out: str, fmt: str, with_heads: bool = False, layout: str = 'flax') -> dict:
  """Reads the run's variables and writes ``out`` and ``out + '.json'``; returns the sidecar dict."""
  import jax
  import jax.numpy as jnp

  from gsg_jax import models

  parts = ('backbone',) + (HEADS if with_heads else ())
  variables = jax.device_get(restore_variables(run, parts))
  crop = run.config.augment.crop_size
  backbone = models.build_backbone(run.config.model)
  backbone_variables = {
    'params': variables['params']['backbone'],
    'batch_stats': variables['batch_stats'].get('backbone', {}),
  }
  feature_dim = int(
    jax.eval_shape(
      lambda v, x: backbone.apply(v, x, train=False),
      backbone_variables,
      jax.ShapeDtypeStruct((1, crop, crop, 3), jnp.float32),
    ).shape[-1]
  )
  if layout == 'torchvision':
    arrays = torchvision_arrays(
      backbone_variables['params'], backbone_variables['batch_stats'], backbone.stage_sizes, run.step
    )
  else:
    arrays = flax_arrays(variables)
  info = sidecar(run, out, fmt, layout, [p for p in parts if p in variables['params']], feature_dim)
  write_arrays(
    arrays,
    out,
    fmt,
    {'format': 'pt' if layout == 'torchvision' else 'flax', 'gsg_jax_layout': layout, 'step': str(run.step)},
  )
  try:
    storage.write_json(out + '.json', info, indent=2)
  except OSError as e:
    raise UnusablePathError(f'cannot write {out + ".json"!r}: {e.strerror or e}.') from e
  return info


def export(
  workdir: str,
  out: str,
  *,
  fmt: str | None = None,
  step: int | None = None,
  with_heads: bool = False,
  layout: str = 'flax',
) -> dict:
  """Export the run in ``workdir`` (checkpoint ``step``, default latest) to ``out``; see the module docstring."""
  fmt = check_arguments(out, fmt, layout, with_heads)
  run = find_run(workdir, step)
  check_layout(run.config, layout)
  return write_export(run, out, fmt, with_heads, layout)


def read_export(path: str) -> tuple[dict[str, np.ndarray], dict | None]:
  """(name → array, sidecar or None) of a file that ``export`` wrote."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import load

    arrays = load(storage.read_bytes(path))
  else:
    arrays = storage.load_npz(path)
  return arrays, storage.read_json_if_present(path + '.json')


def main(argv):
  from absl import flags

  f = flags.FLAGS
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {argv[1:]}')
  fmt = check_arguments(f.out, f.format, f.layout, f.with_heads)
  run = find_run(f.workdir, f.step)
  check_layout(run.config, f.layout)
  from gsg_jax.training.outputs import quiet_library_logs  # Imports JAX: after the checks, which need none.

  quiet_library_logs()
  info = write_export(run, f.out, fmt, f.with_heads, f.layout)
  arch = info['architecture']
  print(
    f'Wrote {f.out} ({info["layout"]} layout, {", ".join(info["parts"])} of {arch["backbone"]} width '
    f'{arch["width"]}, step {info["step"]}, {arch["feature_dim"]}-d features) and {f.out}.json'
  )


def _define_flags():
  from absl import flags

  flags.DEFINE_string('workdir', None, 'Run directory (with config.json and checkpoints/).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string('out', None, 'Output file, PATH.safetensors or PATH.npz; the sidecar is PATH.json.')
  flags.DEFINE_string('format', None, "'safetensors' or 'npz' (default: from the extension of --out).")
  flags.DEFINE_bool('with_heads', False, 'Also write the projector and predictor (flax layout).')
  flags.DEFINE_string('layout', 'flax', "'flax' (Flax names and shapes) or 'torchvision' (ResNet state_dict).")


def run():
  """The ``gsg-export`` command: user mistakes as one line on stderr and exit status 1 (``gsg_jax.cli``)."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
