r"""Labels an unlabelled pool with a trained teacher (pseudo-label TFRecords).

  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=runs/teacher \
      --pool=/data/unlabeled/*.tfrecord --output_dir=runs/pseudo
  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=... --pool=/photos/ ...
  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=... --pool=tfds:coco/2017:unlabeled

The teacher may be a detector (boxes) or a segmenter (label maps from
multi-scale inference: --scales, --flip; pixels below --read_threshold are
ignored, 255). A pool is a TFRecord glob (labels in it are ignored, kept aside to measure
pseudo-label quality), a folder or glob of JPEG/PNG files, or `tfds:NAME:SPLIT`.
Hosts of a cluster label disjoint parts: `--num_shards=64 --shard_index=K`, or
leave --shard_index unset to take this worker's index from TF_CONFIG. A killed
run, run again, skips its finished shards. Anything else is a gin binding of
`export_pseudo_labels` (--gin_file / --gin_param), e.g. the export floor.
"""

import json
import os

from absl import flags
import gin
import tensorflow as tf

from official_selftrain import cli  # the --gin_file / --gin_param flags
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import export

flags.DEFINE_string(
  'teacher_dir', None, 'model_dir of the trained teacher, or its SavedModel.'
)
flags.DEFINE_string(
  'pool', None, 'TFRecord glob, image folder/glob, or tfds:NAME:SPLIT.'
)
flags.DEFINE_string('output_dir', None, 'Where shards and manifest.json go.')
flags.DEFINE_integer('num_shards', None, 'Parts the pool is split into.')
flags.DEFINE_integer(
  'shard_index',
  None,
  'The part this host labels (default: all, or the task '
  'index of a multi-worker TF_CONFIG).',
)
flags.DEFINE_float('read_threshold', None, "The student's score threshold.")
flags.DEFINE_float('export_floor', None, 'Lowest score written.')
flags.DEFINE_integer('batch_size', None, 'Images per teacher call.')
flags.DEFINE_list(
  'scales',
  None,
  "A segmentation teacher's inference scales (default the paper's "
  '0.5,0.75,1,1.25,1.5,1.75).',
)
flags.DEFINE_bool('flip', None, 'A segmentation teacher also labels flips.')
flags.DEFINE_bool(
  'sliding_window',
  None,
  'A segmentation teacher sees scaled canvases larger than its input '
  'through input-size windows.',
)

FLAGS = flags.FLAGS


def pool_from_flag(spec: str):
  """A pool from its command-line spelling."""
  if spec.startswith('tfds:'):
    parts = spec[len('tfds:') :].split(':')
    return pools.TFDSPool(parts[0], parts[1] if len(parts) > 1 else 'train')
  if tf.io.gfile.isdir(spec) or spec.lower().endswith(pools.IMAGE_EXTENSIONS):
    return pools.ImageFolderPool(spec)
  return pools.TFRecordPool(spec)


def shard_index_from_tf_config():
  config = json.loads(os.environ.get('TF_CONFIG', '{}'))
  task = config.get('task', {})
  return task.get('index') if task.get('type') in ('worker', 'chief') else None


def main(argv):
  del argv
  cli.parse_gin_flags()
  kwargs = {}
  if FLAGS.teacher_dir:
    kwargs['teacher_dir'] = FLAGS.teacher_dir
  if FLAGS.pool:
    kwargs['pool'] = pool_from_flag(FLAGS.pool)
  if FLAGS.output_dir:
    kwargs['output_dir'] = FLAGS.output_dir
  for name in (
    'num_shards',
    'read_threshold',
    'export_floor',
    'batch_size',
    'flip',
    'sliding_window',
  ):
    if getattr(FLAGS, name) is not None:
      kwargs[name] = getattr(FLAGS, name)
  if FLAGS.scales:
    kwargs['scales'] = [float(s) for s in FLAGS.scales]
  index = FLAGS.shard_index
  if index is None:
    index = shard_index_from_tf_config()
  if index is not None:
    kwargs['shard_indices'] = [index]
  try:
    manifest = export.export_pseudo_labels(**kwargs)
  except ValueError as e:  # thresholds out of range, and the like
    raise cli.UserError(str(e)) from e
  except TypeError as e:
    raise cli.UserError(
      f'{e} (give --teacher_dir, --pool and --output_dir, or bind them in gin)'
    ) from e
  summary = {
    k: manifest[k]
    for k in (
      'complete',
      'images_read',
      'images_written',
      'images_skipped',
      'boxes_per_image_at_read_threshold',
      'quality_at_read_threshold',
      'ignored_pixel_fraction',
      'pixel_accuracy',
      'wall_seconds',
    )
    if k in manifest
  }
  print(json.dumps(summary, indent=1))


def entry():
  # A bare name in --gin_file may also be a file in the working directory.
  gin.add_config_file_search_path(os.getcwd())
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
