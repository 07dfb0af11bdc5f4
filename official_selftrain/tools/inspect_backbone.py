r"""How a detector's backbone stands at several checkpoints, side by side.

  python -m official_selftrain.tools.inspect_backbone \
      --gin_file=shapes_selftrain_search.gin \
      --checkpoints=rand_init,imagenet,runs/lc_gain_imagenet/f0.1_S4/steps4000

For each checkpoint (a detection model dir or file restored whole, a
pre-training run restored into the backbone, or `rand_init`: the config's
initialisation under `--seed`), on one batch of the validation split: per
backbone level the mean activation and the fraction of channels that never
fire, and the L2 norm of the backbone's conv kernels. With batch norm after
each conv, a larger kernel norm means a smaller effective learning rate,
which is what a pre-trained init that fine-tunes slowly looks like.
"""

import json
import os

from absl import flags
from official.modeling import hyperparams

from official_selftrain import cli
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import studies

flags.DEFINE_list(
  'checkpoints',
  ['rand_init'],
  'rand_init, an init name of the dataset, or checkpoint paths.',
)
flags.DEFINE_integer('seed', 1, 'Seed of the rand_init model.')
flags.DEFINE_string('output', None, 'Also write the rows as JSON here.')

FLAGS = flags.FLAGS


def _is_detector_run(path: str) -> bool:
  """A model dir of a detection run (restored whole), not a pre-training."""
  params = os.path.join(path, 'params.yaml')
  if not os.path.exists(params):
    return False
  task = hyperparams.read_yaml_to_params_dict(params).as_dict()['task']
  return 'anchor' in task['model']


def _source(name: str):
  """(label, checkpoint or None, modules) of one --checkpoints entry."""
  if name == 'rand_init':
    return name, None, 'backbone'
  if _is_detector_run(name):
    return name, name, 'all'
  # An init name or a pre-training run: resolved as `detection_experiment.
  # init` resolves it, into the backbone.
  job = cli.rebuild_job([f"detection_experiment.init = '{name}'"])
  task = cli.supervised_experiment(job).config.task
  return name, task.init_checkpoint, task.init_checkpoint_modules


def main(argv):
  del argv
  cli.parse_gin_flags()
  experiment = cli.supervised_experiment(cli.build_job())
  sources = [_source(name) for name in FLAGS.checkpoints]
  rows = studies.backbone_stats(experiment, sources, FLAGS.seed)
  for row in rows:
    print(studies.format_backbone_stats(row))
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      json.dump(rows, f, indent=1)


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
