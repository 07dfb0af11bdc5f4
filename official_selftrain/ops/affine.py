"""Geometric ops as one affine map on an image, its boxes and its label map.

Rotate, ShearX / ShearY and TranslateX / TranslateY, each as one affine map
(`op_map`, with Model Garden's sign conventions, so pixels move as its ops
move them), applied with constant fill to the image (grey 128) and to the
label map (`mask_fill`), both nearest-neighbour (`warp`); boxes are the extent
of their mapped corners, and a box with less than `min_visible` of its mapped
area left in the frame is reported not visible, to be dropped rather than kept
as a sliver (`map_boxes`). `apply` does all three for one op.

Hand-written rather than Model Garden's (`official.vision.ops.augment`)
because of two gaps measured there (tests/ops/joint_augment_test.py):
  - its geometric ops resample with `fill_mode='reflect'`, so the `replace`
    colour never applies: a shifted image shows mirrored copies of objects
    whose boxes have moved out of frame (a 70 px shift of a 100 px image: box
    at x 0-5, pixels at x 70-90);
  - they have no mask argument, so a label map cannot follow them.
"""

import math

from official.vision.ops import augment
import tensorflow as tf

GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
# What uncovered image pixels take (Model Garden's `replace` grey).
GREY = 128


def op_map(name: str, arg, height, width) -> tf.Tensor:
  """The op's output->input map [a0 a1 a2 b0 b1 b2] in pixels (x, y), with
  Model Garden's sign conventions, so pixels move as its ops move them."""
  arg = tf.cast(arg, tf.float32)
  zero, one = tf.zeros([]), tf.ones([])
  if name == 'ShearX':
    return tf.stack([one, arg, zero, zero, one, zero])
  if name == 'ShearY':
    return tf.stack([one, zero, zero, arg, one, zero])
  if name == 'TranslateX':  # augment.translate_x: translate by -pixels
    return tf.stack([one, zero, arg, zero, one, zero])
  if name == 'TranslateY':
    return tf.stack([one, zero, zero, zero, one, arg])
  # Rotate: about the centre, as augment.rotate.
  radians = arg * (math.pi / 180.0)
  transform = augment._convert_angles_to_transform(
    angles=radians, image_width=width, image_height=height
  )
  return tf.reshape(transform, [-1])[:6]


def _invert(m: tf.Tensor) -> tf.Tensor:
  a0, a1, a2, b0, b1, b2 = tf.unstack(m)
  det = a0 * b1 - a1 * b0
  return tf.stack(
    [
      b1 / det,
      -a1 / det,
      (a1 * b2 - b1 * a2) / det,
      -b0 / det,
      a0 / det,
      (b0 * a2 - a0 * b2) / det,
    ]
  )


def warp(image: tf.Tensor, m: tf.Tensor, fill: float) -> tf.Tensor:
  """Resamples [H, W, C] or [H, W] through m, nearest, constant fill."""
  if image.shape.rank == 2:
    return warp(image[..., None], m, fill)[..., 0]
  transforms = tf.concat([m, tf.zeros([2])], 0)[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
    images=tf.cast(image, tf.float32)[None],
    transforms=transforms,
    output_shape=tf.shape(image)[:2],
    fill_value=fill,
    interpolation='NEAREST',
    fill_mode='CONSTANT',
  )[0]
  return tf.cast(out, image.dtype)


def map_boxes(boxes, m, height, width, min_visible):
  """Forward-maps normalised (ymin, xmin, ymax, xmax) boxes; returns the
  clipped boxes and which of them keep >= min_visible of their area."""
  fwd = _invert(m)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  # Box edges are pixel borders; the map works on pixel centres (index i at
  # i, its borders at i - 0.5 and i + 0.5).
  xs = tf.stack([xmin, xmax, xmin, xmax], -1) * width - 0.5
  ys = tf.stack([ymin, ymin, ymax, ymax], -1) * height - 0.5
  new_x = fwd[0] * xs + fwd[1] * ys + fwd[2] + 0.5
  new_y = fwd[3] * xs + fwd[4] * ys + fwd[5] + 0.5
  mapped = tf.stack(
    [
      tf.reduce_min(new_y, -1) / height,
      tf.reduce_min(new_x, -1) / width,
      tf.reduce_max(new_y, -1) / height,
      tf.reduce_max(new_x, -1) / width,
    ],
    -1,
  )
  clipped = tf.clip_by_value(mapped, 0.0, 1.0)
  return clipped, visible(mapped, clipped, min_visible)


def _area(b):
  return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)


def visible(full, clipped, min_visible):
  """[N] bool: the clipped boxes keep >= min_visible of the full ones' area."""
  return _area(clipped) >= min_visible * tf.maximum(_area(full), 1e-12)


def apply(name, arg, image, boxes, label_map, mask_fill, min_visible):
  """Geometric op `name` (of GEOMETRIC) at `arg` on image, boxes, label map.

  Returns:
    (image, boxes, visible, label_map): `visible` [N] is False for boxes left
    with less than min_visible of their area in the frame; the label map is
    moved only if mask_fill is not None.
  """
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  m = op_map(name, arg, height, width)
  boxes, in_frame = map_boxes(boxes, m, height, width, min_visible)
  if mask_fill is not None:
    label_map = warp(label_map, m, mask_fill)
  return warp(image, m, GREY), boxes, in_frame, label_map
