"""Augment-S1..S4 on an image, its boxes and a label map together.

`JointRandAugment` (S4), `JointAutoAugment` (detection AutoAugment, S2 / S3)
and `flip_and_jitter` (FlipCrop, every policy). The parsers
(`official_selftrain.data.parsers`) run them inside Model Garden's RetinaNet
and segmentation parsers; `flip_and_jitter` shows the same steps on one image
for the pictures (`tools/visualize.py --augment`).

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
lists, probabilities and magnitude-to-argument mappings are Model Garden's.
Model Garden ships one detection AutoAugment policy (v0); the released v1-v3
(`DETECTION_POLICIES`) need box-only ops it lacks (the plain op applied inside
each box, and BBox_Cutout), written here from their released definitions.

A label map is an [H, W] uint8 map: semantic classes (fill 255, the ignore
label) or ids of non-overlapping instance masks (fill 0).

Pixel constants (translate and cutout sizes) are Model Garden's, which are
meant for COCO images (about 640 px on the long side); with `reference_size`
set, they scale with each image's long side / reference_size, so a 128 px
Shapes image moves as far, relative to its size, as a 640 px COCO image
(Model Garden would move it 250 px, i.e. out of frame).
"""

import math
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np
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
  return clipped, _visible(mapped, clipped, min_visible)


def _area(b):
  return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)


def _visible(full, clipped, min_visible):
  return _area(clipped) >= min_visible * tf.maximum(_area(full), 1e-12)


# Box-only ops: the plain op applied to the pixels inside each box (each box
# with probability prob / 3), boxes unchanged. Model Garden has only
# TranslateY_Only_BBoxes; the others come with the detection AutoAugment
# policies v1-v3 (Zoph et al. 2019), whose released code defines them so.
ONLY_BBOXES_GEOMETRIC = {
  'Rotate_Only_BBoxes': 'Rotate',
  'ShearX_Only_BBoxes': 'ShearX',
  'ShearY_Only_BBoxes': 'ShearY',
  'TranslateX_Only_BBoxes': 'TranslateX',
  'TranslateY_Only_BBoxes': 'TranslateY',
  'Flip_Only_BBoxes': 'Flip',
}
ONLY_BBOXES_COLOUR = {
  'Solarize_Only_BBoxes': 'Solarize',
  'Equalize_Only_BBoxes': 'Equalize',
  'Cutout_Only_BBoxes': 'Cutout',
}
BOX_ONLY_OPS = frozenset(ONLY_BBOXES_GEOMETRIC) | frozenset(ONLY_BBOXES_COLOUR)
_TRANSLATE_BBOX_CONST = 120.0  # px at level 10, as Model Garden / the paper
_CUTOUT_BBOX_CONST = 50.0
_BBOX_CUTOUT_MAX_PAD_FRACTION = 0.75


def _extra_level_to_arg(name, level):
  """Arguments of the ops Model Garden lacks, with the released mappings."""
  base = ONLY_BBOXES_GEOMETRIC.get(name) or ONLY_BBOXES_COLOUR.get(name)
  if base == 'Rotate':
    return augment._rotate_level_to_arg(level)  # pylint: disable=protected-access
  if base in ('ShearX', 'ShearY'):
    return augment._shear_level_to_arg(level)  # pylint: disable=protected-access
  if base in ('TranslateX', 'TranslateY'):
    return augment._translate_level_to_arg(level, _TRANSLATE_BBOX_CONST)  # pylint: disable=protected-access
  if base == 'Solarize':
    return (int(level / 10.0 * 256),)
  if base == 'Cutout':
    return (int(level / 10.0 * _CUTOUT_BBOX_CONST),)
  if name == 'BBox_Cutout':
    return (level / 10.0 * _BBOX_CUTOUT_MAX_PAD_FRACTION,)
  return ()  # Flip, Equalize


