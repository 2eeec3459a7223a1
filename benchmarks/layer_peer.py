"""The backbone's layers one at a time, and the whole backbone, in gsg_jax (XLA:CPU) and in PyTorch on the same CPU.

    python benchmarks/layer_peer.py --out benchmarks/results/throughput/layer_peer.json

``peer_pytorch.py`` compares whole train steps; this script says where a gap between them sits. For every
distinct convolution of the backbone (read from gsg_jax's network by tracing it: shapes, strides, padding, and how
many times each occurs) it times, on each side:

* ``forward``: the convolution;
* ``input gradient``: its gradient with respect to its input (not counted for the first layer, whose input is the
  image: a train step does not compute it);
* ``weight gradient``: its gradient with respect to its kernel;
* ``BatchNorm + ReLU``: batch statistics, normalisation, scale and offset, ReLU, forward and backward, on the
  convolution's output (gsg_jax's ``models.normalization.standardize``; PyTorch's ``BatchNorm2d`` and ``relu``).

Then the whole backbone, forward and backward with respect to its parameters, as one program (gsg_jax: one
``jit``; PyTorch: eager autograd), against the sum of its layers weighted by their counts. Where the whole is
slower than its layers, the difference is what the graph adds: the layers' elementwise tails, layout copies, the
residual additions and the scheduling of the program.

Both sides run on one batch of one view (``--batch-size``), float32, channels_last in PyTorch, each op the fastest
of ``--repeats`` repeats of ``--iterations`` calls after two warm-up calls. gsg_jax's programs are compiled with the
project's compiler options (``gsg_jax.compiler``); PyTorch's convolution gradients are
``aten.convolution_backward`` with one output asked for, as its autograd calls it. PyTorch pads every convolution
by k // 2 on each side, as ``peer_pytorch.py``'s network; where gsg_jax's ConvNet pads a stride-2 layer on one
side only ('SAME'), the output shapes are the same. The PyTorch half runs in its own environment as
``peer_pytorch.py``'s does, and the script exits 0 with "SKIP" without it.
"""

import argparse
import functools
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import peer_pytorch  # noqa: E402
import records  # noqa: E402

OPS = ('forward', 'input_gradient', 'weight_gradient', 'batchnorm_relu')
OP_LABELS = {
  'forward': 'forward',
  'input_gradient': 'input gradient',
  'weight_gradient': 'weight gradient',
  'batchnorm_relu': 'BatchNorm + ReLU',
}


# ------------------------------------------------------------------------------------------------ the parent (JAX)


def case_backbone(case: str, batch_size: int):
  """(gsg_jax's backbone module, its input shape [B, H, W, 3], the PyTorch peer's spec) of ``case``."""
  from gsg_jax import models

  spec = peer_pytorch.case_spec('simsiam', case, batch_size)
  size = spec['augment']['crop_size']
  return models.build_backbone(peer_pytorch.case_config('simsiam', case).model), (batch_size, size, size, 3), spec


def convolutions(backbone, input_shape) -> list[dict]:
  """The distinct convolutions of ``backbone``'s training forward pass, in order of first use, each with its
  ``count``: shapes (``batch``, ``size`` (input H = W), ``in_channels``, ``out_channels``, ``kernel``), ``stride``,
  ``padding`` ([lo, hi] per spatial axis), and ``first`` (the layer that reads the image)."""
  import jax
  import jax.numpy as jnp

  x = jnp.zeros(input_shape, jnp.float32)
  variables = jax.eval_shape(lambda: backbone.init(jax.random.key(0), x, train=True))
  jaxpr = jax.make_jaxpr(lambda v, x: backbone.apply(v, x, train=True, mutable=['batch_stats']))(variables, x)
  found = {}
  for eqn in _equations(jaxpr.jaxpr):
    if eqn.primitive.name != 'conv_general_dilated':
      continue
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    p = eqn.params
    if tuple(p['lhs_dilation']) != (1, 1) or tuple(p['rhs_dilation']) != (1, 1) or p['feature_group_count'] != 1:
      raise ValueError(f'layer_peer times plain convolutions only; found {p}')
    if lhs[1] != lhs[2] or rhs[0] != rhs[1] or len(set(p['window_strides'])) != 1:
      raise ValueError(f'layer_peer times square inputs, kernels and strides only; found {lhs}, {rhs}, {p}')
    layer = {
      'batch': lhs[0],
      'size': lhs[1],
      'in_channels': lhs[3],
      'out_channels': rhs[3],
      'kernel': rhs[0],
      'stride': p['window_strides'][0],
      'padding': [list(pair) for pair in p['padding']],
    }
    key = json.dumps(layer, sort_keys=True)
    if key in found:
      found[key]['count'] += 1
    else:
      found[key] = {**layer, 'count': 1, 'first': not found}
  return list(found.values())


