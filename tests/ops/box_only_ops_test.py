"""Box-only ops (detection AutoAugment v0-v3): pixels move inside boxes only."""

from helpers import scene_with_ids
import numpy as np
import pytest
import tensorflow as tf

from official_selftrain.ops import affine
from official_selftrain.ops import box_only_ops
from official_selftrain.ops import joint_augment

BOX_ONLY = (
  list(box_only_ops.ONLY_BBOXES_GEOMETRIC)
  + list(box_only_ops.ONLY_BBOXES_COLOUR)
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
    state = joint_augment._prepare(
      tf.constant(scene.image), tf.constant(boxes, tf.float32), tf.constant(ids)
    )
    image, out_boxes, keep, label_map = [
      t.numpy() for t in policy._op(name, 6.0, 3.0, state, 0)
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
    if name not in box_only_ops.ONLY_BBOXES_GEOMETRIC:
      np.testing.assert_array_equal(label_map, ids)
    changed += int((image != scene.image).any())
  assert changed >= 3, name


def test_flip_only_bboxes_mirrors_each_box():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, [96, 96, 3]).astype(np.uint8)
  boxes = np.array([[0.05, 0.1, 0.3, 0.45], [0.5, 0.5, 0.9, 0.8]], np.float32)
  policy = joint_augment.JointAutoAugment(reference_size=None)
  state = joint_augment._prepare(tf.constant(image), tf.constant(boxes), None)
  out = policy._op('Flip_Only_BBoxes', 0.0, 3.0, state, None)[0].numpy()
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


@pytest.mark.parametrize('base', ['TranslateX', 'TranslateY'])
def test_translated_from_matches_resampling_the_box_region(base):
  """The box-only translate's shortcut names the same pixels as resampling
  the box's region mask, half-pixel shifts included."""
  region = np.zeros([50, 60], np.uint8)
  region[10:30, 20:41] = 1
  for arg in [-12.5, -7.3, -0.5, 0.5, 2.5, 3.5, 4.49, 4.5, 4.51, 13.7]:
    m = affine.op_map(base, arg, 0.0, 0.0)
    resampled = affine.warp(tf.constant(region), m, 0).numpy() > 0
    shortcut = box_only_ops.translated_from(
      base, arg, (10, 20, 29, 40), 50, 60
    ).numpy()
    np.testing.assert_array_equal(shortcut, resampled, err_msg=str(arg))


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
