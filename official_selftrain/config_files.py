"""Finds gin files: a path as given, or a bare name in the bundled gin_configs/.

The gin configs live at the repository root (`gin_configs/`) and are installed
as package data (`official_selftrain/gin_configs`); both places are searched, so
a source checkout and an installed package behave the same.
"""

import os
from typing import List

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


def register_search_paths() -> None:
  """Lets `include 'common/x.gin'` find the bundled includes."""
  for directory in bundled_dirs():
    gin.add_config_file_search_path(directory)


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
