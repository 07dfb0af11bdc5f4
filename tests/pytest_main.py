"""Runs one test file under pytest: the `main` of every Bazel py_test.

  python tests/pytest_main.py tests/train_test.py [pytest args...]

A py_test runs its `main` as a plain script; a pytest file run that way would
define its tests and exit without running one. This runs them, and exits
non-zero if any fails or none was collected.
"""

import sys

import pytest


def main(argv):
  if len(argv) < 2:
    sys.exit('usage: pytest_main.py TEST_FILE [pytest args...]')
  code = pytest.main(['-q', '-p', 'no:cacheprovider', *argv[1:]])
  sys.exit(int(code))


if __name__ == '__main__':
  main(sys.argv)
