"""Finds gin files: a path as given, or a bare name in the bundled gin_configs/.

The gin configs live at the repository root (`gin_configs/`) and are installed
as package data (`official_selftrain/gin_configs`); both places are searched, so
a source checkout and an installed package behave the same.
"""

import logging
import os
from typing import List
from typing import Sequence

import gin

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class GinFileNotFoundError(FileNotFoundError):
  """A --gin_file names nothing that exists."""


def bundled_dirs() -> List[str]:
  """Directories that hold the bundled gin configs, most specific first."""
  candidates = [
    os.path.join(_PACKAGE_DIR, 'gin_configs'),
    os.path.join(os.path.dirname(_PACKAGE_DIR), 'gin_configs'),
  ]
  return [d for d in candidates if os.path.isdir(d)]


class _BundledIncludeFilter(logging.Filter):
  """Drops gin's 'Path not found' error for an include that a bundled dir has.

  Gin tries each search path in turn; on the first (the working directory)
  its Python-package reader logs `Path not found: common/x.gin` at ERROR level
  (after an INFO line) before the bundled directory, searched next, finds the
  file. Such lines report no error, so they are dropped; a path found nowhere
  is still logged.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if record.msg not in _GIN_LOOKUP_LINES or not record.args:
      return True
    name = str(record.args[0])
    return not any(
      os.path.isfile(os.path.join(d, name)) for d in bundled_dirs()
    )


# gin.resource_reader's lines for a lookup on the working-directory prefix.
_GIN_LOOKUP_LINES = ('Path not found: %s', 'system_path_file_exists:%s')
_INCLUDE_FILTER = _BundledIncludeFilter()
_REGISTERED = set()


def register_search_paths() -> None:
  """Lets `include 'common/x.gin'` find the bundled includes."""
  for directory in bundled_dirs():
    if directory not in _REGISTERED:
      _REGISTERED.add(directory)
      gin.add_config_file_search_path(directory)
  logging.getLogger().addFilter(_INCLUDE_FILTER)  # once: filters are a set


def resolve(name: str) -> str:
  """Returns the path of a gin file given as a path or a bundled name.

  Args:
    name: 'coco_s4.gin', 'coco_s4', or a path to a .gin file.

  Returns:
    An existing path.

  Raises:
    GinFileNotFoundError: naming the file and where it was looked for.
  """
  register_search_paths()
  if os.path.isfile(name):
    # A user's gin file may include its siblings by bare name.
    gin.add_config_file_search_path(os.path.dirname(os.path.abspath(name)))
    return os.path.abspath(name)
  tried = [os.path.abspath(name)]
  for directory in bundled_dirs():
    for candidate in (name, name + '.gin'):
      path = os.path.join(directory, candidate)
      tried.append(path)
      if os.path.isfile(path):
        return path
  available = sorted(
    f for d in bundled_dirs() for f in os.listdir(d) if f.endswith('.gin')
  )
  raise GinFileNotFoundError(
    f'gin file {name!r} not found; looked at: {", ".join(tried)}. '
    f'Bundled configs: {", ".join(available)}'
  )


class GinConfigError(ValueError):
  """A gin file or binding does not parse; names the file or binding."""


def parse(gin_files: Sequence[str], gin_params: Sequence[str]) -> None:
  """Parses gin files (paths or bundled names) and then single bindings.

  Raises:
    GinFileNotFoundError: a file is neither a path nor a bundled name.
    GinConfigError: a file or binding does not parse (gin's message, which
      names the line and binding, plus the files and params given).
  """
  paths = [resolve(f) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(
      paths, gin_params, finalize_config=False
    )
  except (ValueError, IOError, SyntaxError) as e:
    raise GinConfigError(
      f'gin: {e}\n  (files: {paths}, params: {list(gin_params)})'
    ) from e