def _box_pixels(box, height, width):
  """A normalised box as inclusive integer pixel ranges (y0, x0, y1, x1), as
  the released box-only ops crop it."""
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  y0 = tf.clip_by_value(tf.cast(h * box[0], tf.int32), 0, height - 1)
  x0 = tf.clip_by_value(tf.cast(w * box[1], tf.int32), 0, width - 1)
  y1 = tf.clip_by_value(tf.cast(h * box[2], tf.int32), y0, height - 1)
  x1 = tf.clip_by_value(tf.cast(w * box[3], tf.int32), x0, width - 1)
  return y0, x0, y1, x1


def _in_ranges(rows, cols, y0, x0, y1, x1):
  """[H, W] mask: row in [y0, y1] and column in [x0, x1] (inclusive)."""
  return ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[
    None, :
  ]


def _box_region(y0, x0, y1, x1, height, width):
  return _in_ranges(tf.range(height), tf.range(width), y0, x0, y1, x1)


def _crop_affine(base, arg, y0, x0, y1, x1):
  """The plain op's map on the box crop (origin at its top-left), written in
  image pixels: in = m_crop(out - origin) + origin."""
  ch = tf.cast(y1 - y0 + 1, tf.float32)
  cw = tf.cast(x1 - x0 + 1, tf.float32)
  if base == 'Flip':
    zero, one = tf.zeros([]), tf.ones([])
    m = tf.stack([-one, zero, cw - 1.0, zero, one, zero])
  else:
    m = _affine(base, arg, ch, cw)
  oy, ox = tf.cast(y0, tf.float32), tf.cast(x0, tf.float32)
  a0, a1, a2, b0, b1, b2 = tf.unstack(m)
  return tf.stack(
    [a0, a1, a2 + ox - a0 * ox - a1 * oy, b0, b1, b2 + oy - b0 * ox - b1 * oy]
  )


def _blend_region(
  image, label_map, region, moved, mask_fill, new_image, new_map
):
  """Inside region: new content where its source was in the region, fill
  where it was not; elsewhere unchanged."""
  inside, vacated = region & moved, region & ~moved
  image = tf.where(
    inside[..., None],
    new_image,
    tf.where(vacated[..., None], tf.constant(_GREY, image.dtype), image),
  )
  if mask_fill is not None:
    label_map = tf.where(
      inside,
      new_map,
      tf.where(vacated, tf.constant(mask_fill, label_map.dtype), label_map),
    )
  return image, label_map


def _translated_from(base, arg, box_pixels, height, width):
  """Which pixels a translation by `arg` fills from inside the box: the same
  as resampling the box's region mask (nearest rounds half up), without
  resampling a whole-image mask for each box."""
  shift = tf.cast(arg, tf.float32)
  dy, dx = (shift, 0.0) if base == 'TranslateY' else (0.0, shift)
  rows = tf.floor(tf.cast(tf.range(height), tf.float32) + dy + 0.5)
  cols = tf.floor(tf.cast(tf.range(width), tf.float32) + dx + 0.5)
  y0, x0, y1, x1 = [tf.cast(v, tf.float32) for v in box_pixels]
  return _in_ranges(rows, cols, y0, x0, y1, x1)


