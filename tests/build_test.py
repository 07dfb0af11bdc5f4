"""BUILD tells the truth: a target per file, deps that match the imports, an
acyclic target graph, and py_tests that run their file under pytest.

The checks parse BUILD itself (not tools/update_build.py's output), except the
one that says BUILD is current.
"""

import ast
import os
import re
import subprocess
import sys

from architecture_test import find_cycle
from helpers import REPO
import pytest

sys.path.insert(0, os.path.join(REPO, 'tools'))
import update_build  # noqa: E402

_RULE = re.compile(r'^(py_library|py_binary|py_test)\(\n(.*?)^\)', re.S | re.M)


def parse_build(text):
  """{target: {'kind', 'srcs', 'deps', 'main', 'args'}} of our BUILD format."""
  targets = {}
  for kind, body in _RULE.findall(text):
    name = re.search(r'name = "([^"]+)"', body).group(1)
    field = lambda key: re.findall(  # noqa: E731
      r'"([^"]+)"', (re.search(rf'{key} = \[(.*?)\]', body, re.S) or [''])[0]
    )
    main = re.search(r'main = "([^"]+)"', body)
    targets[name] = {
      'kind': kind,
      'srcs': field('srcs'),
      'deps': [d[1:] for d in field('deps') if d.startswith(':')],
      'main': main.group(1) if main else None,
      'args': field('args'),
    }
  return targets


@pytest.fixture(scope='module')
def build():
  with open(os.path.join(REPO, 'BUILD')) as f:
    return parse_build(f.read())


def test_build_is_current():
  with open(os.path.join(REPO, 'BUILD')) as f:
    assert f.read() == update_build.render(), (
      'BUILD is stale: run python tools/update_build.py'
    )


def test_every_python_file_has_a_target(build):
  declared = {src for t in build.values() for src in t['srcs']}
  missing = set(update_build.python_files()) - declared
  assert not missing, missing


def test_every_source_exists(build):
  gone = {
    src
    for t in build.values()
    for src in t['srcs']
    if not os.path.exists(os.path.join(REPO, src))
  }
  assert not gone, gone


def test_target_graph_is_acyclic(build):
  cycle = find_cycle({name: set(t['deps']) for name, t in build.items()})
  assert cycle is None, ' -> '.join(cycle)


def test_deps_cover_the_imports(build):
  """Each project module a file imports is among its target's deps."""
  files = set(update_build.python_files())
  missing = []
  for name, target in build.items():
    src = target['srcs'][0]
    with open(os.path.join(REPO, src)) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
      for imported in names:
        for path in (
          imported.replace('.', '/') + '.py',
          f'tests/{imported}.py',
        ):
          if path in files and path != src and path[:-3] not in target['deps']:
            missing.append(f'{name} imports {imported}')
  assert not missing, missing


def test_every_test_runs_under_pytest(build):
  for name, target in build.items():
    if target['kind'] == 'py_test':
      assert target['main'] == update_build.PYTEST_MAIN, name
      assert target['args'] == [f'$(rootpath {name}.py)'], name
      assert f'{name}.py' in target['srcs'], name


def test_test_helpers_are_deps_of_their_tests(build):
  target = build['tests/train_test']
  assert {'tests/helpers', 'tests/conftest'} <= set(target['deps'])
  assert 'tests/mirrored' in build['tests/tasks/self_training_test']['deps']


def _pytest_main(*args):
  return subprocess.run(
    [sys.executable, os.path.join(REPO, update_build.PYTEST_MAIN), *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )


def test_pytest_main_runs_the_tests_of_a_file():
  result = _pytest_main('tests/config_files_test.py')
  assert result.returncode == 0, result.stdout[-2000:]
  assert re.search(r'\d+ passed', result.stdout), result.stdout[-2000:]


def test_pytest_main_fails_a_file_without_tests(tmp_path):
  empty = tmp_path / 'nothing_test.py'
  empty.write_text('"""No test here."""\n')
  assert _pytest_main(str(empty)).returncode != 0
