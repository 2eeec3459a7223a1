"""A small ablation from a notebook or script: SimSiam with/without GSG, with/without predictor.

    python examples/ablation.py [--steps 150]      # after `pip install -e .`

Imports the pure train step and runs it directly on the built-in dataset,
then judges each encoder with the weighted kNN monitor. Each row prints the
final loss, the collapse signal (std of ℓ2-normalised projections; ≈1/√d
healthy, 0 collapsed) and kNN top-1 accuracy. ``examples/ablation.ipynb``
runs a smaller version in a notebook and plots it.
"""

import argparse

import jax

from gsg_jax import config_lib, data, parallel
from gsg_jax.evaluation.monitor import Monitor
from gsg_jax.training import build_trainer


def run(loss: str, predictor: str, steps: int, dataset, mesh):
  config = config_lib.make_config(loss=loss, target='online', predictor=predictor, preset='quick')
  steps_per_epoch = dataset.train.steps_per_epoch(config.batch_size)
  config.num_epochs = -(-steps // steps_per_epoch)
  trainer = build_trainer(config, steps_per_epoch, dataset.num_classes)
  batch = parallel.batch_sharding(mesh)
  init, train_step = parallel.jit_trainer(trainer, mesh)
  state = init(jax.random.key(0), dataset.train.image_shape)
  rng = jax.random.key(1)
  for i, data_batch in enumerate(dataset.train.batches(config.batch_size, seed=0, start_step=0, sharding=batch)):
    if i == steps:
      break
    state, metrics = train_step(state, data_batch, rng)
  knn = Monitor(trainer, dataset, config, mesh)(state)
  return float(metrics['loss']), float(metrics['projection_std']), knn['knn_top1']


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps', type=int, default=150)
  args = parser.parse_args()
  dataset = data.load_dataset(config_lib.make_config(preset='quick').data)
  mesh = parallel.create_mesh()
  print(f'{"method":<28} {"loss":>8} {"proj std":>9} {"kNN top-1":>10}')
  for loss_name in ('negcos', 'gsg'):
    for predictor in ('mlp', 'none'):
      loss, std, knn = run(loss_name, predictor, args.steps, dataset, mesh)
      name = 'simsiam' + ('+gsg' if loss_name == 'gsg' else '') + ('' if predictor == 'mlp' else ', no predictor')
      print(f'{name:<28} {loss:8.4f} {std:9.4f} {knn:9.2f}%', flush=True)


if __name__ == '__main__':
  main()