def _geometric_only_bboxes(base, arg, image, boxes, label_map, prob, mask_fill):
  """Moves the content of each box inside it (Rotate, Shear, Translate, Flip
  about the box crop as the released ops do), image and label map alike;
  what would come from outside the box is fill."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  translate = base in ('TranslateX', 'TranslateY')

  def move(state, box):
    image, label_map = state
    y0, x0, y1, x1 = _box_pixels(box, height, width)
    region = _box_region(y0, x0, y1, x1, height, width)
    if translate:  # the same motion for any box: no mask to resample
      m_box = _affine(base, arg, 0.0, 0.0)
      moved = _translated_from(base, arg, (y0, x0, y1, x1), height, width)
    else:
      m_box = _crop_affine(base, arg, y0, x0, y1, x1)
      moved = _warp(tf.cast(region, tf.uint8), m_box, 0) > 0
    new_image = _warp(image, m_box, _GREY)
    new_map = (
      _warp(label_map, m_box, mask_fill) if mask_fill is not None else None
    )
    return _blend_region(
      image, label_map, region, moved, mask_fill, new_image, new_map
    )

  def one_box(state, box):
    # Each box with probability prob / 3; the others cost nothing.
    return tf.cond(
      tf.random.uniform([]) < prob / 3.0,
      lambda: move(state, box),
      lambda: _unchanged(state),
    )

  return tf.foldl(one_box, boxes, initializer=(image, label_map))


def _colour_only_bboxes(base, args, image, boxes, prob):
  """Solarize, Equalize or Cutout on the crop of each box (Equalize's
  histogram and Cutout's square are the crop's own); the label map stays."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  if base == 'Cutout':
    args = tuple(args) + (_GREY,)

  def change(image, box):
    y0, x0, y1, x1 = _box_pixels(box, height, width)
    crop = image[y0 : y1 + 1, x0 : x1 + 1]
    done = augment.NAME_TO_FUNC[base](crop, *args)
    done = tf.pad(done, [[y0, height - 1 - y1], [x0, width - 1 - x1], [0, 0]])
    region = _box_region(y0, x0, y1, x1, height, width)
    return tf.where(region[..., None], done, image)

  def one_box(image, box):
    return tf.cond(
      tf.random.uniform([]) < prob / 3.0,
      lambda: change(image, box),
      lambda: tf.identity(image),
    )

  return tf.foldl(one_box, boxes, initializer=image)


def _bbox_cutout(image, boxes, pad_fraction):
  """BBox_Cutout: a grey rectangle centred in one random box, its half-sizes
  pad_fraction x half the box's (the released op, with its default grey)."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]

  def cut():
    index = tf.random.uniform([], maxval=tf.shape(boxes)[0], dtype=tf.int32)
    y0, x0, y1, x1 = _box_pixels(boxes[index], height, width)
    half_h = tf.cast(
      pad_fraction * tf.cast(y1 - y0 + 1, tf.float32) / 2, tf.int32
    )
    half_w = tf.cast(
      pad_fraction * tf.cast(x1 - x0 + 1, tf.float32) / 2, tf.int32
    )
    cy = tf.random.uniform([], y0, y1 + 1, dtype=tf.int32)
    cx = tf.random.uniform([], x0, x1 + 1, dtype=tf.int32)
    mask = _box_region(
      cy - half_h, cx - half_w, cy + half_h - 1, cx + half_w - 1, height, width
    )
    return tf.where(mask[..., None], tf.constant(_GREY, image.dtype), image)

  return tf.cond(tf.shape(boxes)[0] > 0, cut, lambda: tf.identity(image))


def _pixel_scale(image, reference_size):
  if reference_size is None:
    return tf.ones([])
  size = tf.cast(tf.reduce_max(tf.shape(image)[:2]), tf.float32)
  return size / float(reference_size)


def _op_args(name, level, image, cutout_const, translate_const, reference):
  """Model Garden's arguments for op `name` at `level`, pixel sizes scaled."""
  table = augment.level_to_arg(cutout_const, translate_const)
  if name in table:
    args = table[name](level)
  else:
    args = _extra_level_to_arg(name, level)
  base = name[: -len('_BBox')] if name.endswith('_BBox') else name
  base = ONLY_BBOXES_GEOMETRIC.get(base) or ONLY_BBOXES_COLOUR.get(base) or base
  if base in ('TranslateX', 'TranslateY'):
    return (args[0] * _pixel_scale(image, reference),)
  if base == 'Cutout':
    pad = tf.cast(args[0], tf.float32) * _pixel_scale(image, reference)
    return (tf.cast(tf.round(pad), tf.int32),)  # 0: no cutout, as released
  return args


