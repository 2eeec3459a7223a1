"""``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:quick] --workdir=DIR``."""

from gsg_jax.experiments.landscape.run import main

if __name__ == '__main__':
  main()