def _equations(jaxpr):
  """Every equation of ``jaxpr`` and of the jaxprs inside it (jit, custom derivatives, remat), in order."""
  import jax

  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from _equations(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from _equations(sub)


def backbone_iterations(iterations: int) -> int:
  """Calls per repeat of the whole backbone, which takes as long as tens of its layers."""
  return max(1, iterations // 4)


def label(layer: dict) -> str:
  k, s = layer['kernel'], layer['stride']
  return f'{layer["in_channels"]}→{layer["out_channels"]}, {k}×{k}' + (f'/{s}' if s > 1 else '') + f', {layer["size"]}²'


def best_ms(fn, args, iterations: int, repeats: int, block) -> float:
  """The fastest of ``repeats`` means over ``iterations`` calls of ``fn(*args)``, in ms, after two warm-up calls."""
  for _ in range(2):
    block(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(iterations):
      out = fn(*args)
    block(out)
    best = min(best, (time.perf_counter() - t0) / iterations)
  return 1e3 * best


def jax_layer_ms(layer: dict, iterations: int, repeats: int) -> dict:
  """gsg_jax's ms per call of each of ``OPS`` for ``layer``."""
  import jax
  import jax.numpy as jnp

  from gsg_jax import compiler
  from gsg_jax.models.normalization import standardize

  k, s, c_in, c_out = layer['kernel'], layer['stride'], layer['in_channels'], layer['out_channels']

  def conv(x, w):
    return jax.lax.conv_general_dilated(
      x, w, (s, s), [tuple(p) for p in layer['padding']], dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (layer['batch'], layer['size'], layer['size'], c_in))
  w = jax.random.normal(keys[1], (k, k, c_in, c_out)) * (2.0 / (k * k * c_in)) ** 0.5
  y = conv(x, w)
  dy = jax.random.normal(keys[2], y.shape)
  scale, offset = jnp.ones((c_out,)), jnp.zeros((c_out,))

  def batchnorm_relu(y, scale, offset):
    return jax.nn.relu(standardize(y, (0, 1, 2), 1e-5)[0] * scale + offset)

  programs = {
    'forward': (conv, (x, w)),
    'input_gradient': (lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], (x, w, dy)),
    'weight_gradient': (lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0], (x, w, dy)),
    'batchnorm_relu': (
      lambda y, scale, offset, dy: jax.vjp(batchnorm_relu, y, scale, offset)[1](dy),
      (y, scale, offset, dy),
    ),
  }
  return {
    op: best_ms(compiler.jit(fn), args, iterations, repeats, jax.block_until_ready)
    for op, (fn, args) in programs.items()
  }


def jax_backbone_ms(backbone, input_shape, iterations: int, repeats: int) -> float:
  """gsg_jax's ms per forward and backward pass of the whole backbone (gradient of Σ features·r by parameters)."""
  import jax

  from gsg_jax import compiler

  x = jax.random.normal(jax.random.key(0), input_shape)
  variables = jax.jit(lambda x: backbone.init(jax.random.key(1), x, train=True))(x)
  features = backbone.apply(variables, x, train=True, mutable=['batch_stats'])[0]
  r = jax.random.normal(jax.random.key(2), features.shape)

  def loss(params, x):
    out, _ = backbone.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return (out * r).sum()

  return best_ms(compiler.jit(jax.grad(loss)), (variables['params'], x), iterations, repeats, jax.block_until_ready)


def measure_jax(cases, batch_size: int, iterations: int, repeats: int) -> dict:
  """{case: {'layers': [layer with 'jax_ms'], 'backbone_ms': float, 'spec': the PyTorch peer's spec}}."""
  out = {}
  for case in cases:
    backbone, input_shape, spec = case_backbone(case, batch_size)
    layers = convolutions(backbone, input_shape)
    for layer in layers:
      layer['jax_ms'] = jax_layer_ms(layer, iterations, repeats)
      print(f'gsg_jax {case} {label(layer)}: {layer["jax_ms"]}', file=sys.stderr, flush=True)
    backbone_ms = jax_backbone_ms(backbone, input_shape, backbone_iterations(iterations), repeats)
    print(f'gsg_jax {case} backbone: {backbone_ms:.1f} ms', file=sys.stderr, flush=True)
    out[case] = {'layers': layers, 'backbone_ms': backbone_ms, 'spec': spec}
  return out


def run_torch_child(python: str, measured: dict, args) -> dict:
  """{case: {'layers': [ms per op], 'backbone_ms'}, 'torch', 'threads'} from a child process of ``python``."""
  request = {
    'cases': {case: {'layers': m['layers'], 'spec': m['spec']} for case, m in measured.items()},
    'iterations': args.iterations,
    'repeats': args.repeats,
    'threads': args.torch_threads,
  }
  return peer_pytorch.child_json(python, os.path.abspath(__file__), request)


def weighted(layers, side: str, op: str) -> float:
  """Σ over layers of count × ms of ``op`` on ``side`` (``jax_ms`` or ``torch_ms``); the first layer's input
  gradient is not counted."""
  return sum(ly['count'] * ly[side][op] for ly in layers if not (op == 'input_gradient' and ly['first']))


def layer_total(layer: dict, side: str) -> float:
  return sum(layer[side][op] for op in OPS if not (op == 'input_gradient' and layer['first']))


def table_rows(measured: dict, torch_out: dict) -> list[dict]:
  """Per case: a row per distinct layer, the count-weighted sum of the layers, and the whole backbone."""
  rows = []
  for case, m in measured.items():
    network = f'{m["spec"]["model"]["backbone"]} width {m["spec"]["model"]["width"]}'
    layers = [{**ly, 'torch_ms': t} for ly, t in zip(m['layers'], torch_out['cases'][case]['layers'])]
    for layer in layers:
      row = {'network': network, 'layer': label(layer), 'count': layer['count']}
      for op in OPS:
        needed = not (op == 'input_gradient' and layer['first'])
        row[f'{op}_ratio'] = layer['torch_ms'][op] / layer['jax_ms'][op] if needed else None
      row['jax_ms'], row['torch_ms'] = layer_total(layer, 'jax_ms'), layer_total(layer, 'torch_ms')
      row['ratio'] = row['torch_ms'] / row['jax_ms']
      rows.append(row)
    total = {'network': network, 'layer': 'all layers, × count', 'count': sum(ly['count'] for ly in layers)}
    for op in OPS:
      total[f'{op}_ratio'] = weighted(layers, 'torch_ms', op) / weighted(layers, 'jax_ms', op)
    total['jax_ms'] = sum(weighted(layers, 'jax_ms', op) for op in OPS)
    total['torch_ms'] = sum(weighted(layers, 'torch_ms', op) for op in OPS)
    total['ratio'] = total['torch_ms'] / total['jax_ms']
    rows.append(total)
    whole = {'network': network, 'layer': 'whole backbone, forward + backward', 'count': None}
    whole['jax_ms'], whole['torch_ms'] = m['backbone_ms'], torch_out['cases'][case]['backbone_ms']
    whole['ratio'] = whole['torch_ms'] / whole['jax_ms']
    rows.append(whole)
  return rows


def layer_record(
  rows, command: str, batch_size: int, torch_version: str, threads: int, machine: str, raw: str = ''
) -> dict:
  """The results-schema table of ``table_rows``; ``raw``: the file of both sides' ms per op, beside the record."""
  ratio = lambda key, text: {'key': key, 'label': f'{text}, gsg_jax ÷ PyTorch', 'format': '.2f'}
  columns = [
    {'key': 'network', 'label': 'network'},
    {'key': 'layer', 'label': 'layer (in→out, kernel/stride, input size)'},
    {'key': 'count', 'label': 'count', 'format': 'd'},
    *(ratio(f'{op}_ratio', OP_LABELS[op]) for op in OPS),
    {'key': 'jax_ms', 'label': 'gsg_jax ms', 'format': '.2f'},
    {'key': 'torch_ms', 'label': 'PyTorch ms', 'format': '.2f'},
    ratio('ratio', 'all'),
  ]
  return records.table(
    'throughput',
    f"The backbone's layers one at a time and the whole backbone: gsg_jax (XLA:CPU) against PyTorch {torch_version} "
    f'on {threads} thread{"s" * (threads != 1)}, batch {batch_size}',
    order=36,
    command=command,
    source='the output of benchmarks/layer_peer.py: gsg_jax timed in its process, PyTorch in a child process of '
    'its own environment, one after the other in the same run',
    machine_text=machine,
    **({'results_file': os.path.basename(raw)} if raw else {}),
    columns=columns,
    rows=rows,
    notes=[
      'Ratios are speed ratios: PyTorch ms ÷ gsg_jax ms (above 1: gsg_jax is faster). ms: one call of one layer; '
      'the ms of a layer row add its four ops (the first layer without its input gradient, which a step does not '
      'compute), those of "all layers" weight each layer by its count.',
      '"Whole backbone": the gradient of Σ features·r with respect to every parameter, one program; the ConvNet and '
      'ResNet-18 as in peer_pytorch.py. Where it is slower than all its layers, the rest is what the program adds '
      'around them (elementwise tails, residual additions, layout copies, scheduling).',
      "BatchNorm + ReLU is timed on every convolution's output, although in ResNet-18 the last BatchNorm of a "
      'block is followed by the residual addition before its ReLU.',
    ],
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--cases', default='quick,resnet18', help=f'comma-separated: {", ".join(peer_pytorch.CASES)}')
  parser.add_argument('--batch-size', type=int, default=128)
  parser.add_argument('--iterations', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--torch-threads', type=int, default=0, help="PyTorch's intra-op threads (0: its default)")
  parser.add_argument('--torch-python', default='', help=f'$GSG_TORCH_PYTHON, else {peer_pytorch.DEFAULT_TORCH_PYTHON}')
  parser.add_argument('--out', default='', help='write the results-schema table here')
  parser.add_argument('--raw', default='', help="also write both sides' ms per layer and op here")
  parser.add_argument(
    '--conditions', default='shared', help="how the machine was used, after its CPU in the record's machine"
  )
  args = parser.parse_args(argv)
  cases = [c for c in args.cases.split(',') if c]
  unknown = [c for c in cases if c not in peer_pytorch.CASES]
  if unknown:
    parser.error(f'unknown --cases {unknown}: expected {", ".join(peer_pytorch.CASES)}')
  python = peer_pytorch.torch_python(args)
  version = peer_pytorch.torch_version(python)
  if version is None:
    print(peer_pytorch.skip_message(python))
    return 0
  measured = measure_jax(cases, args.batch_size, args.iterations, args.repeats)
  torch_out = run_torch_child(python, measured, args)
  rows = table_rows(measured, torch_out)
  for row in rows:
    ratios = ' '.join(f'{op} {row[f"{op}_ratio"]:.2f}' for op in OPS if row.get(f'{op}_ratio') is not None)
    print(f'{row["network"]:>20} {row["layer"]:>36}  {ratios}  {row["jax_ms"]:8.2f} / {row["torch_ms"]:8.2f} ms')
  if args.out:
    command = records.command(__file__, argv)
    machine = records.machine(args.conditions)
    records.write(
      layer_record(rows, command, args.batch_size, torch_out['torch'], torch_out['threads'], machine, args.raw),
      args.out,
    )
  if args.raw:
    records.write({'jax': measured, 'torch': torch_out}, args.raw)
  return 0


# ------------------------------------------------------------------------------------------------ the child (PyTorch)


def torch_child() -> int:
  """Reads the request (JSON on stdin), prints {'torch', 'threads', 'cases'} as JSON."""
  import torch

  request = json.loads(sys.stdin.read())
  if request.get('threads'):
    torch.set_num_threads(request['threads'])
  torch.set_flush_denormal(True)  # As XLA:CPU, which flushes denormals to zero.
  torch.manual_seed(0)
  time_ms = functools.partial(best_ms, iterations=request['iterations'], repeats=request['repeats'], block=id)
  cases = {}
  for case, c in request['cases'].items():
    layers = []
    for layer in c['layers']:
      layers.append(torch_layer_ms(layer, time_ms))
      print(f'PyTorch {case} {label(layer)}: {layers[-1]}', file=sys.stderr, flush=True)
    backbone_ms = torch_backbone_ms(
      c['spec'], functools.partial(time_ms, iterations=backbone_iterations(request['iterations']))
    )
    print(f'PyTorch {case} backbone: {backbone_ms:.1f} ms', file=sys.stderr, flush=True)
    cases[case] = {'layers': layers, 'backbone_ms': backbone_ms}
  print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'cases': cases}))
  return 0


