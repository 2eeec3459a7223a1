"""``python -m gsg_jax.experiments.linear_dynamics [--config=configs/linear_dynamics.py[:quick]] --out=DIR``."""

from gsg_jax.experiments.linear_dynamics.run import main

if __name__ == '__main__':
  main()
