"""Shapes-Det / Shapes-Cls generators: deterministic, and labels match pixels."""

import numpy as np

from official_selftrain.data import shapes


def test_same_seed_same_scene_and_different_seed_differs():
  a = shapes.det_scene(3, 'train', 7)
  b = shapes.det_scene(3, 'train', 7)
  c = shapes.det_scene(4, 'train', 7)
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.boxes, b.boxes)
  assert not np.array_equal(a.image, c.image)


def test_splits_do_not_repeat_images():
  a = shapes.det_scene(0, 'train', 0)
  b = shapes.det_scene(0, 'val', 0)
  assert not np.array_equal(a.image, b.image)


def test_boxes_are_the_visible_mask_extent_and_semantic_map_agrees():
  for index in range(20):
    scene = shapes.det_scene(0, 'train', index)
    assert len(scene.boxes) == len(scene.classes) == len(scene.masks)
    for box, label, mask in zip(scene.boxes, scene.classes, scene.masks):
      ys, xs = np.nonzero(mask)
      assert (box == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]).all()
      assert (scene.semantic[mask.astype(bool)] == label).all()
    # Visible masks of different objects never overlap.
    if len(scene.masks):
      assert scene.masks.sum(axis=0).max() <= 1


def test_scenes_are_cluttered_with_small_objects():
  spec = shapes.SceneSpec()
  counts, small = [], 0
  for index in range(100):
    scene = shapes.det_scene(0, 'train', index, spec)
    counts.append(len(scene.classes))
    areas = scene.masks.reshape(len(scene.masks), -1).sum(axis=1)
    small += int((areas < 16 * 16).sum())
  assert 3.0 <= np.mean(counts) <= 6.0
  assert small / sum(counts) > 0.3  # many objects under 16x16 px
  assert set(range(1, len(shapes.DET_CLASSES) + 1)) <= {
    int(c) for i in range(100) for c in shapes.det_scene(0, 'train', i).classes
  }


def test_cls_images_are_iconic_and_cover_more_classes():
  labels = set()
  for index in range(200):
    scene = shapes.cls_image(0, 'train', index)
    assert len(scene.classes) == 1
    # One large object: its box spans over a third of the image.
    ymin, xmin, ymax, xmax = scene.boxes[0]
    assert max(ymax - ymin, xmax - xmin) > 128 / 3
    labels.add(shapes.scene_label(scene))
  assert labels == set(range(1, len(shapes.CLS_CLASSES) + 1))
  assert set(shapes.DET_CLASSES) < set(shapes.CLS_CLASSES)