def torch_layer_ms(layer: dict, time_ms) -> dict:
  import torch
  import torch.nn.functional as F

  k, s, c_in, c_out = layer['kernel'], layer['stride'], layer['in_channels'], layer['out_channels']
  pad = k // 2
  cl = torch.channels_last
  x = torch.randn(layer['batch'], c_in, layer['size'], layer['size']).contiguous(memory_format=cl)
  w = (torch.randn(c_out, c_in, k, k) * (2.0 / (k * k * c_in)) ** 0.5).contiguous(memory_format=cl)
  bn = torch.nn.BatchNorm2d(c_out).train()

  def gradient(mask):
    return lambda x, w, dy: torch.ops.aten.convolution_backward(
      dy, x, w, None, (s, s), (pad, pad), (1, 1), False, (0, 0), 1, mask
    )

  def batchnorm_relu(y, dy):
    y = y.detach().requires_grad_()
    torch.relu(bn(y)).backward(dy)
    bn.zero_grad(set_to_none=True)
    return y.grad

  with torch.no_grad():
    y = F.conv2d(x, w, None, s, pad)
    dy = torch.randn_like(y)
    out = {
      'forward': time_ms(lambda x, w: F.conv2d(x, w, None, s, pad), (x, w)),
      'input_gradient': time_ms(gradient([True, False, False]), (x, w, dy)),
      'weight_gradient': time_ms(gradient([False, True, False]), (x, w, dy)),
    }
  out['batchnorm_relu'] = time_ms(batchnorm_relu, (y, dy))
  return out


def torch_backbone_ms(spec: dict, time_ms) -> float:
  import torch

  network, _ = peer_pytorch.build_torch_network(spec)
  backbone = network.backbone
  size = spec['augment']['crop_size']
  x = torch.randn(spec['batch_size'], 3, size, size).contiguous(memory_format=torch.channels_last)
  r = torch.randn_like(backbone(x))

  def step(x):
    backbone.zero_grad(set_to_none=True)
    (backbone(x) * r).sum().backward()

  return time_ms(step, (x,))


if __name__ == '__main__':
  if sys.argv[1:] == ['--torch-child']:
    sys.exit(torch_child())
  sys.exit(main())
