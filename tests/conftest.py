"""Shared test set-up: generated data goes to a per-session temp dir."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = os.path.join(REPO, 'tests', 'testdata', 'tiny.gin')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One data cache for the whole session (generation is deterministic)."""
  path = str(tmp_path_factory.mktemp('shapes_data'))
  os.environ['SELFTRAIN_DATA_DIR'] = path
  return path


def run_train(args, data_dir, timeout=600, env=None):
  """Runs the training entry in a subprocess; returns CompletedProcess."""
  full_env = dict(os.environ, SELFTRAIN_DATA_DIR=data_dir,
                  TF_CPP_MIN_LOG_LEVEL='2')
  full_env.update(env or {})
  return subprocess.run(
      [sys.executable, '-m', 'official_selftrain.train', *args],
      cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
