"""Augment-S4 on image, boxes and label map together: boxes follow objects."""

from helpers import scene_with_ids
import numpy as np
from official.vision.ops import augment
import pytest
import tensorflow as tf

from official_selftrain.ops import affine
from official_selftrain.ops import box_only_ops
from official_selftrain.ops import joint_augment


def _extent(label_map, k):
  ys, xs = np.nonzero(label_map == k)
  if len(ys) == 0:
    return None
  return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], float)


def _iou(a, b):
  inter = np.prod(
    np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None)
  )
  union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
  return inter / union


def _in_pixels(boxes, keep, label_map, size):
  return boxes.numpy() * size, keep.numpy(), label_map.numpy()


def _check_box(box, extent, size, floor, where):
  """The object lies inside its box (1 px of nearest-neighbour slack) and,
  unless the frame cut both, the box is not much larger (IoU >= floor; None:
  not checked). Returns whether the IoU was checked."""
  assert np.all(extent[:2] >= box[:2] - 1.0), where
  assert np.all(extent[2:] <= box[2:] + 1.0), where
  if floor is None or not (box.min() > 0.5 and box.max() < size - 0.5):
    return False
  assert _iou(box, extent) >= floor, where
  return True


def test_model_garden_translate_reflects_instead_of_filling():
  # Why this module exists: Model Garden's box-aware translate moves the box
  # out of frame but the pixels come back mirrored (fill_mode 'reflect').
  image = np.zeros((100, 100, 3), np.uint8)
  image[40:60, 40:60] = 200
  out, box = augment.translate_bbox(
    tf.constant(image), tf.constant([[0.4, 0.4, 0.6, 0.6]]), 70, [0] * 3, True
  )
  xs = np.nonzero(out.numpy()[..., 0] > 100)[1]
  assert box.numpy()[0, 3] <= 0.06  # the box went to the left border
  assert xs.min() >= 60  # the pixels did not


# Corner-mapped boxes of rotated / sheared objects are loose by construction
# (they contain the object); translated ones are tight.
FLOORS = {
  'Rotate': 0.3,
  'ShearX': 0.45,
  'ShearY': 0.45,
  'TranslateX': 0.6,
  'TranslateY': 0.6,
}


@pytest.mark.parametrize('name', affine.GEOMETRIC)
def test_boxes_follow_objects_under_every_geometric_op(name):
  tf.random.set_seed(1)
  aug = joint_augment.JointRandAugment(translate_const=40)
  checked = 0
  for index in range(8):
    scene, ids = scene_with_ids(index)
    size = scene.image.shape[0]
    _, boxes, keep, label_map = aug._apply(
      name,
      tf.constant(scene.image),
      tf.constant(scene.boxes / size, tf.float32),
      tf.ones([len(scene.boxes)], tf.bool),
      tf.constant(ids),
      0,
    )
    boxes, keep, label_map = _in_pixels(boxes, keep, label_map, size)
    for k in range(len(boxes)):
      extent = _extent(label_map, k + 1)
      if not keep[k]:
        visible = 0 if extent is None else (label_map == k + 1).sum()
        assert visible <= 0.3 * scene.masks[k].sum()  # dropped: mostly gone
        continue
      assert extent is not None, f'{name}: kept box {k} has no pixels left'
      checked += _check_box(
        boxes[k], extent, size, FLOORS[name], (name, index, k)
      )
  assert checked >= 15


def test_colour_ops_leave_the_label_map_and_boxes_alone():
  scene, ids = scene_with_ids(0)
  aug = joint_augment.JointRandAugment()
  boxes = tf.constant(scene.boxes / scene.image.shape[0], tf.float32)
  for name in ('Equalize', 'Color', 'Solarize', 'Cutout', 'Posterize'):
    image, out_boxes, keep, label_map = aug._apply(
      name,
      tf.constant(scene.image),
      boxes,
      tf.ones([len(scene.boxes)], tf.bool),
      tf.constant(ids),
      255,
    )
    np.testing.assert_array_equal(label_map.numpy(), ids)
    np.testing.assert_array_equal(out_boxes.numpy(), boxes.numpy())
    assert keep.numpy().all()


def test_uncovered_label_map_takes_the_fill():
  scene, ids = scene_with_ids(0)
  aug = joint_augment.JointRandAugment(translate_const=40)
  _, _, _, label_map = aug._apply(
    'TranslateX',
    tf.constant(scene.image),
    tf.zeros([0, 4]),
    tf.ones([0], tf.bool),
    tf.constant(ids),
    255,
  )
  label_map = label_map.numpy()
  # A 40 px shift one way or the other: one 40-column band is all fill.
  left, right = label_map[:, :40], label_map[:, -40:]
  assert (left == 255).all() or (right == 255).all()
  assert (label_map == 255).sum() == 40 * label_map.shape[0]


