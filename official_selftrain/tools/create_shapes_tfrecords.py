r"""Generates the embedded Shapes-Det (and optionally Shapes-Cls) TFRecords.

The training entry does this on demand; this tool does it ahead of time, for
exactly the data a gin experiment reads:

  python -m official_selftrain.tools.create_shapes_tfrecords --gin_file=shapes_s1.gin
  python -m official_selftrain.tools.create_shapes_tfrecords --gin_file=shapes_s1.gin \
      --shapes_cls_train=20000 --shapes_cls_val=1000

Output goes under $SELFTRAIN_DATA_DIR (default ~/.cache/official_selftrain), or
the `shapes_det.data_dir` binding. Each split is written under a temporary name
and renamed when complete, so an interrupted run is redone, not reused.
"""

import time

from absl import flags
from absl import logging

from official_selftrain import cli
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import embedded

flags.DEFINE_integer(
  'shapes_cls_train', 0, 'Also write this many Shapes-Cls train images.'
)
flags.DEFINE_integer(
  'shapes_cls_val', 0, 'Also write this many Shapes-Cls val images.'
)
flags.DEFINE_integer('shapes_cls_image_size', 128, 'Shapes-Cls image side.')

FLAGS = flags.FLAGS


def main(argv):
  del argv
  start = time.time()
  cli.parse_gin_flags(default_files=['shapes_s1.gin'])
  job = experiment_lib.build()
  job.prepare()
  # Every stage of a pipeline reads the same human-labelled data.
  config = next(iter(job.configs().values()))
  print(f'Shapes-Det train: {config.task.train_data.input_path}')
  print(f'Shapes-Det val:   {config.task.validation_data.input_path}')
  if 'annotation_file' in config.task.as_dict():  # detection tasks only
    print(f'COCO-format val annotations: {config.task.annotation_file}')
  data_dir = embedded.default_data_dir()
  for split, count in (
    ('train', FLAGS.shapes_cls_train),
    ('val', FLAGS.shapes_cls_val),
  ):
    if count:
      path = embedded.shapes_cls_split(
        data_dir, split, count, image_size=FLAGS.shapes_cls_image_size
      )
      print(f'Shapes-Cls {split}: {path}')
  logging.info('Done in %.1fs.', time.time() - start)


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
