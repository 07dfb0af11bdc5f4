"""BUILD declares a Bazel target for every module, binary and test."""

import os
import re
import sys

from helpers import REPO

sys.path.insert(0, os.path.join(REPO, 'tools'))
import update_build  # pylint: disable=g-import-not-at-top,wrong-import-position


def _declared_srcs():
  with open(os.path.join(REPO, 'BUILD')) as f:
    return set(re.findall(r'srcs = \["([^"]+)"\]', f.read()))


def test_every_python_file_has_a_target():
  missing = set(update_build.python_files()) - _declared_srcs()
  assert not missing, f'not in BUILD (run tools/update_build.py): {missing}'


def test_every_target_points_at_an_existing_file():
  gone = {
    p for p in _declared_srcs() if not os.path.exists(os.path.join(REPO, p))
  }
  assert not gone, f'BUILD names files that do not exist: {gone}'


def test_build_is_current():
  with open(os.path.join(REPO, 'BUILD')) as f:
    assert f.read() == update_build.render(), (
      'BUILD is stale: run python tools/update_build.py'
    )


def test_kinds_of_targets():
  with open(os.path.join(REPO, 'BUILD')) as f:
    text = f.read()
  assert 'py_binary(\n    name = "official_selftrain/train"' in text
  assert 'py_test(\n    name = "tests/train_test"' in text
  assert 'py_library(\n    name = "official_selftrain/tasks/detection"' in text
