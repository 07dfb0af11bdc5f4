"""Box-only ops of the released detection AutoAugment policies v1-v3.

The plain op applied to the pixels inside each box (each box with probability
prob / 3), boxes unchanged: `Rotate_`, `ShearX_`, `ShearY_`, `TranslateX_`,
`TranslateY_` and `Flip_Only_BBoxes` move the content of each box inside it,
image and label map alike, what would come from outside the box being fill;
`Solarize_`, `Equalize_` and `Cutout_Only_BBoxes` change the image's pixels
only; `BBox_Cutout` puts one grey rectangle in one random box.

Hand-written because Model Garden (`official.vision.ops.augment`) has only
`TranslateY_Only_BBoxes` (detection_v0's; on the image alone, where this one
moves the label map too); the others come with the detection AutoAugment
policies v1-v3 (Zoph et al. 2019, "Learning Data Augmentation Strategies for
Object Detection"), written here from their released definitions: the box
crop in integer pixels, the plain op about the crop, the released
level-to-argument mappings.
"""

from official.vision.ops import augment
import tensorflow as tf

from official_selftrain.ops import affine

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


def level_to_arg(name, level):
  """Arguments of the ops Model Garden lacks, with the released mappings."""
  base = ONLY_BBOXES_GEOMETRIC.get(name) or ONLY_BBOXES_COLOUR.get(name)
  if base == 'Rotate':
    return augment._rotate_level_to_arg(level)
  if base in ('ShearX', 'ShearY'):
    return augment._shear_level_to_arg(level)
  if base in ('TranslateX', 'TranslateY'):
    return augment._translate_level_to_arg(level, _TRANSLATE_BBOX_CONST)
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
    m = affine.op_map(base, arg, ch, cw)
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
    tf.where(vacated[..., None], tf.constant(affine.GREY, image.dtype), image),
  )
  if mask_fill is not None:
    label_map = tf.where(
      inside,
      new_map,
      tf.where(vacated, tf.constant(mask_fill, label_map.dtype), label_map),
    )
  return image, label_map


def translated_from(base, arg, box_pixels, height, width):
  """Which pixels a translation by `arg` fills from inside the box: the same
  as resampling the box's region mask (nearest rounds half up), without
  resampling a whole-image mask for each box."""
  shift = tf.cast(arg, tf.float32)
  dy, dx = (shift, 0.0) if base == 'TranslateY' else (0.0, shift)
  rows = tf.floor(tf.cast(tf.range(height), tf.float32) + dy + 0.5)
  cols = tf.floor(tf.cast(tf.range(width), tf.float32) + dx + 0.5)
  y0, x0, y1, x1 = [tf.cast(v, tf.float32) for v in box_pixels]
  return _in_ranges(rows, cols, y0, x0, y1, x1)


def geometric_only_bboxes(base, arg, image, boxes, label_map, prob, mask_fill):
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
      m_box = affine.op_map(base, arg, 0.0, 0.0)
      moved = translated_from(base, arg, (y0, x0, y1, x1), height, width)
    else:
      m_box = _crop_affine(base, arg, y0, x0, y1, x1)
      moved = affine.warp(tf.cast(region, tf.uint8), m_box, 0) > 0
    new_image = affine.warp(image, m_box, affine.GREY)
    new_map = (
      affine.warp(label_map, m_box, mask_fill)
      if mask_fill is not None
      else None
    )
    return _blend_region(
      image, label_map, region, moved, mask_fill, new_image, new_map
    )

  def one_box(state, box):
    # Each box with probability prob / 3; the others cost nothing.
    return tf.cond(
      tf.random.uniform([]) < prob / 3.0,
      lambda: move(state, box),
      lambda: tuple(tf.identity(t) for t in state),
    )

  return tf.foldl(one_box, boxes, initializer=(image, label_map))


def colour_only_bboxes(base, args, image, boxes, prob):
  """Solarize, Equalize or Cutout on the crop of each box (Equalize's
  histogram and Cutout's square are the crop's own); the label map stays."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  if base == 'Cutout':
    args = tuple(args) + (affine.GREY,)

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


def bbox_cutout(image, boxes, pad_fraction):
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
    return tf.where(
      mask[..., None], tf.constant(affine.GREY, image.dtype), image
    )

  return tf.cond(tf.shape(boxes)[0] > 0, cut, lambda: tf.identity(image))


def apply(name, args, image, boxes, label_map, prob, mask_fill):
  """Box-only op `name` (of BOX_ONLY_OPS, or 'BBox_Cutout') with its `args`
  on the given boxes; returns (image, label_map)."""
  if name in ONLY_BBOXES_GEOMETRIC:
    arg = args[0] if args else None
    return geometric_only_bboxes(
      ONLY_BBOXES_GEOMETRIC[name], arg, image, boxes, label_map, prob, mask_fill
    )
  if name in ONLY_BBOXES_COLOUR:
    image = colour_only_bboxes(
      ONLY_BBOXES_COLOUR[name], args, image, boxes, prob
    )
    return image, label_map
  return bbox_cutout(image, boxes, args[0]), label_map
