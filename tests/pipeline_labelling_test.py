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
