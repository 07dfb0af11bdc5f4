r"""Writes the Bazel BUILD file from the source tree (and checks it is current).

  python tools/update_build.py          # rewrite BUILD
  python tools/update_build.py --check  # exit 1 if BUILD is stale

A developer tool of the checkout (not installed). Every module of the package
is a py_library; the training entry and the top-level tool scripts are
py_binary targets; every *_test.py is a py_test whose `main` is
tests/pytest_main.py, so Bazel runs the file's tests under pytest. Dependencies
come from the imports (test helpers and conftest files included), which keeps
the target graph acyclic exactly when the import graph is (tests/build_test.py
checks both). Third-party packages resolve through rules_python's pip hub
(`@pip`, see MODULE.bazel). README "BUILD and Bazel" says why CI runs pytest,
not `bazel test`.
"""

import ast
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'official_selftrain'
# Import name -> PyPI requirement.
THIRD_PARTY = {
  'absl': 'absl-py',
  'gin': 'gin-config',
  'numpy': 'numpy',
  'official': 'tf-models-official',
  'orbit': 'tf-models-official',
  'PIL': 'pillow',
  'pycocotools': 'pycocotools',
  'pytest': 'pytest',
  'tensorflow': 'tensorflow',
  'tensorflow_datasets': 'tensorflow-datasets',
  'tf_keras': 'tf-keras',
  'yaml': 'pyyaml',
  'matplotlib': 'matplotlib',
}
BINARIES = {f'{PACKAGE}/train.py'}
PYTEST_MAIN = 'tests/pytest_main.py'
TEST_DATA = '[":gin_configs", ":testdata", ":entry_scripts", "BUILD"]'


def python_files():
  """Repo-relative paths of every .py file Bazel should know about."""
  found = []
  for top in (PACKAGE, 'tools', 'tests'):
    for root, dirs, files in os.walk(os.path.join(REPO, top)):
      dirs[:] = sorted(d for d in dirs if d != '__pycache__')
      for name in sorted(files):
        if name.endswith('.py'):
          found.append(os.path.relpath(os.path.join(root, name), REPO))
  return found


def target_name(path):
  return path[:-3]


def imported_names(path):
  """Every module name `path` imports (module level or in a function)."""
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f'{node.module}.{a.name}' for a in node.names)
  return names


def _conftests(path, modules):
  """The conftest.py files pytest loads for a test: tests/ and its dirs."""
  found = []
  directory = os.path.dirname(path)
  while directory.startswith('tests'):
    candidate = os.path.join(directory, 'conftest.py')
    if candidate in modules and candidate != path:
      found.append(':' + target_name(candidate))
    directory = os.path.dirname(directory)
  return found


def deps_of(path, modules):
  """(project targets, PyPI requirements) that `path` needs."""
  deps, third_party = set(), set()
  for name in imported_names(path):
    module_path = name.replace('.', '/') + '.py'
    package_init = name.replace('.', '/') + '/__init__.py'
    test_helper = f'tests/{name}.py'
    for candidate in (module_path, package_init, test_helper):
      if candidate in modules:
        deps.add(':' + target_name(candidate))
        break
    else:
      top = name.split('.')[0]
      if top in THIRD_PARTY:
        third_party.add(THIRD_PARTY[top])
  # pytest loads conftests for test files; helpers a conftest imports must
  # not depend on it back.
  if path.startswith('tests/') and path.endswith('_test.py'):
    deps.update(_conftests(path, modules))
  deps.discard(':' + target_name(path))
  return sorted(deps), sorted(third_party)


def _rule(kind, path, deps, extra=()):
  project, third_party = deps
  lines = [f'{kind}(', f'    name = "{target_name(path)}",']
  lines.extend(extra)
  if project or third_party:
    lines.append('    deps = [')
    lines.extend(f'        "{d}",' for d in project)
    lines.extend(f'        requirement("{p}"),' for p in third_party)
    lines.append('    ],')
  lines.append(')')
  return '\n'.join(lines)


def _test_rule(path, deps):
  with open(os.path.join(REPO, path)) as f:
    slow = 'mark.slow' in f.read()
  extra = [
    f'    srcs = ["{path}", "{PYTEST_MAIN}"],',
    f'    args = ["$(rootpath {path})"],',
    f'    data = {TEST_DATA},',
    f'    main = "{PYTEST_MAIN}",',
    f'    size = "{"large" if slow else "medium"}",',
  ]
  project, third_party = deps
  return _rule(
    'py_test', path, (project, sorted({*third_party, 'pytest'})), extra
  )


def rule_for(path, modules):
  """The BUILD rule of one Python file."""
  deps = deps_of(path, modules)
  srcs = f'    srcs = ["{path}"],'
  if path.endswith('_test.py'):
    return _test_rule(path, deps)
  if path in BINARIES or path.startswith('tools/'):
    return _rule(
      'py_binary',
      path,
      deps,
      [srcs, '    data = [":gin_configs"],', f'    main = "{path}",'],
    )
  extra = [srcs]
  if path.startswith('tests/'):
    extra.append('    testonly = True,')
  return _rule('py_library', path, deps, extra)


HEADER = """# Generated by tools/update_build.py; tests/build_test.py checks it.
load("@pip//:requirements.bzl", "requirement")
load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

package(default_visibility = ["//visibility:public"])

filegroup(
    name = "gin_configs",
    srcs = glob(["gin_configs/**/*.gin"]),
)

filegroup(
    name = "testdata",
    srcs = glob(["tests/testdata/**"]),
)

# The scripts end-to-end tests run as a user does.
filegroup(
    name = "entry_scripts",
    srcs = glob(["tools/*.py"]) + ["official_selftrain/train.py"],
)
"""


def render():
  files = python_files()
  modules = set(files)
  rules = [rule_for(path, modules) for path in files]
  return HEADER + '\n' + '\n\n'.join(rules) + '\n'


def main(argv):
  path = os.path.join(REPO, 'BUILD')
  text = render()
  if '--check' in argv:
    with open(path) as f:
      if f.read() != text:
        sys.exit('BUILD is stale: run python tools/update_build.py')
    return
  with open(path, 'w') as f:
    f.write(text)


if __name__ == '__main__':
  main(sys.argv[1:])
