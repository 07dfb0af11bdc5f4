r"""Trains and evaluates the experiment a gin file describes.

  python -m official_selftrain.train --gin_file=shapes_s1.gin --model_dir=/tmp/m
  python -m official_selftrain.train --gin_file=coco_s4.gin --model_dir=gs://...\
      --strategy=tpu --tpu=my-tpu
  python -m official_selftrain.train --gin_file=coco_s4.gin --print_config

A bare `--gin_file` name is looked up in the bundled gin_configs/; a path works
too. `--gin_param` overrides one binding. A gin file binds `experiment.config`
to one experiment (`@detection_experiment()`) or to a self-training pipeline
(`@self_training_pipeline()`); either runs here. The library behind this
command is `train_lib` and `pipeline`.
"""

import functools

from absl import flags

from official_selftrain import cli
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import train_lib
from official_selftrain.configs import experiment as experiment_lib

flags.DEFINE_enum('mode', 'train_and_eval', train_lib.MODES, 'What to run.')
flags.DEFINE_string(
  'model_dir', None, 'Checkpoints, summaries and results go here.'
)
flags.DEFINE_enum(
  'strategy',
  'auto',
  train_lib.STRATEGIES,
  'tf.distribute strategy; auto: one device, or mirrored over the GPUs '
  'when --num_gpus (default: all visible) is more than one.',
)
flags.DEFINE_string('tpu', None, 'TPU name or address, with --strategy=tpu.')
flags.DEFINE_integer(
  'num_gpus',
  None,
  'GPUs for auto/mirrored (default: all visible) or one_device (default 1).',
)
flags.DEFINE_bool(
  'print_config', False, 'Print the resolved configuration and exit.'
)
flags.DEFINE_bool(
  'count_params',
  False,
  'Build each model of the config (on CPU) and print its parameter count.',
)
flags.DEFINE_integer(
  'seed',
  None,
  'Seeds init, shuffling and augmentation of every stage (the gin bindings '
  'detection_experiment.seed, segmentation_experiment.seed and '
  'classification_experiment.seed).',
)

FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.parse_gin_flags(extra_params=cli.seed_bindings(FLAGS.seed))
  job = cli.build_job()
  try:
    strategy_name, num_gpus = train_lib.resolve_strategy(
      FLAGS.strategy, FLAGS.num_gpus
    )
  except ValueError as e:
    raise cli.UserError(str(e)) from e
  for config in job.configs().values():  # what --strategy will run
    config.runtime.distribution_strategy = strategy_name
    config.runtime.num_gpus = num_gpus
    config.runtime.tpu = FLAGS.tpu
  if FLAGS.print_config:
    print(experiment_lib.describe(job))
    return
  if FLAGS.count_params:
    print(train_lib.describe_params(job.configs()))
    return
  if not FLAGS.model_dir:
    raise cli.UserError('--model_dir is required to train or evaluate.')
  try:
    strategy = train_lib.build_strategy(strategy_name, FLAGS.tpu, num_gpus)
  except ValueError as e:
    raise cli.UserError(str(e)) from e
  job.run(
    FLAGS.mode,
    FLAGS.model_dir,
    functools.partial(train_lib.run, strategy=strategy),
  )


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