def _apply_op(name, level, prob, state, mask_fill, policy):
  """One op of a policy on (image, boxes, keep, label_map).

  `name` is an op of Model Garden's RandAugment / AutoAugment lists; its
  `_BBox` geometric ops are done here with the plain op's pixel motion.
  """
  image, boxes, keep, label_map = state
  base = name[: -len('_BBox')] if name.endswith('_BBox') else name
  args = _op_args(
    name,
    level,
    image,
    policy.cutout_const,
    policy.translate_const,
    policy.reference_size,
  )
  if name in BOX_ONLY_OPS or name == 'BBox_Cutout':
    kept = tf.boolean_mask(boxes, keep)
  if name in ONLY_BBOXES_GEOMETRIC:
    arg = args[0] if args else None
    image, label_map = _geometric_only_bboxes(
      ONLY_BBOXES_GEOMETRIC[name], arg, image, kept, label_map, prob, mask_fill
    )
    return image, boxes, keep, label_map
  if name in ONLY_BBOXES_COLOUR:
    image = _colour_only_bboxes(
      ONLY_BBOXES_COLOUR[name], args, image, kept, prob
    )
    return image, boxes, keep, label_map
  if name == 'BBox_Cutout':
    return _bbox_cutout(image, kept, args[0]), boxes, keep, label_map
  if base in GEOMETRIC:
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    m = _affine(base, args[0], height, width)
    boxes, visible = _map_boxes(boxes, m, height, width, policy.min_visible)
    if mask_fill is not None:
      label_map = _warp(label_map, m, mask_fill)
    return _warp(image, m, _GREY), boxes, keep & visible, label_map
  if base in augment.REPLACE_FUNCS:
    args = tuple(args) + ([_GREY] * 3,)
  return augment.NAME_TO_FUNC[base](image, *args), boxes, keep, label_map


def instance_id_map(masks, threshold: float = 0.5):
  """[N, H, W] instance masks -> [H, W] uint8 label map, object k as k + 1,
  0 elsewhere (a later mask wins where masks overlap)."""
  masks = np.asarray(masks)
  ids = np.zeros(masks.shape[1:], np.uint8)
  for k, mask in enumerate(masks):
    ids[mask > threshold] = k + 1
  return ids


def _prepare(image, boxes, label_map):
  if label_map is None:
    # A placeholder the ops leave alone (they get mask_fill None).
    label_map = tf.zeros([1, 1], tf.uint8)
  return (
    tf.cast(image, tf.uint8),
    tf.cast(boxes, tf.float32),
    tf.ones(tf.shape(boxes)[:1], tf.bool),
    tf.cast(label_map, tf.uint8),
  )


class _JointPolicy:
  """What both policies share: op constants, the call, the label-map option."""

  def __init__(self, cutout_const, translate_const, min_visible, reference):
    self.cutout_const = cutout_const
    self.translate_const = translate_const
    self.min_visible = min_visible
    self.reference_size = reference

  def _op(self, name, level, prob, state, mask_fill):
    return _apply_op(name, level, prob, state, mask_fill, self)

  def _distort(self, state, mask_fill):
    raise NotImplementedError

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
    state = _prepare(image, boxes, label_map)
    if label_map is None:
      mask_fill = None  # detection only: no map to move
    image, boxes, keep, out_map = self._distort(state, mask_fill)
    return image, boxes, keep, (None if label_map is None else out_map)

  def distort_with_boxes(self, image, boxes):
    """Model Garden's augmenter interface (`retinanet_input.Parser`): boxes
    pushed out of the frame come back all zero, which its parser drops."""
    image, boxes, keep, _ = self(image, boxes)
    return image, tf.where(keep[:, None], boxes, 0.0)


def _unchanged(state):
  return tuple(tf.identity(t) for t in state)


