"""tools/create_coco_tfrecords.py runs Model Garden's converter on COCO files."""

import os

from helpers import TINY_SPEC
from helpers import run_tool
import numpy as np
from official.vision.dataloaders import tf_example_decoder
import pytest
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes

pytestmark = pytest.mark.e2e


def _run(*args):
  return run_tool('create_coco_tfrecords.py', *args)


def test_converts_a_coco_style_folder(tmp_path):
  # A COCO-style dataset: a folder of JPEGs plus instances JSON.
  split = embedded.shapes_det_split(
    str(tmp_path), 'val', 6, spec=TINY_SPEC, write_jpegs=True
  )
  prefix = str(tmp_path / 'out' / 'val')
  result = _run(
    f'--image_dir={split}/images',
    f'--object_annotations_file={split}/annotations.json',
    f'--output_file_prefix={prefix}',
    '--num_shards=2',
    '--num_processes=0',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  files = sorted(tf.io.gfile.glob(prefix + '-*'))
  assert [os.path.basename(f) for f in files] == [
    'val-00000-of-00002.tfrecord',
    'val-00001-of-00002.tfrecord',
  ]
  decoder = tf_example_decoder.TfExampleDecoder()
  seen = 0
  for record in tf.data.TFRecordDataset(files):
    example = decoder.decode(record)
    image_id = int(example['source_id'].numpy())
    scene = shapes.det_scene(0, 'val', image_id - 1, TINY_SPEC)
    np.testing.assert_allclose(
      example['groundtruth_boxes'].numpy() * 64, scene.boxes, atol=1e-3
    )
    np.testing.assert_array_equal(
      example['groundtruth_classes'].numpy(), scene.classes
    )
    seen += 1
  assert seen == 6


def test_missing_inputs_are_named(tmp_path):
  result = _run(
    f'--image_dir={tmp_path}/nope',
    f'--object_annotations_file={tmp_path}/none.json',
    f'--output_file_prefix={tmp_path}/x',
  )
  assert result.returncode != 0
  assert f'{tmp_path}/nope: no such directory' in result.stderr
  assert f'{tmp_path}/none.json: not found' in result.stderr
