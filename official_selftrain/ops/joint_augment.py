"""RandAugment on an image, its boxes and a label map together (Augment-S4).

Hand-written around Model Garden's ops (`official.vision.ops.augment`) because
of two gaps measured there (tests/ops/joint_augment_test.py):
  - its geometric ops (rotate, shear, translate) resample with
    `fill_mode='reflect'`, so the `replace` colour never applies: a shifted
    image shows mirrored copies of objects whose boxes have moved out of frame
    (a 70 px shift of a 100 px image: box at x 0-5, pixels at x 70-90);
  - it has no mask argument, and its segmentation parser no RandAugment.
Here every geometric op is one affine map applied with constant fill to the
image (grey 128) and to the label map (`mask_fill`, nearest-neighbour); boxes
are the extent of their mapped corners, and a box with less than
`min_visible` of its mapped area left in the frame is dropped, not kept as a
sliver. Colour ops and Cutout are Model Garden's, on the image only. The op
list and magnitude-to-argument mapping are Model Garden's RandAugment's.

A label map is an [H, W] uint8 map: semantic classes (fill 255, the ignore
label) or ids of non-overlapping instance masks (fill 0).
"""

import math
from typing import Optional
from typing import Tuple

from official.vision.ops import augment
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops
import tensorflow as tf

GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
_GREY = 128


def _affine(name: str, arg, height, width) -> tf.Tensor:
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
  transform = augment._convert_angles_to_transform(  # pylint: disable=protected-access
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


def _warp(image: tf.Tensor, m: tf.Tensor, fill: float) -> tf.Tensor:
  """Resamples [H, W, C] or [H, W] through m, nearest, constant fill."""
  if image.shape.rank == 2:
    return _warp(image[..., None], m, fill)[..., 0]
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


def _map_boxes(boxes, m, height, width, min_visible):
  """Forward-maps normalised (ymin, xmin, ymax, xmax) boxes; returns the
  clipped boxes and which of them keep >= min_visible of their area."""
  fwd = _invert(m)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  xs = tf.stack([xmin, xmax, xmin, xmax], -1) * width
  ys = tf.stack([ymin, ymin, ymax, ymax], -1) * height
  new_x = fwd[0] * xs + fwd[1] * ys + fwd[2]
  new_y = fwd[3] * xs + fwd[4] * ys + fwd[5]
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
  return clipped, _visible(mapped, clipped, min_visible)


def _area(b):
  return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)


def _visible(full, clipped, min_visible):
  return _area(clipped) >= min_visible * tf.maximum(_area(full), 1e-12)


class JointRandAugment:
  """Augment-S4's RandAugment for (image, boxes, label map)."""

  def __init__(
    self,
    magnitude: float = 10.0,
    num_layers: int = 2,
    cutout_const: float = 40.0,
    translate_const: float = 100.0,
    min_visible: float = 0.25,
  ):
    self.ops = list(augment.RandAugment().available_ops)
    self.magnitude = float(magnitude)
    self.num_layers = num_layers
    self.cutout_const = cutout_const
    self.translate_const = translate_const
    self.min_visible = min_visible

  def _apply(self, name, image, boxes, keep, label_map, mask_fill):
    args = augment.level_to_arg(self.cutout_const, self.translate_const)[name](
      self.magnitude
    )
    if name in GEOMETRIC:
      height = tf.cast(tf.shape(image)[0], tf.float32)
      width = tf.cast(tf.shape(image)[1], tf.float32)
      m = _affine(name, args[0], height, width)
      boxes, visible = _map_boxes(boxes, m, height, width, self.min_visible)
      return (
        _warp(image, m, _GREY),
        boxes,
        keep & visible,
        _warp(label_map, m, mask_fill),
      )
    prob = tf.random.uniform([], 0.2, 0.8)
    if name in augment.PROB_FUNCS:
      args = (prob,) + tuple(args)
    if name in augment.REPLACE_FUNCS:
      args = tuple(args) + ([_GREY] * 3,)
    return augment.NAME_TO_FUNC[name](image, *args), boxes, keep, label_map

  def __call__(
    self,
    image: tf.Tensor,
    boxes: tf.Tensor,
    label_map: Optional[tf.Tensor] = None,
    mask_fill: int = 255,
  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, Optional[tf.Tensor]]:
    """Distorts uint8 [H, W, 3] image, normalised [N, 4] boxes, [H, W] map.

    Returns:
      (image, boxes, keep, label_map): `keep` [N] is False for boxes the
      geometric ops pushed (nearly) out of the frame; label_map None if none
      was given.
    """
    has_map = label_map is not None
    if not has_map:
      label_map = tf.zeros(tf.shape(image)[:2], tf.uint8)
    image = tf.cast(image, tf.uint8)
    label_map = tf.cast(label_map, tf.uint8)
    boxes = tf.cast(boxes, tf.float32)
    keep = tf.ones(tf.shape(boxes)[:1], tf.bool)
    for _ in range(self.num_layers):
      selected = tf.random.uniform([], maxval=len(self.ops) + 1, dtype=tf.int32)
      state = (image, boxes, keep, label_map)
      branches = [
        lambda name=name, s=state: self._apply(name, *s, mask_fill)
        for name in self.ops
      ]
      image, boxes, keep, label_map = tf.switch_case(
        selected,
        branches,
        default=lambda s=state: tuple(tf.identity(t) for t in s),
      )
    return image, boxes, keep, (label_map if has_map else None)


def flip_and_jitter(
  image: tf.Tensor,
  boxes: tf.Tensor,
  keep: tf.Tensor,
  label_map: tf.Tensor,
  output_size: Tuple[int, int],
  scale_min: float,
  scale_max: float,
  mask_fill: int = 255,
  hflip: bool = True,
  min_visible: float = 0.25,
):
  """FlipCrop of Table 1 on image, boxes and label map (Model Garden's ops).

  Random horizontal flip, then resize to a random scale of `output_size`
  (aspect kept) and random crop / pad to it. Model Garden clips boxes the crop
  cuts and keeps them however little is left; here a box with less than
  `min_visible` of its area in the crop is dropped (`keep` False). The label
  map is resampled nearest-neighbour and its padding takes `mask_fill`.

  Returns:
    (image uint8 [h, w, 3], boxes normalised to the output, keep, label_map).
  """
  label_map = tf.cast(label_map, tf.int32)[..., None]
  if hflip:
    image, boxes, label_map = preprocess_ops.random_horizontal_flip(
      image, normalized_boxes=boxes, masks=label_map
    )
  input_size = tf.shape(image)[:2]
  image, info = preprocess_ops.resize_and_crop_image(
    image,
    output_size,
    output_size,
    aug_scale_min=scale_min,
    aug_scale_max=scale_max,
  )
  scale, offset = info[2], info[3]
  pixels = box_ops.denormalize_boxes(boxes, input_size)
  full = pixels * tf.tile(scale, [2])[None] - tf.tile(offset, [2])[None]
  clipped = preprocess_ops.resize_and_crop_boxes(
    pixels, scale, output_size, offset
  )
  keep = keep & _visible(full, clipped, min_visible)
  # Model Garden pads masks with 0: shift by one so padding is told apart.
  shifted = tf.cast(label_map + 1, tf.float32)[None]
  shifted = preprocess_ops.resize_and_crop_masks(
    shifted, scale, output_size, offset
  )[0, ..., 0]
  label_map = tf.where(shifted > 0, shifted - 1, float(mask_fill))
  boxes = box_ops.normalize_boxes(clipped, output_size)
  return (
    tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8),
    boxes,
    keep,
    tf.cast(label_map, tf.uint8),
  )