class JointRandAugment(_JointPolicy):
  """Augment-S4's RandAugment for (image, boxes, label map).

  Model Garden's op list (less `exclude_ops`), one op drawn per layer among
  them and identity, applied at `magnitude` (Model Garden draws a
  probability per op too, but none of these ops uses it); with
  `prob_to_apply`, a layer is kept with that probability (as Model Garden).
  """

  def __init__(
    self,
    magnitude: float = 10.0,
    num_layers: int = 2,
    cutout_const: float = 40.0,
    translate_const: float = 100.0,
    min_visible: float = 0.25,
    reference_size: Optional[float] = None,
    exclude_ops: Optional[Sequence[str]] = None,
    prob_to_apply: Optional[float] = None,
  ):
    super().__init__(cutout_const, translate_const, min_visible, reference_size)
    self.ops = list(
      augment.RandAugment(exclude_ops=list(exclude_ops or [])).available_ops
    )
    self.magnitude = float(magnitude)
    self.num_layers = num_layers
    self.prob_to_apply = prob_to_apply

  def _apply(self, name, image, boxes, keep, label_map, mask_fill):
    prob = tf.random.uniform([], 0.2, 0.8)
    state = (image, boxes, keep, label_map)
    return self._op(name, self.magnitude, prob, state, mask_fill)

  def _distort(self, state, mask_fill):
    for _ in range(self.num_layers):
      selected = tf.random.uniform([], maxval=len(self.ops) + 1, dtype=tf.int32)
      branches = [
        lambda name=name, s=state: self._apply(name, *s, mask_fill)
        for name in self.ops
      ]
      new_state = tf.switch_case(
        selected, branches, default=lambda s=state: _unchanged(s)
      )
      if self.prob_to_apply is not None:
        new_state = tf.cond(
          tf.random.uniform([]) < self.prob_to_apply,
          lambda s=new_state: _unchanged(s),
          lambda s=state: _unchanged(s),
        )
      state = new_state
    return state


