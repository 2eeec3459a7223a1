"""The floors of a config's data at a given kNN setting, without a run: raw pixels and the random-init encoder.

    python benchmarks/floors.py --configs=simsiam:quick,simclr:quick --knn-temperature=0.1 --out=FILE.json

Computes what ``gsg_jax.evaluate`` puts beside every figure (the ``floors`` evaluator: kNN and the fast linear
probe of raw pixels and of the random-init encoder, on the config's memory and held-out splits) for
each config, and writes ``{"command", "date", "commit", "knn", "floors": [{"label", "values"}], "per_config"}``.
A results record (``docs/development/results_schema.md``) names such a file in its ``"floors"`` to draw them.
Used for studies whose runs were evaluated at another kNN temperature than the one their floors were taken at.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import records  # noqa: E402

sys.path.insert(0, records.REPO)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--configs', required=True, help='comma-separated NAME:PRESET (configs/NAME.py)')
  parser.add_argument('--knn-temperature', type=float, default=None, help='override config.eval.knn_temperature')
  parser.add_argument('--knn-k', type=int, default=None, help='override config.eval.knn_k')
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)

  from gsg_jax import config_lib, data
  from gsg_jax.evaluation import floors, labelled
  from gsg_jax.evaluation.context import network_context
  from gsg_jax.evaluation.evaluator import get_evaluators, run_evaluators
  from gsg_jax.evaluation.knn import knn_settings
  from gsg_jax.training import build_trainer

  per_config, knn = {}, None
  with tempfile.TemporaryDirectory() as scratch:
    for spec in args.configs.split(','):
      name, _, preset = spec.partition(':')
      config = config_lib.named_config(name, preset or None)
      if args.knn_temperature is not None:
        config.eval.knn_temperature = args.knn_temperature
      if args.knn_k is not None:
        config.eval.knn_k = args.knn_k
      config.eval.floor_cache_dir = os.path.join(scratch, 'cache')
      dataset = data.load_dataset(config.data)
      memory, heldout = labelled.run_memory(dataset, config), labelled.run_heldout(dataset, config)
      trainer = build_trainer(config, dataset.train.steps_per_epoch(config.batch_size), dataset.num_classes)
      knn = knn_settings(config.eval)
      state = floors.random_init_state(trainer, config, dataset.train.image_shape)
      ctx = network_context(
        config, os.path.join(scratch, 'run'), dataset.train.image_shape, memory, heldout, dataset.num_classes, trainer
      ).at_state(state)
      metrics = run_evaluators(get_evaluators(['floors']), ctx)[0]
      per_config[spec] = {
        kind: {key: round(float(metrics[f'floors/{kind}/{key}']), 2) for key in ('knn_top1', 'fast_linear_top1')}
        for kind in ('raw_pixels', 'random_init')
      }
      print(spec, per_config[spec], flush=True)
  distinct = {json.dumps(v, sort_keys=True) for v in per_config.values()}
  record = {
    'command': 'python benchmarks/floors.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
    'date': datetime.date.today().isoformat(),
    'commit': records.git_commit(),
    'knn': {k: v for k, v in knn.items()} if isinstance(knn, dict) else knn,
    'per_config': per_config,
  }
  if len(distinct) == 1:  # The same floors for every config (same data, same backbone and seed): one set to draw.
    values = next(iter(per_config.values()))
    record['floors'] = [
      {'label': 'raw pixels', 'values': values['raw_pixels']},
      {'label': 'random init', 'values': values['random_init']},
    ]
  records.write(record, args.out)
  print('wrote', args.out)
  return 0


if __name__ == '__main__':
  sys.exit(main())
