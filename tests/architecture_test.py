"""The package's shape: imports point down the layers, no cycle, short functions.

Read from the source with `ast` (every import, at module level or inside a
function), so the test sees what a reader of the code sees.
"""

import ast
import os
import sys

from helpers import REPO
import pytest

sys.path.insert(0, os.path.join(REPO, 'tools'))
import update_build  # noqa: E402

PACKAGE = 'official_selftrain'

# Bottom to top. A module may import from its own layer's part (acyclically)
# and from lower layers, never from higher ones.
LAYERS = (
  ('progress', 'timing', 'config_files', 'losses', 'ops', 'stage_names'),
  ('data',),
  ('configs',),
  ('pseudo_labels', 'serving'),
  ('tasks',),
  ('train_lib', 'pipeline', 'noisy_student', 'released_teachers'),
  ('studies',),
  ('registry_imports', 'cli', 'train', 'tools'),
)
ENTRY_POINTS = ('registry_imports', 'cli', 'train', 'tools')
MAX_FUNCTION_LINES = 50  # body, docstring excluded


def _modules():
  """{dotted module name: path} of every module in the package."""
  found = {}
  for root, dirs, files in os.walk(os.path.join(REPO, PACKAGE)):
    dirs[:] = [d for d in dirs if d != '__pycache__']
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        found[dotted.removesuffix('.__init__')] = path
  return found


def _imports(path, modules):
  """The package modules that `path` imports (anywhere in the file)."""
  names = update_build.imported_names(os.path.relpath(path, REPO))
  return {n for n in names if n in modules and n != PACKAGE}


def _graph():
  modules = _modules()
  return {m: _imports(p, modules) for m, p in modules.items()}


def _part(module):
  """'official_selftrain.data.pools' -> 'data'."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def _layer(module):
  for index, names in enumerate(LAYERS):
    if _part(module) in names:
      return index
  raise AssertionError(f'{module} is in no layer: add its part to LAYERS')


def find_cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == 'open':
        return path[path.index(dep) :] + [dep]
      if dep not in state:
        cycle = visit(dep, path + [dep])
        if cycle:
          return cycle
    state[node] = 'done'
    return None

  for start in sorted(graph):
    if start not in state:
      cycle = visit(start, [start])
      if cycle:
        return cycle
  return None


def test_find_cycle_finds_one():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
    'a',
    'b',
    'c',
    'a',
  ]
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_package_has_no_import_cycle():
  cycle = find_cycle(_graph())
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_every_module_is_in_a_layer():
  for module in _graph():
    if module != PACKAGE:
      _layer(module)


def test_imports_point_down_the_layers():
  upward = [
    f'{module} -> {dep}'
    for module, deps in _graph().items()
    if module != PACKAGE
    for dep in deps
    if _layer(dep) > _layer(module)
  ]
  assert not upward, 'imports pointing up:\n' + '\n'.join(upward)


def test_only_entry_points_import_entry_points():
  offenders = [
    f'{module} -> {dep}'
    for module, deps in _graph().items()
    if _part(module) not in ENTRY_POINTS
    for dep in deps
    if _part(dep) in ENTRY_POINTS
  ]
  assert not offenders, offenders


def _function_lengths(path):
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
      ):
        body = body[1:]
      if body:
        yield node.name, body[-1].end_lineno - body[0].lineno + 1


@pytest.mark.parametrize('top', [PACKAGE, 'tools'])
def test_functions_are_short(top):
  long_ones = []
  for root, _, files in os.walk(os.path.join(REPO, top)):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        long_ones.extend(
          f'{os.path.relpath(path, REPO)}:{fn} ({n} lines)'
          for fn, n in _function_lengths(path)
          if n > MAX_FUNCTION_LINES
        )
  assert not long_ones, long_ones