# The detection AutoAugment policies other than v0 (which Model Garden ships
# as 'detection_v0'), as released with Zoph et al. 2019, "Learning Data
# Augmentation Strategies for Object Detection": sub-policies of
# (op, probability, level), one drawn per image.
DETECTION_POLICIES = {
  'detection_v1': [
    [('TranslateX_BBox', 0.6, 4), ('Equalize', 0.8, 10)],
    [('TranslateY_Only_BBoxes', 0.2, 2), ('Cutout', 0.8, 8)],
    [('Sharpness', 0.0, 8), ('ShearX_BBox', 0.4, 0)],
    [('ShearY_BBox', 1.0, 2), ('TranslateY_Only_BBoxes', 0.6, 6)],
    [('Rotate_BBox', 0.6, 10), ('Color', 1.0, 6)],
    [('Color', 0.0, 0), ('ShearX_Only_BBoxes', 0.8, 4)],
    [('ShearY_Only_BBoxes', 0.8, 2), ('Flip_Only_BBoxes', 0.0, 10)],
    [('Equalize', 0.6, 10), ('TranslateX_BBox', 0.2, 2)],
    [('Color', 1.0, 10), ('TranslateY_Only_BBoxes', 0.4, 6)],
    [('Rotate_BBox', 0.8, 10), ('Contrast', 0.0, 10)],
    [('Cutout', 0.2, 2), ('Brightness', 0.8, 10)],
    [('Color', 1.0, 6), ('Equalize', 1.0, 2)],
    [('Cutout_Only_BBoxes', 0.4, 6), ('TranslateY_Only_BBoxes', 0.8, 2)],
    [('Color', 0.2, 8), ('Rotate_BBox', 0.8, 10)],
    [('Sharpness', 0.4, 4), ('TranslateY_Only_BBoxes', 0.0, 4)],
    [('Sharpness', 1.0, 4), ('SolarizeAdd', 0.4, 4)],
    [('Rotate_BBox', 1.0, 8), ('Sharpness', 0.2, 8)],
    [('ShearY_BBox', 0.6, 10), ('Equalize_Only_BBoxes', 0.6, 8)],
    [('ShearX_BBox', 0.2, 6), ('TranslateY_Only_BBoxes', 0.2, 10)],
    [('SolarizeAdd', 0.6, 8), ('Brightness', 0.8, 10)],
  ],
  'detection_v2': [
    [('Color', 0.0, 6), ('Cutout', 0.6, 8), ('Sharpness', 0.4, 8)],
    [('Rotate_BBox', 0.4, 8), ('Sharpness', 0.4, 2), ('Rotate_BBox', 0.8, 10)],
    [('TranslateY_BBox', 1.0, 8), ('AutoContrast', 0.8, 2)],
    [
      ('AutoContrast', 0.4, 6),
      ('ShearX_BBox', 0.8, 8),
      ('Brightness', 0.0, 10),
    ],
    [('SolarizeAdd', 0.2, 6), ('Contrast', 0.0, 10), ('AutoContrast', 0.6, 0)],
    [('Cutout', 0.2, 0), ('Solarize', 0.8, 8), ('Color', 1.0, 4)],
    [('TranslateY_BBox', 0.0, 4), ('Equalize', 0.6, 8), ('Solarize', 0.0, 10)],
    [
      ('TranslateY_BBox', 0.2, 2),
      ('ShearY_BBox', 0.8, 8),
      ('Rotate_BBox', 0.8, 8),
    ],
    [('Cutout', 0.8, 8), ('Brightness', 0.8, 8), ('Cutout', 0.2, 2)],
    [('Color', 0.8, 4), ('TranslateY_BBox', 1.0, 6), ('Rotate_BBox', 0.6, 6)],
    [('Rotate_BBox', 0.6, 10), ('BBox_Cutout', 1.0, 4), ('Cutout', 0.2, 8)],
    [('Rotate_BBox', 0.0, 0), ('Equalize', 0.6, 6), ('ShearY_BBox', 0.6, 8)],
    [('Brightness', 0.8, 8), ('AutoContrast', 0.4, 2), ('Brightness', 0.2, 2)],
    [
      ('TranslateY_BBox', 0.4, 8),
      ('Solarize', 0.4, 6),
      ('SolarizeAdd', 0.2, 10),
    ],
    [('Contrast', 1.0, 10), ('SolarizeAdd', 0.2, 8), ('Equalize', 0.2, 4)],
  ],
  'detection_v3': [
    [('Posterize', 0.8, 2), ('TranslateX_BBox', 1.0, 8)],
    [('BBox_Cutout', 0.2, 10), ('Sharpness', 1.0, 8)],
    [('Rotate_BBox', 0.6, 8), ('Rotate_BBox', 0.8, 10)],
    [('Equalize', 0.8, 10), ('AutoContrast', 0.2, 10)],
    [('SolarizeAdd', 0.2, 2), ('TranslateY_BBox', 0.2, 8)],
    [('Sharpness', 0.0, 2), ('Color', 0.4, 8)],
    [('Equalize', 1.0, 8), ('TranslateY_BBox', 1.0, 8)],
    [('Posterize', 0.6, 2), ('Rotate_BBox', 0.0, 10)],
    [('AutoContrast', 0.6, 0), ('Rotate_BBox', 1.0, 6)],
    [('Equalize', 0.0, 4), ('Cutout', 0.8, 10)],
    [('Brightness', 1.0, 2), ('TranslateY_BBox', 1.0, 6)],
    [('Contrast', 0.0, 2), ('ShearY_BBox', 0.8, 0)],
    [('AutoContrast', 0.8, 10), ('Contrast', 0.2, 10)],
    [('Rotate_BBox', 1.0, 10), ('Cutout', 1.0, 10)],
    [('SolarizeAdd', 0.8, 6), ('Equalize', 0.8, 8)],
  ],
}
DETECTION_VERSIONS = ('v0', 'v1', 'v2', 'v3')


def detection_policy(augmentation_name: str):
  """Sub-policies of a detection AutoAugment policy ('detection_v0'..'v3';
  other Model Garden policy names are passed to Model Garden)."""
  if augmentation_name in DETECTION_POLICIES:
    return DETECTION_POLICIES[augmentation_name]
  return augment.AutoAugment(augmentation_name).policies


