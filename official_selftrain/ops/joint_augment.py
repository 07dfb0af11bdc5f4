"""Augment-S1..S4's policies on an image, its boxes and a label map together.

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
sliver (`ops/affine.py`). Colour ops and Cutout are Model Garden's, on the
image only. The op lists, probabilities and magnitude-to-argument mappings
are Model Garden's. Model Garden ships one detection AutoAugment policy (v0);
the released v1-v3 (`ops/autoaugment_tables.py`) need box-only ops it lacks
(the plain op applied inside each box, and BBox_Cutout), written from their
released definitions (`ops/box_only_ops.py`).

A label map is an [H, W] uint8 map: semantic classes (fill 255, the ignore
label) or ids of non-overlapping instance masks (fill 0).

Pixel constants (translate and cutout sizes) are Model Garden's, which are
meant for COCO images (about 640 px on the long side); with `reference_size`
set, they scale with each image's long side / reference_size, so a 128 px
Shapes image moves as far, relative to its size, as a 640 px COCO image
(Model Garden would move it 250 px, i.e. out of frame).
"""

from typing import Optional
from typing import Sequence
from typing import Tuple

from official.vision.ops import augment
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops
import tensorflow as tf

from official_selftrain.ops import affine
from official_selftrain.ops import autoaugment_tables
from official_selftrain.ops import box_only_ops


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
    args = box_only_ops.level_to_arg(name, level)
  base = name[: -len('_BBox')] if name.endswith('_BBox') else name
  base = (
    box_only_ops.ONLY_BBOXES_GEOMETRIC.get(base)
    or box_only_ops.ONLY_BBOXES_COLOUR.get(base)
    or base
  )
  if base in ('TranslateX', 'TranslateY'):
    return (args[0] * _pixel_scale(image, reference),)
  if base == 'Cutout':
    pad = tf.cast(args[0], tf.float32) * _pixel_scale(image, reference)
    return (tf.cast(tf.round(pad), tf.int32),)  # 0: no cutout, as released
  return args


def _apply_op(name, level, prob, state, mask_fill, policy):
  """One op of a policy on (image, boxes, keep, label_map).

  `name` is an op of Model Garden's RandAugment / AutoAugment lists, or of
  the released detection policies; its `_BBox` geometric ops are done here
  with the plain op's pixel motion, its box-only ops on the kept boxes.
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
  if name in box_only_ops.BOX_ONLY_OPS or name == 'BBox_Cutout':
    kept = tf.boolean_mask(boxes, keep)
    image, label_map = box_only_ops.apply(
      name, args, image, kept, label_map, prob, mask_fill
    )
    return image, boxes, keep, label_map
  if base in affine.GEOMETRIC:
    image, boxes, visible, label_map = affine.apply(
      base, args[0], image, boxes, label_map, mask_fill, policy.min_visible
    )
    return image, boxes, keep & visible, label_map
  if base in augment.REPLACE_FUNCS:
    args = tuple(args) + ([affine.GREY] * 3,)
  return augment.NAME_TO_FUNC[base](image, *args), boxes, keep, label_map


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


class JointAutoAugment(_JointPolicy):
  """Augment-S2/S3's detection AutoAugment for (image, boxes, label map).

  The sub-policies of `detection_v0` (Model Garden's, the default) or
  `detection_v1`..`v3` (`autoaugment_tables.DETECTION_POLICIES`): one is
  drawn per image and its ops applied in turn, each with its own probability.
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
    self.policies = autoaugment_tables.detection_policy(augmentation_name)

  def _sub_policy(self, policy, state, mask_fill):
    for name, prob, level in policy:
      # A box-only op draws each box with prob / 3 itself and is always
      # called, as in the released code (Model Garden's port gates it with
      # prob first too, so its boxes are drawn with prob**2 / 3).
      gate = 1.0 if name in box_only_ops.BOX_ONLY_OPS else prob
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
  return clipped, affine.visible(full, clipped, min_visible)


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
