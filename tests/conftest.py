"""Shared test set-up: tests/ on sys.path, one generated-data cache a session,
a clean gin configuration per test that asks for one.

Tiers: unit tests run in-process; end-to-end tests (`@pytest.mark.e2e`) run the
commands a user runs, in subprocesses. `pytest -m e2e` or `pytest -m 'not
e2e'` runs one tier alone; `slow` marks tests that train for more than a few
seconds (`pytest -m 'not slow'` is the quick subset).
"""

import os
import sys

import gin
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import TINY_GIN  # noqa: E402
from helpers import TINY_SEG_GIN  # noqa: E402
from helpers import run_train  # noqa: E402

from official_selftrain import registry_imports  # noqa: E402, F401


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One data cache for the whole session (generation is deterministic).

  $SELFTRAIN_DATA_DIR points there while the session runs (subprocesses
  inherit it) and is restored afterwards.
  """
  path = str(tmp_path_factory.mktemp('shapes_data'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('SELFTRAIN_DATA_DIR', path)
    yield path


@pytest.fixture
def clear_gin():
  """A test that parses gin files starts and ends with no bindings."""
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture
def bfloat16_policy():
  """Keras' global policy is mixed_bfloat16 for the test, float32 after."""
  import tf_keras

  tf_keras.mixed_precision.set_global_policy('mixed_bfloat16')
  yield
  tf_keras.mixed_precision.set_global_policy('float32')


def _trained(gin_file, data_dir, tmp_path_factory, name, bindings=()):
  """The model_dir of a tiny model `gin_file` trains (in a subprocess)."""
  model_dir = str(tmp_path_factory.mktemp(name))
  result = run_train(
    [f'--gin_file={gin_file}', f'--model_dir={model_dir}', '--mode=train']
    + [f'--gin_param={b}' for b in bindings],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


@pytest.fixture(scope='session')
def teacher_dir(data_dir, tmp_path_factory):
  """A tiny teacher, trained once for these tests.

  Seeded (with tiny.gin's deterministic ops, the same weights every run):
  unseeded, some of its 6-step draws saturated in inference (batch-norm
  statistics lagging the weights; many boxes scored 1.0, and the tests that
  compare two ways of labelling then met ties decided by float noise). The
  seed-1 draw scores up to 0.998 with a median of 0.07 on 16 val images.
  """
  return _trained(
    TINY_GIN,
    data_dir,
    tmp_path_factory,
    'teacher',
    ['detection_experiment.seed = 1'],
  )


@pytest.fixture(scope='session')
def seg_teacher_dir(data_dir, tmp_path_factory):
  """A tiny segmentation teacher (128 px), trained once for these tests.

  30 steps, batch-norm statistics that follow them (momentum 0.9): the teacher
  has learnt the scenes' background when the tests label with it. After
  tiny_seg.gin's 4 steps at momentum 0.99 its statistics were still near their
  initial values and its probabilities ranged from flat (every pixel below
  0.4, on CI) to saturated, from run to run.
  """
  bindings = [
    'segmentation_model.norm_momentum = 0.9',
    'segmentation_experiment.train_steps = 30',
    'segmentation_experiment.steps_per_loop = 10',
    'segmentation_experiment.summary_interval = 10',
    'segmentation_experiment.checkpoint_interval = 10',
    'segmentation_experiment.validation_interval = 30',
  ]
  return _trained(
    TINY_SEG_GIN, data_dir, tmp_path_factory, 'seg_teacher', bindings
  )