class JointAutoAugment(_JointPolicy):
  """Augment-S2/S3's detection AutoAugment for (image, boxes, label map).

  The sub-policies of `detection_v0` (Model Garden's, the default) or
  `detection_v1`..`v3` (`DETECTION_POLICIES`): one is drawn per image and its
  ops applied in turn, each with its own probability.
  """

  def __init__(
    self,
    augmentation_name: str = 'detection_v0',
    cutout_const: float = 100.0,
    translate_const: float = 250.0,
    min_visible: float = 0.25,
    reference_size: Optional[float] = None,
  ):
    super().__init__(cutout_const, translate_const, min_visible, reference_size)
    self.policies = detection_policy(augmentation_name)

  def _sub_policy(self, policy, state, mask_fill):
    for name, prob, level in policy:
      # A box-only op draws each box with prob / 3 itself and is always
      # called, as in the released code (Model Garden's port gates it with
      # prob first too, so its boxes are drawn with prob**2 / 3).
      gate = 1.0 if name in BOX_ONLY_OPS else prob
      state = tf.cond(
        tf.random.uniform([]) < gate,
        lambda s=state, n=name, p=prob, v=level: self._op(
          n, float(v), p, s, mask_fill
        ),
        lambda s=state: _unchanged(s),
      )
    return state

  def _distort(self, state, mask_fill):
    selected = tf.random.uniform([], maxval=len(self.policies), dtype=tf.int32)
    return tf.switch_case(
      selected,
      [
        lambda p=policy, s=state: self._sub_policy(p, s, mask_fill)
        for policy in self.policies
      ],
    )


def crop_boxes(boxes: tf.Tensor, image_info: tf.Tensor, min_visible: float):
  """Pixel boxes through a jitter resize + crop, with the sliver rule.

  Args:
    boxes: [N, 4] pixel boxes of the input image.
    image_info: Model Garden's from `resize_and_crop_image`.
    min_visible: boxes with less of their area left in the crop are dropped.

  Returns:
    (boxes clipped to the crop as Model Garden's `resize_and_crop_boxes`,
     [N] bool: which keep >= min_visible of their area).
  """
  scale, offset = image_info[2], image_info[3]
  full = boxes * tf.tile(scale, [2])[None] - tf.tile(offset, [2])[None]
  clipped = preprocess_ops.resize_and_crop_boxes(
    boxes, scale, image_info[1], offset
  )
  return clipped, _visible(full, clipped, min_visible)


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
  image_fill: Sequence[float] = (0.0, 0.0, 0.0),
):
  """FlipCrop of Table 1 on image, boxes and label map (Model Garden's ops).

  Random horizontal flip, then resize to a random scale of `output_size`
  (aspect kept) and random crop / pad to it. Model Garden clips boxes the crop
  cuts and keeps them however little is left; here a box with less than
  `min_visible` of its area in the crop is dropped (`keep` False). The label
  map is resampled nearest-neighbour and its padding takes `mask_fill`; the
  image's padding takes `image_fill` (the RetinaNet parser pads the
  normalised image with 0, i.e. `preprocess_ops.MEAN_RGB`).

  Returns:
    (image uint8 [h, w, 3], boxes normalised to the output, keep, label_map).
  """
  label_map = tf.cast(label_map, tf.int32)[..., None]
  if hflip:
    image, boxes, label_map = preprocess_ops.random_horizontal_flip(
      image, normalized_boxes=boxes, masks=label_map
    )
  input_size = tf.shape(image)[:2]
  fill = tf.constant(image_fill, tf.float32)
  image, info = preprocess_ops.resize_and_crop_image(
    tf.cast(image, tf.float32) - fill,
    output_size,
    output_size,
    aug_scale_min=scale_min,
    aug_scale_max=scale_max,
  )
  scale, offset = info[2], info[3]
  clipped, visible = crop_boxes(
    box_ops.denormalize_boxes(boxes, input_size), info, min_visible
  )
  keep = keep & visible
  # Model Garden pads masks with 0: shift by one so padding is told apart.
  shifted = tf.cast(label_map + 1, tf.float32)[None]
  shifted = preprocess_ops.resize_and_crop_masks(
    shifted, scale, output_size, offset
  )[0, ..., 0]
  label_map = tf.where(shifted > 0, shifted - 1, float(mask_fill))
  boxes = box_ops.normalize_boxes(clipped, output_size)
  return (
    tf.cast(tf.clip_by_value(tf.round(image + fill), 0, 255), tf.uint8),
    boxes,
    keep,
    tf.cast(label_map, tf.uint8),
  )
