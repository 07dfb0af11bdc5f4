"""What the command-line entry points share: gin flags and error reporting.

Only entry points import this module (`train.py`, the tools): the library
raises specific errors, and `main_with_errors` turns the ones a user can fix
into one line on stderr and exit code 1, without a traceback.
"""

import functools
import os
import sys
from typing import Callable
from typing import List
from typing import Optional

from absl import app
from absl import flags
import gin

from official_selftrain import config_files
from official_selftrain import released_teachers
from official_selftrain import train_lib
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import teacher

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

flags.DEFINE_multi_string(
  'gin_file', [], 'Gin file(s): a bundled name (e.g. coco_s4.gin) or a path.'
)
flags.DEFINE_multi_string(
  'gin_param', [], 'Gin binding(s), e.g. \'detection_experiment.policy="S4"\'.'
)

FLAGS = flags.FLAGS


class UserError(Exception):
  """A problem with the user's input, reported in one message."""


# Errors whose message tells the user what to fix: no traceback for these.
USER_ERRORS = (
  UserError,
  config_files.GinConfigError,
  config_files.GinFileNotFoundError,
  experiment_lib.UnsupportedModeError,
  datasets.MissingDatasetError,
  pools.EmptyPoolError,
  teacher.NoCheckpointError,
  released_teachers.ReleasedTeacherError,
  train_lib.UndecodableRecordsError,
  train_lib.TrainingDivergedError,
  train_lib.WorkerLostError,
)


def parse_gin_flags(default_files=(), extra_params=()) -> None:
  """Parses --gin_file (or `default_files`), --gin_param, then `extra_params`
  (bindings that other flags stand for)."""
  config_files.parse(
    FLAGS.gin_file or list(default_files),
    list(FLAGS.gin_param) + list(extra_params),
  )


# Every experiment kind's seed binding: one `--seed` seeds each stage.
SEEDED_EXPERIMENTS = (
  'detection_experiment',
  'segmentation_experiment',
  'classification_experiment',
)


def seed_bindings(seed: Optional[int]) -> List[str]:
  """The gin bindings that give every experiment kind `seed` (none if None)."""
  if seed is None:
    return []
  return [f'{job}.seed = {seed}' for job in SEEDED_EXPERIMENTS]


def build_job():
  """The gin-bound `experiment.config` (an Experiment or a Pipeline); a
  configuration the builders reject is a UserError."""
  try:
    return experiment_lib.build()
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    raise UserError(f'configuration: {e}') from e


def rebuild_job(extra_params=()):
  """The job of the gin flags plus `extra_params`, from a clean gin config
  (for tools that build one job per point or seed)."""
  gin.clear_config()
  parse_gin_flags(extra_params=extra_params)
  return build_job()


def supervised_experiment(job) -> experiment_lib.Experiment:
  """The supervised experiment of a job: itself, or a pipeline's teacher."""
  job = getattr(job, 'teacher', job)
  if not isinstance(job, experiment_lib.Experiment):
    raise UserError(f'{FLAGS.gin_file} binds no supervised experiment.')
  return job


def default_run_fn():
  """`run_experiment` for a job's `run` under the default strategy (one
  device, or Mirrored over this host's GPUs)."""
  strategy = train_lib.build_strategy('auto', None, None)
  return functools.partial(train_lib.run, strategy=strategy)


def main_with_errors(main: Callable[[list], None]) -> None:
  """Runs an absl `main`; a user error ends it with one line and exit 1."""
  try:
    app.run(main)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
