"""Shared test set-up: tests/ on sys.path, one generated-data cache a session."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One data cache for the whole session (generation is deterministic)."""
  path = str(tmp_path_factory.mktemp('shapes_data'))
  os.environ['SELFTRAIN_DATA_DIR'] = path
  return path
