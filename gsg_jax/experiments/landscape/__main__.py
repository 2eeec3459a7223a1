"""``python -m gsg_jax.experiments.landscape --config=configs/landscape.py[:reduced|:quick] --workdir=DIR``."""

from gsg_jax.experiments.landscape.experiment import main

if __name__ == '__main__':
  main()
