"""Weighted box fusion of a detector's views (numpy only)."""

import numpy as np
import pytest

from official_selftrain.pseudo_labels import box_fusion


def _view(boxes, classes, scores):
  return (
    np.asarray(boxes, np.float32).reshape(-1, 4),
    np.asarray(classes, np.int64),
    np.asarray(scores, np.float32),
  )


A = [0.1, 0.1, 0.5, 0.5]
B = [0.6, 0.6, 0.9, 0.9]


def test_views_that_agree_give_their_boxes_and_scores():
  view = _view([A, B], [1, 2], [0.9, 0.6])
  boxes, classes, scores = box_fusion.fuse([view, view])
  np.testing.assert_allclose(boxes, [A, B], atol=1e-6)
  np.testing.assert_array_equal(classes, [1, 2])
  np.testing.assert_allclose(scores, [0.9, 0.6], atol=1e-6)


def test_a_box_one_view_alone_saw_is_halved_and_may_fall_under_the_floor():
  both = _view([A], [1], [0.8])
  boxes, classes, scores = box_fusion.fuse(
    [_view([A, B], [1, 2], [0.8, 0.3]), both], score_floor=0.1
  )
  np.testing.assert_allclose(scores, [0.8, 0.15], atol=1e-6)
  _, _, scores = box_fusion.fuse(
    [_view([A, B], [1, 2], [0.8, 0.3]), both], score_floor=0.2
  )
  np.testing.assert_allclose(scores, [0.8], atol=1e-6)


def test_overlapping_boxes_average_their_corners_by_score():
  shifted = [0.1, 0.2, 0.5, 0.6]  # IoU with A: 0.6
  boxes, _, scores = box_fusion.fuse(
    [_view([A], [1], [0.6]), _view([shifted], [1], [0.2])], iou_threshold=0.5
  )
  expected = (0.6 * np.array(A) + 0.2 * np.array(shifted)) / 0.8
  np.testing.assert_allclose(boxes, [expected], atol=1e-6)
  np.testing.assert_allclose(scores, [0.4], atol=1e-6)
  # Below the IoU threshold, or of another class, they stay apart.
  _, _, scores = box_fusion.fuse(
    [_view([A], [1], [0.6]), _view([shifted], [1], [0.2])], iou_threshold=0.7
  )
  np.testing.assert_allclose(scores, [0.3, 0.1], atol=1e-6)
  _, classes, _ = box_fusion.fuse(
    [_view([A], [1], [0.6]), _view([A], [2], [0.2])]
  )
  np.testing.assert_array_equal(classes, [1, 2])


def test_more_boxes_than_views_in_a_cluster_score_their_mean():
  view = _view([A, A], [1, 1], [0.8, 0.4])
  _, _, scores = box_fusion.fuse([view, _view([], [], [])])
  np.testing.assert_allclose(scores, [0.6], atol=1e-6)


def test_highest_scores_first_and_at_most_max_detections():
  boxes = [[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(6)]
  scores = [0.1, 0.6, 0.3, 0.5, 0.2, 0.4]
  view = _view(boxes, [1] * 6, scores)
  _, _, fused = box_fusion.fuse([view, view], max_detections=3)
  np.testing.assert_allclose(fused, [0.6, 0.5, 0.4], atol=1e-6)


def test_empty_views_give_no_boxes():
  boxes, classes, scores = box_fusion.fuse([_view([], [], [])] * 2)
  assert boxes.shape == (0, 4) and classes.shape == (0,) == scores.shape


def test_mirror_maps_a_box_to_the_flipped_image_and_back():
  box = np.array([0.1, 0.2, 0.4, 0.5])
  np.testing.assert_allclose(box_fusion.mirror(box), [0.1, 0.5, 0.4, 0.8])
  np.testing.assert_allclose(box_fusion.mirror(box_fusion.mirror(box)), box)


@pytest.mark.parametrize('order', [(0, 1), (1, 0)])
def test_fusion_does_not_depend_on_the_order_of_the_views(order):
  views = [
    _view([A, B], [1, 2], [0.9, 0.3]),
    _view([[0.12, 0.1, 0.5, 0.52]], [1], [0.7]),
  ]
  boxes, classes, scores = box_fusion.fuse([views[i] for i in order])
  np.testing.assert_allclose(scores, [0.8, 0.15], atol=1e-6)
  np.testing.assert_array_equal(classes, [1, 2])
  expected = (0.9 * np.array(A) + 0.7 * np.array([0.12, 0.1, 0.5, 0.52])) / 1.6
  np.testing.assert_allclose(boxes[0], expected, atol=1e-6)
