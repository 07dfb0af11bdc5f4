r"""Labels an unlabelled pool with a trained teacher (pseudo-label TFRecords).

  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=runs/teacher \
      --pool=/data/unlabeled/*.tfrecord --output_dir=runs/pseudo
  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=... --pool=/photos/ ...
  python -m official_selftrain.tools.export_pseudo_labels --teacher_dir=... --pool=tfds:coco/2017:unlabeled

The teacher may be a detector (boxes; --flip labels each image and its mirror
and fuses the two views' boxes) or a segmenter (label maps from multi-scale
inference: --scales, --flip; pixels below --read_threshold are ignored, 255).
A pool is a TFRecord glob (labels in it are ignored, kept aside to measure
pseudo-label quality), a folder or glob of JPEG/PNG files, or `tfds:NAME:SPLIT`.
Hosts of a cluster label disjoint shards of one --output_dir (a shared file
system): `--num_hosts=H --host_index=h` (host h labels shards h, h+H, ...), or
nothing, with TF_CONFIG set as for multi-worker training (chief first, then
the workers), or one shard each with `--num_shards=N --shard_index=K`. Each
host reads only the pool's files it labels when the pool has at least as many
files as shards. The host that finishes the last shard writes manifest.json
(`--merge` writes it from the finished shards alone). A killed host, run
again, skips its finished shards. Anything else is a gin binding of
`export_pseudo_labels` (--gin_file / --gin_param), e.g. the export floor.
"""

import json
import os

from absl import flags
from absl import logging
import gin
import tensorflow as tf

from official_selftrain import cli  # the --gin_file / --gin_param flags
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import train_lib
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import hosts
from official_selftrain.pseudo_labels import shard_files

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
flags.DEFINE_integer(
  'num_hosts', None, 'Hosts labelling this export together (with --host_index).'
)
flags.DEFINE_integer(
  'host_index', None, 'This host, in [0, --num_hosts): labels shards i, i+H...'
)
flags.DEFINE_bool(
  'merge', False, 'Label nothing: write manifest.json from the finished shards.'
)
flags.DEFINE_enum(
  'strategy',
  'auto',
  ['auto', 'one_device', 'mirrored'],
  'Devices the teacher labels on: auto (every visible GPU, one replica '
  'each), one_device or mirrored.',
)
flags.DEFINE_integer('num_gpus', None, 'GPUs to label on (default: all).')
flags.DEFINE_float('read_threshold', None, "The student's score threshold.")
flags.DEFINE_float('export_floor', None, 'Lowest score written.')
flags.DEFINE_integer('batch_size', None, 'Images per teacher call.')
flags.DEFINE_list(
  'scales',
  None,
  "A segmentation teacher's inference scales (default the paper's "
  '0.5,0.75,1,1.25,1.5,1.75).',
)
flags.DEFINE_bool(
  'flip',
  None,
  'Also label each image mirrored: a segmentation teacher averages the '
  "flips' probabilities, a detector fuses the two views' boxes.",
)
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


def this_host():
  """This host of the export's cluster, by --num_hosts/--host_index or
  TF_CONFIG; None: a single host."""
  if (FLAGS.num_hosts is None) != (FLAGS.host_index is None):
    raise cli.UserError('Give --num_hosts and --host_index together.')
  if FLAGS.num_hosts is not None:
    return hosts.Host(FLAGS.host_index, FLAGS.num_hosts)
  return hosts.from_tf_config()


def shard_kwargs():
  """`num_shards` and `shard_indices` for this host, from the flags."""
  kwargs = {}
  if FLAGS.num_shards is not None:
    kwargs['num_shards'] = FLAGS.num_shards
  if FLAGS.shard_index is not None:
    if FLAGS.num_shards is None:
      raise cli.UserError('--shard_index needs --num_shards.')
    if not 0 <= FLAGS.shard_index < FLAGS.num_shards:
      raise cli.UserError(
        f'--shard_index={FLAGS.shard_index} is not in [0, '
        f'--num_shards={FLAGS.num_shards}).'
      )
    kwargs['shard_indices'] = [FLAGS.shard_index]
    return kwargs
  try:
    host = this_host()
  except ValueError as e:  # a bad TF_CONFIG or host index
    raise cli.UserError(str(e)) from e
  if host is not None:
    kwargs.setdefault('num_shards', hosts.default_num_shards(host))
    kwargs['shard_indices'] = host.shards(kwargs['num_shards'])
    logging.info(
      'Export: %s labels shards %s of %d.',
      host.describe(),
      kwargs['shard_indices'],
      kwargs['num_shards'],
    )
  return kwargs


def merge_kwargs(kwargs):
  """What `--merge` passes: no teacher or pool, the shard count on disk."""
  if 'output_dir' not in kwargs:
    raise cli.UserError('--merge needs --output_dir.')
  merge = {'merge_only': True, 'teacher_dir': None, 'pool': None}
  if 'num_shards' not in kwargs:
    counts = shard_files.shard_counts(kwargs['output_dir'])
    if len(counts) != 1:
      raise cli.UserError(
        f'{kwargs["output_dir"]} holds shards of {counts or "no"} count(s): '
        'give --num_shards.'
      )
    merge['num_shards'] = counts[0]
  return merge


def flag_kwargs():
  """The export's arguments the command line gives (gin binds the rest)."""
  kwargs = {}
  if FLAGS.teacher_dir:
    kwargs['teacher_dir'] = FLAGS.teacher_dir
  if FLAGS.pool:
    kwargs['pool'] = pool_from_flag(FLAGS.pool)
  if FLAGS.output_dir:
    kwargs['output_dir'] = FLAGS.output_dir
  for name in (
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
  return kwargs


def main(argv):
  del argv
  cli.parse_gin_flags()
  kwargs = flag_kwargs()
  if FLAGS.merge:  # every host's shards: no host identity
    if FLAGS.num_shards is not None:
      kwargs['num_shards'] = FLAGS.num_shards
    kwargs.update(merge_kwargs(kwargs))
  else:
    kwargs.update(shard_kwargs())
    try:
      kwargs['strategy'] = train_lib.build_strategy(
        FLAGS.strategy, None, FLAGS.num_gpus
      )
    except ValueError as e:
      raise cli.UserError(str(e)) from e
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
