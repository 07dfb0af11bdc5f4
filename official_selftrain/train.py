r"""Trains and evaluates the experiment a gin file describes.

  python -m official_selftrain.train --gin_file=shapes_s1.gin --model_dir=/tmp/m
  python -m official_selftrain.train --gin_file=coco_s4.gin --model_dir=gs://...\
      --strategy=tpu --tpu=my-tpu
  python -m official_selftrain.train --gin_file=coco_s4.gin --print_config

A bare `--gin_file` name is looked up in the bundled gin_configs/; a path works
too. `--gin_param` overrides one binding. Training runs on Model Garden tasks and
Orbit: checkpoints every `checkpoint_interval` steps, resumes from the latest
checkpoint in --model_dir, TensorBoard summaries under --model_dir.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top
from absl import app
from absl import flags
from absl import logging
import gin
from official.common import distribute_utils
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
import tensorflow as tf

from official_selftrain import config_files
from official_selftrain import pipeline
from official_selftrain import progress
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets
from official_selftrain.data import record_check

STRATEGIES = ('one_device', 'mirrored', 'multi_worker_mirrored', 'tpu')
MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')

flags.DEFINE_multi_string(
  'gin_file', [], 'Gin file(s): a bundled name (e.g. coco_s4.gin) or a path.'
)
flags.DEFINE_multi_string(
  'gin_param', [], 'Gin binding(s), e.g. \'detection_experiment.policy="S4"\'.'
)
flags.DEFINE_enum('mode', 'train_and_eval', MODES, 'What to run.')
flags.DEFINE_string(
  'model_dir', None, 'Checkpoints, summaries and results go here.'
)
flags.DEFINE_enum(
  'strategy', 'one_device', STRATEGIES, 'tf.distribute strategy.'
)
flags.DEFINE_string('tpu', None, 'TPU name or address, with --strategy=tpu.')
flags.DEFINE_integer(
  'num_gpus', None, 'GPUs for one_device/mirrored (default: all visible).'
)
flags.DEFINE_bool(
  'print_config', False, 'Print the resolved configuration and exit.'
)

FLAGS = flags.FLAGS


class UserError(Exception):
  """A problem with the user's input, reported in one message, no traceback."""


def parse_gin(gin_files, gin_params) -> None:
  """Parses gin files and bindings; names the file or binding at fault."""
  paths = [config_files.resolve(f) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(
      paths, gin_params, finalize_config=False
    )
  except (ValueError, IOError, SyntaxError) as e:
    raise UserError(
      f'gin: {e}\n  (files: {paths}, params: {gin_params})'
    ) from e


def build_strategy(name: str, tpu: str = None, num_gpus: int = None):
  if name == 'tpu' and not tpu:
    raise UserError('--strategy=tpu needs --tpu=<name or address>.')
  if num_gpus is None:
    num_gpus = len(tf.config.list_physical_devices('GPU'))
  return distribute_utils.get_distribution_strategy(
    distribution_strategy=name, num_gpus=num_gpus, tpu_address=tpu
  )


def _diagnose_input_error(config, error: Exception) -> None:
  """After a decode failure in tf.data, names the record at fault."""
  for data in (config.task.train_data, config.task.validation_data):
    bad = record_check.find_undecodable_records(data.input_path)
    if bad:
      listing = '\n  '.join(str(r) for r in bad[:20])
      more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
      raise UserError(
        f'{len(bad)} record(s) in {data.input_path} have an image that does '
        f'not decode:\n  {listing}{more}\nFix or remove them, or skip and '
        "count them with --gin_param='detection_experiment."
        "skip_corrupt_records=True'."
      ) from error


def _nan_message(model_dir: str, error: Exception) -> str:
  latest = tf.train.latest_checkpoint(model_dir)
  return (
    f'Training stopped: {error}\nThe last good checkpoint is intact: '
    f'{latest or "(none was written yet)"}. Nothing after it was saved. '
    'Lower the learning rate or check the inputs, then rerun to resume.'
  )


def run(
  experiment: experiment_lib.Experiment,
  mode: str,
  model_dir: str,
  strategy: tf.distribute.Strategy,
):
  """Trains and/or evaluates one experiment; returns the last eval metrics."""
  config = experiment.config
  experiment.prepare()
  if config.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(config.runtime.mixed_precision_dtype)
  tf.io.gfile.makedirs(model_dir)
  if 'train' in mode:
    train_utils.serialize_config(config, model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, 'config.gin'), 'w') as f:
      f.write(gin.config_str())
  with strategy.scope():
    task = task_factory.get_task(config.task, logging_dir=model_dir)
  results = progress.ResultsWriter(model_dir)
  try:
    with strategy.scope():
      trainer = train_utils.create_trainer(
        config,
        task,
        train='train' in mode,
        evaluate='eval' in mode,
        checkpoint_exporter=train_lib.maybe_create_best_ckpt_exporter(
          config, model_dir
        ),
      )
    results.set_global_step(trainer.global_step)
    train_actions = (
      [
        progress.ProgressLogger(
          trainer,
          config.trainer.train_steps,
          config.task.train_data.global_batch_size,
        )
      ]
      if 'train' in mode
      else []
    )
    train_lib.run_experiment(
      distribution_strategy=strategy,
      task=task,
      mode=mode,
      params=config,
      model_dir=model_dir,
      trainer=trainer,
      train_actions=train_actions,
      eval_actions=[results],
    )
  except tf.errors.InvalidArgumentError as e:
    _diagnose_input_error(config, e)
    raise
  except RuntimeError as e:
    if 'loss value' in str(e):
      raise UserError(_nan_message(model_dir, e)) from e
    raise
  if not results.latest and 'eval' in mode:
    # Orbit does not evaluate again when the run was already complete.
    logging.info('Nothing left to train; reporting the last evaluation.')
    return results.last_recorded()
  return results.latest


def main(argv):
  del argv
  experiment_lib.register_configurables()
  parse_gin(FLAGS.gin_file, FLAGS.gin_param)
  try:
    experiment = experiment_lib.build()
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    raise UserError(f'configuration: {e}') from e
  runtime = getattr(experiment.config, 'runtime', None)
  if runtime is not None:  # what --strategy will run, shown by --print_config
    runtime.distribution_strategy = FLAGS.strategy
    runtime.tpu = FLAGS.tpu
  if FLAGS.print_config:
    print(experiment_lib.describe(experiment))
    return
  if not FLAGS.model_dir:
    raise UserError('--model_dir is required to train or evaluate.')
  strategy = build_strategy(FLAGS.strategy, FLAGS.tpu, FLAGS.num_gpus)
  if isinstance(experiment, pipeline.Pipeline):
    if FLAGS.mode != 'train_and_eval':
      raise UserError(
        'A self-training pipeline runs all its stages; use '
        '--mode=train_and_eval (the default).'
      )
    pipeline.run(
      experiment,
      FLAGS.model_dir,
      lambda exp, mode, model_dir: run(exp, mode, model_dir, strategy),
    )
    return
  metrics = run(experiment, FLAGS.mode, FLAGS.model_dir, strategy)
  if metrics:
    print(progress.format_metrics(metrics))


def entry():
  try:
    app.run(main)
  except (
    UserError,
    datasets.MissingDatasetError,
    config_files.GinFileNotFoundError,
  ) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  entry()
