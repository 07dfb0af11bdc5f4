"""The pipeline reuses complete pseudo labels only if written as asked."""

import pytest

from official_selftrain import pipeline as pipeline_lib

DETECTION_MANIFEST = {
  'export_floor': 0.1,
  'nms': {
    'nms_iou_threshold': 0.5,
    'max_num_detections': 100,
    'pre_nms_top_k': 5000,
    'nms_version': 'v2',
  },
}


def test_detection_labels_of_one_view_are_not_reused_for_a_flipping_run():
  # Written before the option existed (no 'flip'): one view.
  pipeline_lib._check_same_labelling(DETECTION_MANIFEST, {}, 'dir')
  with pytest.raises(ValueError, match=r"'flip': False.*'flip': True"):
    pipeline_lib._check_same_labelling(DETECTION_MANIFEST, {'flip': True}, 'd')
  flipped = dict(DETECTION_MANIFEST, flip=True)
  pipeline_lib._check_same_labelling(flipped, {'flip': True}, 'dir')
  with pytest.raises(ValueError, match='export_kwargs'):
    pipeline_lib._check_same_labelling(flipped, {}, 'dir')


def test_reused_detection_labels_are_counted_at_the_students_threshold(
  tmp_path,
):
  """Labels written for a student at 0.5 and reused by one at 0.3: the
  run's figures are 0.3's, and the labels on disk are left as they are."""
  import types

  import numpy as np

  from official_selftrain.pseudo_labels import manifest
  from official_selftrain.pseudo_labels import shard_files

  out = str(tmp_path)
  default = pipeline_lib._export_default
  header = {
    'teacher_dir': 't',
    'read_threshold': 0.5,
    'export_floor': default('export_floor'),
    'nms': {
      'nms_iou_threshold': default('nms_iou_threshold'),
      'max_num_detections': default('max_detections'),
      'pre_nms_top_k': 1000,
      'nms_version': 'batched',
    },
  }
  boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
  for index in range(2):
    stats = manifest.ShardStats(read_threshold=0.5, num_classes=3)
    # A right box at 0.9, a wrong-class one at 0.3.
    stats.add(
      boxes, np.array([1, 2]), np.array([0.9, 0.3]), boxes[:1], np.array([1])
    )
    shard_files.atomic_write_bytes(shard_files.shard_path(out, index, 2), b'')
    manifest.write_shard_stats(out, index, 2, stats, header=header)
  manifest.write_manifest(out, 2, header, 1.0)
  run = types.SimpleNamespace(export_kwargs=None)
  reused = pipeline_lib._pseudo_labels(run, 't', out, 0.3)
  assert reused['read_threshold'] == 0.3
  assert reused['boxes_per_image_at_read_threshold'] == 2.0
  assert reused['quality_at_read_threshold']['precision'] == 0.5
  assert manifest.read_manifest(out)['read_threshold'] == 0.5
  assert pipeline_lib._pseudo_labels(run, 't', out, 0.5) == (
    manifest.read_manifest(out)
  )
