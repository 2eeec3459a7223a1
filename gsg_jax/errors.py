"""The errors that mean "the user asked for something that cannot be done".

Every command prints these as one line and exits with status 1 (see
``gsg_jax.cli``); any other exception is a bug in the library and keeps its
traceback. They subclass the built-in error a caller would expect, so
``except ValueError`` and ``except FileNotFoundError`` still catch them.
"""


class UserError(Exception):
  """A mistake in a command line, a config, a path or a dataset given to gsg_jax."""


class ConfigError(UserError, ValueError):
  """A config value, flag or combination of them that gsg_jax cannot run."""


class DataError(UserError, ValueError):
  """A dataset that cannot be read as asked: no images, an undecodable file, a missing split or feature."""


class MissingPathError(UserError, FileNotFoundError):
  """A run directory, checkpoint, dataset or file that does not exist."""


class UnusablePathError(UserError, PermissionError):
  """A path that exists but cannot be read or written."""


class NonFiniteLoss(FloatingPointError):
  """Training diverged: the loss became NaN or infinite. The last checkpoint holds the last good state."""


class Preempted(Exception):
  """Raised after a checkpoint has been written in response to SIGTERM/SIGINT; commands exit 143."""
