"""What every command line shares: user mistakes as one line and exit 1, bugs as tracebacks.

    def main(argv): ...
    def run(): cli.run(main)      # the console script; ``python -m`` calls it too

``--config=configs/<name>.py`` is found in the installed package when the
relative path does not exist (``config_lib.resolve_config_argv``), so every
command runs from any folder. Three places can meet a user's mistake: absl's flag parsing (an unknown flag,
a value of the wrong type, a misspelt ``--config.key``, a config file that
fails to load or rejects its preset), reading ``--config``'s value (a config
file that does not exist), and the command itself (``gsg_jax.errors``; a
diverged run too). All three print ``error: <the root cause>`` on stderr and
exit 1. A preempted
run exits 143 (128 + SIGTERM) so that schedulers requeue it.
"""

import ast
import re
import sys

from absl import app, flags

from gsg_jax import errors

PREEMPTED_EXIT_CODE = 143


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def root_message(e: BaseException) -> str:
  """The line of ``e``'s message that says what is wrong.

  absl and ml-collections wrap a config file's own error (chained, or pasted
  with its traceback into the message) and quote a misspelt key's message as a
  string literal; the last line of the innermost message is the user's.
  """

  def wraps(e):  # absl's flag error says which flag; it is a wrapper only where it pastes a traceback.
    return isinstance(e, OSError) or (isinstance(e, flags.Error) and 'Traceback' in str(e))

  while wraps(e) and (e.__cause__ or e.__context__) is not None:
    e = e.__cause__ or e.__context__
  text = str(e.args[0]) if e.args else str(e)
  if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      pass
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if len(lines) >= 2 and lines[-1].startswith('Did you mean'):  # ml-collections: the key, then its hint.
    return f'no config key {lines[-2]}. {lines[-1]}'
  return re.sub(r'^[\w.]+(Error|Exception): ', '', lines[-1]) if lines else type(e).__name__


def _parse_flags(argv):
  from gsg_jax import config_lib  # Local: cli stays importable before the config machinery.

  try:
    return flags.FLAGS(config_lib.resolve_config_argv(argv))
  # ml-collections raises AttributeError/KeyError for a misspelt --config.key while absl parses it; any other
  # exception here is the flag machinery's own and keeps its traceback.
  except (flags.Error, AttributeError, KeyError) as e:
    fail(f'{root_message(e)} (see --helpfull).')


def define_config_dict(name: str, config, help_text: str = 'Config; override keys with --config.KEY=VALUE.'):
  """``config_flags.DEFINE_config_dict`` for a command whose config is built in code. It applies the command
  line's ``--config.KEY=VALUE`` overrides as it is defined, so a misspelt key is the user's mistake here."""
  from ml_collections import config_flags

  try:
    return config_flags.DEFINE_config_dict(name, config, help_text, lock_config=True)
  except (AttributeError, KeyError) as e:
    fail(f'{root_message(e)} (see --helpfull).')


def config_value(flag):
  """``flag.value`` of a ``config_flags`` flag; a config file that cannot be loaded is the user's mistake."""
  try:
    value = flag.value
    if value is not None:
      value.keys()  # ml-collections defers a load failure to the first attribute access.
    return value
  except OSError as e:
    raise errors.ConfigError(f'--config: {root_message(e)}') from e


def run(main) -> None:
  """``app.run(main)``, with the user's mistakes (flags and ``errors.UserError``) as one line."""

  def guarded(argv):
    try:
      return main(argv)
    except (errors.UserError, errors.NonFiniteLoss) as e:
      fail(str(e))
    except errors.Preempted as e:
      print(str(e), file=sys.stderr)
      sys.exit(PREEMPTED_EXIT_CODE)

  _show_flags_in_help(main.__module__)
  app.run(guarded, flags_parser=_parse_flags)


def _show_flags_in_help(module: str) -> None:
  """absl's ``--help`` lists the key flags of the module named by ``sys.argv[0]``: the module itself under
  ``python -m``, but a console script (``gsg-train``) is another file, so its command's flags are registered
  for it too."""
  if module == '__main__':
    return
  for flag in flags.FLAGS.get_key_flags_for_module(module):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