def test_fixed_seed_gives_the_same_output():
  scene, ids = scene_with_ids(3)
  aug = joint_augment.JointRandAugment(num_layers=3)
  outs = []
  for _ in range(2):
    tf.random.set_seed(7)
    outs.append(
      aug(
        tf.constant(scene.image),
        tf.constant(scene.boxes / 128.0, tf.float32),
        tf.constant(ids),
      )
    )
  for a, b in zip(outs[0], outs[1]):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_flip_and_jitter_drops_boxes_the_crop_cuts_off():
  tf.random.set_seed(3)
  checked = dropped = 0
  for index in range(8):
    scene, ids = scene_with_ids(index)
    size = scene.image.shape[0]
    image, boxes, keep, label_map = joint_augment.flip_and_jitter(
      tf.constant(scene.image),
      tf.constant(scene.boxes / size, tf.float32),
      tf.ones([len(scene.boxes)], tf.bool),
      tf.constant(ids),
      (size, size),
      0.5,
      2.0,
      mask_fill=0,
    )
    assert image.shape == (size, size, 3) and image.dtype == tf.uint8
    boxes, keep, label_map = _in_pixels(boxes, keep, label_map, size)
    for k in range(len(boxes)):
      extent = _extent(label_map, k + 1)
      if not keep[k]:
        dropped += 1
        continue
      assert extent is not None, (index, k)
      checked += _check_box(boxes[k], extent, size, 0.6, (index, k))
  assert checked >= 10 and dropped >= 1


def test_jitter_padding_takes_the_ignore_label():
  scene, ids = scene_with_ids(0)
  size = scene.image.shape[0]
  _, _, _, label_map = joint_augment.flip_and_jitter(
    tf.constant(scene.image),
    tf.zeros([0, 4]),
    tf.ones([0], tf.bool),
    tf.constant(scene.semantic),
    (size, size),
    0.5,
    0.5,
  )
  label_map = label_map.numpy()
  # At half scale the image fills the top-left quarter; the rest is padding.
  assert (label_map[size // 2 + 1 :, :] == 255).all()
  assert (label_map[:, size // 2 + 1 :] == 255).all()
  assert (label_map[: size // 2 - 1, : size // 2 - 1] != 255).all()


@pytest.mark.parametrize(
  'name',
  list(affine.GEOMETRIC) + list(box_only_ops.ONLY_BBOXES_GEOMETRIC),
)
def test_label_map_moves_exactly_as_the_image(name):
  # The image is the label map itself: any misalignment shows as a mismatch.
  tf.random.set_seed(5)
  scene, ids = scene_with_ids(2)
  image = tf.constant(np.repeat(ids[..., None] * 30, 3, -1))
  boxes = tf.constant(scene.boxes / scene.image.shape[0], tf.float32)
  keep = tf.ones([len(scene.boxes)], tf.bool)
  policy = joint_augment.JointRandAugment(cutout_const=40, translate_const=40)
  out_image, _, _, label_map = policy._op(
    name, 10.0, 3.0, (image, boxes, keep, tf.constant(ids * 30)), 128
  )
  np.testing.assert_array_equal(out_image.numpy()[..., 0], label_map.numpy())
  assert not np.array_equal(label_map.numpy(), ids * 30)  # something moved


def test_auto_augment_kept_boxes_contain_their_objects():
  tf.random.set_seed(11)
  aug = joint_augment.JointAutoAugment(translate_const=50)
  checked = 0
  for index in range(6):
    scene, ids = scene_with_ids(index)
    size = scene.image.shape[0]
    for _ in range(3):
      _, boxes, keep, label_map = aug(
        tf.constant(scene.image),
        tf.constant(scene.boxes / size, tf.float32),
        tf.constant(ids),
        mask_fill=0,
      )
      boxes, keep, label_map = _in_pixels(boxes, keep, label_map, size)
      for k in np.flatnonzero(keep):
        extent = _extent(label_map, k + 1)
        if extent is None:
          continue  # its content left its box (TranslateY_Only_BBoxes)
        _check_box(boxes[k], extent, size, None, (index, k))
        checked += 1
  assert checked >= 30


@pytest.mark.parametrize('reference, pixels', [(640, 10), (None, 50)])
def test_pixel_constants_scale_with_the_image(reference, pixels):
  """translate_const 50 at a 640 px reference moves a 128 px image 10 px
  at level 10 (as 50 px would move a 640 px one); without one, 50 px."""
  tf.random.set_seed(0)
  image = np.zeros([128, 128, 3], np.uint8)
  image[60:68, 60:68] = 255
  policy = joint_augment.JointRandAugment(
    translate_const=50, reference_size=reference
  )
  state = joint_augment._prepare(tf.constant(image), tf.zeros([0, 4]), None)
  out = policy._op('TranslateX', 10.0, 1.0, state, 255)[0].numpy()
  xs = np.nonzero(out[..., 0] == 255)[1]
  shift = (xs.min() - 60) if len(xs) else None
  assert shift is not None and abs(shift) == pixels


def test_level_zero_cutout_changes_nothing():
  scene, ids = scene_with_ids(0)
  policy = joint_augment.JointAutoAugment(reference_size=None)
  state = joint_augment._prepare(
    tf.constant(scene.image), tf.zeros([0, 4]), None
  )
  out = policy._op('Cutout', 0.0, 1.0, state, None)[0].numpy()
  np.testing.assert_array_equal(out, scene.image)
