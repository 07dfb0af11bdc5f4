"""Augment-S4 on image, boxes and label map together: boxes follow objects."""

from helpers import scene_with_ids
import numpy as np
from official.vision.ops import augment
import pytest
import tensorflow as tf

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


@pytest.mark.parametrize('name', joint_augment.GEOMETRIC)
def test_boxes_follow_objects_under_every_geometric_op(name):
  tf.random.set_seed(1)
  aug = joint_augment.JointRandAugment(translate_const=40)
  checked = 0
  for index in range(8):
    scene, ids = scene_with_ids(index)
    size = scene.image.shape[0]
    _, boxes, keep, label_map = aug._apply(  # pylint: disable=protected-access
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
    image, out_boxes, keep, label_map = aug._apply(  # pylint: disable=protected-access
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
  _, _, _, label_map = aug._apply(  # pylint: disable=protected-access
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
  list(joint_augment.GEOMETRIC) + list(joint_augment.ONLY_BBOXES_GEOMETRIC),
)
def test_label_map_moves_exactly_as_the_image(name):
  # The image is the label map itself: any misalignment shows as a mismatch.
  tf.random.set_seed(5)
  scene, ids = scene_with_ids(2)
  image = tf.constant(np.repeat(ids[..., None] * 30, 3, -1))
  boxes = tf.constant(scene.boxes / scene.image.shape[0], tf.float32)
  keep = tf.ones([len(scene.boxes)], tf.bool)
  policy = joint_augment.JointRandAugment(cutout_const=40, translate_const=40)
  out_image, _, _, label_map = policy._op(  # pylint: disable=protected-access
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
  state = joint_augment._prepare(  # pylint: disable=protected-access
    tf.constant(image), tf.zeros([0, 4]), None
  )
  out = policy._op('TranslateX', 10.0, 1.0, state, 255)[0].numpy()  # pylint: disable=protected-access
  xs = np.nonzero(out[..., 0] == 255)[1]
  shift = (xs.min() - 60) if len(xs) else None
  assert shift is not None and abs(shift) == pixels


BOX_ONLY = (
  list(joint_augment.ONLY_BBOXES_GEOMETRIC)
  + list(joint_augment.ONLY_BBOXES_COLOUR)
  + ['BBox_Cutout']
)


def _box_union(boxes, size):
  """Pixels inside any box, with the released ops' integer crop."""
  union = np.zeros([size, size], bool)
  for ymin, xmin, ymax, xmax in boxes:
    y0, x0 = int(size * ymin), int(size * xmin)
    y1, x1 = min(int(size * ymax), size - 1), min(int(size * xmax), size - 1)
    union[y0 : y1 + 1, x0 : x1 + 1] = True
  return union


@pytest.mark.parametrize('name', BOX_ONLY)
def test_box_only_ops_change_nothing_outside_the_boxes(name):
  """Box-only ops change pixels inside boxes only, never the boxes; colour
  ones and BBox_Cutout (a grey rectangle centred in one box) never the label
  map."""
  tf.random.set_seed(6)
  policy = joint_augment.JointAutoAugment(reference_size=None)
  changed = 0
  for index in range(4):
    scene, ids = scene_with_ids(index)
    size = scene.image.shape[0]
    boxes = scene.boxes / size
    state = joint_augment._prepare(  # pylint: disable=protected-access
      tf.constant(scene.image), tf.constant(boxes, tf.float32), tf.constant(ids)
    )
    image, out_boxes, keep, label_map = [
      t.numpy()
      for t in policy._op(name, 6.0, 3.0, state, 0)  # pylint: disable=protected-access
    ]
    outside = ~_box_union(boxes, size)
    if name == 'BBox_Cutout':
      # Its grey rectangle is centred in a box but may reach past it.
      diff = (image != scene.image).any(-1)
      assert (image[diff] == 128).all()
      assert not diff.any() or (diff & ~outside).any()
      outside &= ~diff
    np.testing.assert_array_equal(image[outside], scene.image[outside])
    np.testing.assert_array_equal(label_map[outside], ids[outside])
    np.testing.assert_allclose(out_boxes, boxes, atol=1e-6)
    assert keep.all()
    if name not in joint_augment.ONLY_BBOXES_GEOMETRIC:
      np.testing.assert_array_equal(label_map, ids)
    changed += int((image != scene.image).any())
  assert changed >= 3, name


def test_flip_only_bboxes_mirrors_each_box():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, [96, 96, 3]).astype(np.uint8)
  boxes = np.array([[0.05, 0.1, 0.3, 0.45], [0.5, 0.5, 0.9, 0.8]], np.float32)
  policy = joint_augment.JointAutoAugment(reference_size=None)
  state = joint_augment._prepare(  # pylint: disable=protected-access
    tf.constant(image), tf.constant(boxes), None
  )
  out = policy._op('Flip_Only_BBoxes', 0.0, 3.0, state, None)[0].numpy()  # pylint: disable=protected-access
  expected = image.copy()
  for ymin, xmin, ymax, xmax in boxes:
    y0, x0, y1, x1 = (
      int(96 * ymin),
      int(96 * xmin),
      int(96 * ymax),
      int(96 * xmax),
    )
    expected[y0 : y1 + 1, x0 : x1 + 1] = image[y0 : y1 + 1, x0 : x1 + 1][
      :, ::-1
    ]
  np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('version', ['v1', 'v2', 'v3'])
def test_every_sub_policy_of_the_released_versions_runs(version):
  """Each sub-policy of detection v1..v3, every op forced on: the output is an
  image of the input's shape and the label map holds input labels or fill."""
  tf.random.set_seed(7)
  scene, ids = scene_with_ids(1)
  size = scene.image.shape[0]
  policies = joint_augment.detection_policy(f'detection_{version}')
  assert policies is joint_augment.DETECTION_POLICIES[f'detection_{version}']
  for sub_policy in policies:
    aug = joint_augment.JointAutoAugment(
      f'detection_{version}', reference_size=640
    )
    aug.policies = [[(op, 1.0, level) for op, _, level in sub_policy]]
    image, boxes, keep, label_map = aug(
      tf.constant(scene.image),
      tf.constant(scene.boxes / size, tf.float32),
      tf.constant(ids),
      mask_fill=0,
    )
    assert image.shape == scene.image.shape and image.dtype == tf.uint8
    assert boxes.shape == scene.boxes.shape
    assert set(np.unique(label_map.numpy())) <= set(np.unique(ids)) | {0}


@pytest.mark.parametrize('base', ['TranslateX', 'TranslateY'])
def test_translated_from_matches_resampling_the_box_region(base):
  """The box-only translate's shortcut names the same pixels as resampling
  the box's region mask, half-pixel shifts included."""
  region = np.zeros([50, 60], np.uint8)
  region[10:30, 20:41] = 1
  for arg in [-12.5, -7.3, -0.5, 0.5, 2.5, 3.5, 4.49, 4.5, 4.51, 13.7]:
    m = joint_augment._affine(base, arg, 0.0, 0.0)  # pylint: disable=protected-access
    resampled = joint_augment._warp(tf.constant(region), m, 0).numpy() > 0  # pylint: disable=protected-access
    shortcut = joint_augment._translated_from(  # pylint: disable=protected-access
      base, arg, (10, 20, 29, 40), 50, 60
    ).numpy()
    np.testing.assert_array_equal(shortcut, resampled, err_msg=str(arg))


def test_level_zero_cutout_changes_nothing():
  scene, ids = scene_with_ids(0)
  policy = joint_augment.JointAutoAugment(reference_size=None)
  state = joint_augment._prepare(  # pylint: disable=protected-access
    tf.constant(scene.image), tf.zeros([0, 4]), None
  )
  out = policy._op('Cutout', 0.0, 1.0, state, None)[0].numpy()  # pylint: disable=protected-access
  np.testing.assert_array_equal(out, scene.image)


def test_box_only_op_draws_each_box_with_prob_over_three():
  """As released: a box-only op of a sub-policy is always called and draws
  each box with prob / 3 (0.3 / 3 = 0.1 here), not prob * prob / 3 (0.03)."""
  tf.random.set_seed(9)
  image = np.random.default_rng(0).integers(0, 256, [48, 48, 3], np.uint8)
  aug = joint_augment.JointAutoAugment(reference_size=None)
  aug.policies = [[('TranslateY_Only_BBoxes', 0.3, 10)]]
  distort = tf.function(lambda x, b: aug(x, b)[0])
  box = tf.constant([[0.2, 0.2, 0.8, 0.8]])
  changed = np.mean(
    [
      bool((distort(tf.constant(image), box).numpy() != image).any())
      for _ in range(400)
    ]
  )
  assert 0.06 < changed < 0.15, changed
