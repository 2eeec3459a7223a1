"""Sphinx configuration of the gsg_jax documentation (MyST Markdown, myst-nb, sphinx-book-theme).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the README's command; CI's).
The generated pages (results, components, configs) are written by ``docs/generate_results.py`` and committed;
``tests/test_docs.py`` checks that they equal what the script generates now.
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # This checkout's gsg_jax, installed or not.

import gsg_jax  # noqa: E402

project = 'gsg_jax'
author = 'the gsg_jax authors'
copyright = '2026, the gsg_jax authors'
release = version = gsg_jax.__version__

extensions = [
  'myst_nb',  # MyST Markdown pages and notebooks.
  'sphinx.ext.autodoc',
  'sphinx.ext.napoleon',  # Google-style docstrings.
  'sphinx.ext.mathjax',
  'sphinx.ext.viewcode',
]
exclude_patterns = ['_build', '_generated/*', 'results/text/*', '**/.ipynb_checkpoints', 'README.md']
source_suffix = {'.md': 'myst-nb', '.ipynb': 'myst-nb'}

myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist']
myst_heading_anchors = 3
# The notebook is committed executed (docs/examples/ablation.ipynb, written by docs/generate_results.py --notebook):
# executing it here would add about two minutes of CPU to every build.
nb_execution_mode = 'off'

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'members': True, 'undoc-members': False, 'show-inheritance': False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'sphinx_book_theme'
html_title = f'gsg_jax {release}'
html_static_path = ['_static']
html_css_files = ['custom.css']
html_theme_options = {
  'show_toc_level': 2,
  'home_page_in_toc': True,
  'use_download_button': False,
}
suppress_warnings = []


# The library's docstrings are plain text in the codebase's style (formulas indented under the sentence that
# introduces them, |x| for norms), not reStructuredText. Read them as the text they are: an indented block after a
# paragraph becomes a literal block, and a '|' outside inline code is a character, not a substitution.
import re  # noqa: E402

_INLINE_LITERAL = re.compile(r'(``.+?``)')
_LIST_ITEM = re.compile(r'^([*-]|\d+\.) ')


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _escape_bars(line: str) -> str:
  parts = _INLINE_LITERAL.split(line)
  return ''.join(part if part.startswith('``') else part.replace('|', r'\|') for part in parts)


def plain_text_docstring(app, what, name, obj, options, lines):
  out, paragraph, literal, previous_blank = [], None, None, True
  for line in lines:
    if not line.strip():
      out.append(line)
      previous_blank = True
      continue
    indent = _indent(line)
    if literal is not None:
      if indent >= literal:
        out.append(line)
        previous_blank = False
        continue
      literal = None
      if out and out[-1].strip():
        out.append('')
      paragraph = None
    stripped = line.lstrip()
    item = _LIST_ITEM.match(stripped)
    starts_literal = paragraph is not None and indent > paragraph and not item
    if starts_literal and not previous_blank:
      last = len(out) - 1
    elif starts_literal and previous_blank:
      last = max(i for i, text in enumerate(out) if text.strip())
    if starts_literal:
      if not out[last].rstrip().endswith('::'):
        out[last] = out[last].rstrip() + ('::' if out[last].rstrip().endswith(':') else ' ::')
      if out[-1].strip():
        out.append('')
      out.append(line)
      literal, previous_blank = indent, False
      continue
    if previous_blank or paragraph is None or indent < paragraph or item:
      paragraph = indent + (len(item.group(0)) if item else 0)
    out.append(_escape_bars(line))
    previous_blank = False
  lines[:] = out


def skip_bare_fields(app, what, name, obj, skip, options):
  """Leave out a class's fields that carry no docstring of their own (dataclass fields, annotated attributes): the
  class's parameter list already gives each with its type."""
  if what == 'class' and not (callable(obj) or isinstance(obj, (property, classmethod, staticmethod))):
    own_doc = getattr(obj, '__doc__', None)
    if own_doc is None or own_doc == type(obj).__doc__:
      return True
  return None


def setup(app):
  app.connect('autodoc-process-docstring', plain_text_docstring, priority=400)
  app.connect('autodoc-skip-member', skip_bare_fields)
