"""Checkpoints in ``<workdir>/checkpoints`` through orbax's CheckpointManager.

orbax writes each checkpoint into a temporary directory and renames it when
complete, so a save interrupted by a crash leaves the previous checkpoint as
the latest usable one (in an object store, where renames are not atomic, orbax
marks a finished checkpoint with a commit file instead). Saves are
asynchronous: training continues while the arrays are written; ``close()``
waits for the last one. ``workdir`` may be an object-store URL.
"""

import jax
import orbax.checkpoint as ocp

from gsg_jax import storage
from gsg_jax.errors import ConfigError


class Checkpointer:
  def __init__(self, workdir: str, every_steps: int, keep: int):
    self.every_steps = every_steps
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(storage.join(storage.resolve(workdir), 'checkpoints'), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, like, step: int | None = None, partial: bool = False):
    """The state saved at ``step`` (default latest), with the structure, dtypes and shardings of ``like``;
    ``partial``: ``like`` holds a subset of the saved entries, and only those are read."""
    step = self.manager.latest_step() if step is None else step
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    if partial:
      restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
      args = ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=True)
    else:
      args = ocp.args.StandardRestore(abstract)
    try:
      return self.manager.restore(step, args=args)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      detail = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)[:300]
      raise ConfigError(
        f'the checkpoint at step {step} in {self.manager.directory} does not match the state this config builds: '
        'it was written under another config (compare config.json beside it). Use a new --workdir, or that '
        f'config. orbax said: {detail}'
      ) from e

  def should_save(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state, force: bool = False) -> bool:
    """Save if ``step`` is on the interval (or ``force``). Returns whether a save started."""
    if not (force or self.should_save(step)) or step == self.manager.latest_step():
      return False
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
