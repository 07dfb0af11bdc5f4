r"""Converts COCO 2017 to TFRecords with Model Garden's own converter.

A thin wrapper over `official.vision.data.create_coco_tf_record` (same flags,
same output schema): it checks the inputs first and names what is missing, and
defaults to the shard names the `coco()` gin dataset expects.

  python -m official_selftrain.tools.create_coco_tfrecords --image_dir=/data/coco/train2017 \
      --object_annotations_file=/data/coco/annotations/instances_train2017.json \
      --output_file_prefix=/data/coco/tfrecords/train --num_shards=256
  python -m official_selftrain.tools.create_coco_tfrecords --image_dir=/data/coco/val2017 \
      --object_annotations_file=/data/coco/annotations/instances_val2017.json \
      --output_file_prefix=/data/coco/tfrecords/val --num_shards=32
  cp /data/coco/annotations/instances_val2017.json /data/coco/tfrecords/

then train with --gin_param="coco.data_dir='/data/coco/tfrecords'".
"""

import os
import sys

from absl import app
from absl import flags

# Defines the converter's flags (image_dir, object_annotations_file,
# output_file_prefix, num_shards, include_masks, num_processes, ...).
from official.vision.data import create_coco_tf_record

FLAGS = flags.FLAGS


def check_inputs() -> None:
  """Fails early, naming the missing file or directory."""
  problems = []
  if not FLAGS.image_dir or not any(FLAGS.image_dir):
    problems.append('--image_dir is required (e.g. .../coco/train2017).')
  for directory in FLAGS.image_dir:
    if directory and not os.path.isdir(directory):
      problems.append(f'--image_dir={directory}: no such directory.')
  annotations = (
    FLAGS.object_annotations_file
    or FLAGS.image_info_file
    or FLAGS.caption_annotations_file
  )
  if not annotations:
    problems.append('--object_annotations_file (instances_*.json) is required.')
  elif not os.path.isfile(annotations):
    problems.append(f'annotation file {annotations}: not found.')
  if problems:
    sys.exit('create_coco_tfrecords: ' + ' '.join(problems))


def main(argv):
  check_inputs()
  os.makedirs(
    os.path.dirname(os.path.abspath(FLAGS.output_file_prefix)), exist_ok=True
  )
  create_coco_tf_record.main(argv)


def entry():
  app.run(main)


if __name__ == '__main__':
  entry()
