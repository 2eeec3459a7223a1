"""The linear-network theory of Tian, Chen & Ganguli (ICML 2021), simulated.

``python -m gsg_jax.experiments.linear_dynamics [--config=configs/linear_dynamics.py[:quick]] --out=DIR``

* ``theory``: the model, the loss and its gradient flow, the per-mode dynamics, their fixed points and the collapse
  threshold, DirectPred on the linear model: the math in its docstring, the closed forms as functions;
* ``simulation``: the per-mode and matrix dynamics integrated with Euler steps (``lax.scan``, sweeps ``vmap``-ed);
* ``figures``: the four stages (phase portraits, collapse threshold, matrix dynamics, DirectPred), each a figure
  and the numbers behind it;
* ``run``: the command, which writes every figure and results.json; its config is ``configs/linear_dynamics.py``.
"""
