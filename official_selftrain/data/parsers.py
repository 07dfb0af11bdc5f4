"""Model Garden's RetinaNet and segmentation parsers, with Augment-S1..S4.

Both are Model Garden's parsers (`official.vision.dataloaders`), with the
AutoAugment / RandAugment step done by `official_selftrain.ops.joint_augment`
and two rules Model Garden lacks:
  - detection: a box left with less than `min_visible` of its area in the
    frame, by a geometric op or by the jitter crop, is dropped (Model Garden
    clips it and trains on the sliver);
  - segmentation: the label map follows every geometric op of the policy,
    nearest-neighbour, with the ignore label where nothing maps (Model
    Garden's segmentation parser has no AutoAugment / RandAugment).
Flip, scale jitter, crop / pad, normalisation and anchor labelling stay Model
Garden's, in its order: policy on the uint8 image, normalise, flip, jitter.
Human- and pseudo-labelled examples go through the same parser.
"""

from typing import Optional
from typing import Tuple

from official.vision.configs import common
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import segmentation_input
from official.vision.ops import preprocess_ops
import tensorflow as tf

from official_selftrain.ops import augment_policies
from official_selftrain.ops import joint_augment

# Key under which the segmentation parser tells its image step to augment.
_TRAINING = '_official_selftrain_training'


def build_augmenter(
  aug_type: Optional[common.Augmentation],
  min_visible: float = 0.25,
  reference_size: Optional[float] = 640,
):
  """The joint (image, boxes, label map) augmenter for Model Garden's config.

  Args:
    aug_type: Model Garden's `common.Augmentation` ('autoaug' or 'randaug'),
      or None for no policy beyond flip and jitter.
    min_visible: drop boxes left with less of their area in frame.
    reference_size: image long side the pixel constants are meant for (None:
      use them as pixels whatever the image size, as Model Garden).

  Returns:
    A `JointAutoAugment`, `JointRandAugment`, or None.

  Raises:
    ValueError: for an augmentation type or setting not supported here.
  """
  if aug_type is None or aug_type.type is None:
    return None
  if aug_type.type == 'autoaug':
    config = aug_type.autoaug
    return joint_augment.JointAutoAugment(
      augmentation_name=config.augmentation_name,
      cutout_const=config.cutout_const,
      translate_const=config.translate_const,
      min_visible=min_visible,
      reference_size=reference_size,
    )
  if aug_type.type == 'randaug':
    config = aug_type.randaug
    if config.magnitude_std:
      raise ValueError(
        'aug_type.randaug.magnitude_std is not supported by the joint '
        f'augmenter (got {config.magnitude_std}); leave it 0.'
      )
    return joint_augment.JointRandAugment(
      magnitude=config.magnitude,
      num_layers=config.num_layers,
      cutout_const=config.cutout_const,
      translate_const=config.translate_const,
      min_visible=min_visible,
      reference_size=reference_size,
      exclude_ops=config.exclude_ops,
      prob_to_apply=config.prob_to_apply,
    )
  raise ValueError(
    f'aug_type.type={aug_type.type!r} is not supported here; use '
    "'autoaug' (Augment-S2/S3) or 'randaug' (Augment-S4)."
  )


def augment_example(
  policy: augment_policies.AugmentPolicy,
  image: tf.Tensor,
  boxes: tf.Tensor,
  label_map: tf.Tensor,
  output_size: Tuple[int, int],
  mask_fill: int = 255,
):
  """A policy's training augmentation on one image, as the parsers do it.

  The same steps in the same order (policy on the uint8 image, flip, jitter
  resize + crop / pad, sliver rule), with the label map carried along and the
  image kept in uint8 (padding in the mean colour, what the normalised 0
  stands for): for pictures (`tools/visualize.py --augment`) and tests.

  Args:
    policy: from `augment_policies.augment_policy`.
    image: uint8 [H, W, 3].
    boxes: [N, 4] normalised (ymin, xmin, ymax, xmax).
    label_map: [H, W] semantic classes or instance ids.
    output_size: (height, width) after the jitter crop.
    mask_fill: label for pixels nothing maps to (255 semantic, 0 instance).

  Returns:
    (image uint8, boxes normalised to the output, keep [N] bool, label_map).
  """
  joint = build_augmenter(
    policy.aug_type, policy.min_visible, policy.reference_size
  )
  keep = tf.ones(tf.shape(boxes)[:1], tf.bool)
  if joint is not None:
    image, boxes, keep, label_map = joint(image, boxes, label_map, mask_fill)
  return joint_augment.flip_and_jitter(
    image,
    boxes,
    keep,
    label_map,
    output_size,
    *policy.scale_jitter,
    mask_fill=mask_fill,
    hflip=policy.hflip,
    min_visible=policy.min_visible,
    image_fill=preprocess_ops.MEAN_RGB,
  )


_PER_OBJECT = (
  'groundtruth_classes',
  'groundtruth_boxes',
  'groundtruth_is_crowd',
  'groundtruth_area',
  'groundtruth_instance_masks',
  'groundtruth_instance_masks_png',
)


def drop_crowds(data):
  """The decoded example without its crowd (`is_crowd`) objects."""
  is_crowd = data['groundtruth_is_crowd']
  count = tf.shape(data['groundtruth_classes'])[0]
  # No is_crowd feature at all: nothing is a crowd (as Model Garden).
  is_crowd = tf.cond(
    tf.size(is_crowd) > 0,
    lambda: tf.cast(is_crowd, tf.bool),
    lambda: tf.zeros([count], tf.bool),
  )
  keep = tf.where(tf.logical_not(is_crowd))[:, 0]
  data = {**data, 'groundtruth_is_crowd': is_crowd}
  for key in _PER_OBJECT:
    if key in data:
      data[key] = tf.gather(data[key], keep)
  if data.get('groundtruth_attributes'):
    data['groundtruth_attributes'] = {
      k: tf.gather(v, keep) for k, v in data['groundtruth_attributes'].items()
    }
  return data


class RetinaNetParser(retinanet_input.Parser):
  """Model Garden's RetinaNet parser with the joint policy and sliver rule."""

  def __init__(
    self,
    *args,
    aug_type: Optional[common.Augmentation] = None,
    min_visible: float = 0.25,
    augment_reference_size: Optional[float] = 640,
    **kwargs,
  ):
    """See `retinanet_input.Parser`; the extra arguments as `build_augmenter`.

    Raises:
      ValueError: for `resize_first=True` (Model Garden's resize-first path
        scales normalised boxes as pixels) or an unsupported `aug_type`.
    """
    if kwargs.get('resize_first'):
      raise ValueError('resize_first=True is not supported by this parser.')
    super().__init__(*args, aug_type=None, **kwargs)
    # Crowd annotations are dropped here, before Model Garden's train parsing
    # (see `_parse_train_data`), not by it.
    self._drop_crowds = self._skip_crowd_during_training
    self._skip_crowd_during_training = False
    self._min_visible = min_visible
    # Model Garden calls `_augmenter.distort_with_boxes(image, boxes)` on the
    # uint8 image and normalised boxes; dropped boxes come back all zero and
    # its non-empty filter removes them with their classes.
    self._augmenter = build_augmenter(
      aug_type, min_visible, augment_reference_size
    )

  def _parse_train_data(self, data, *args, **kwargs):
    """Model Garden's, with crowd annotations dropped first.

    Model Garden drops them under `tf.control_dependencies` on the decoded
    tensors; under op determinism (a seeded run) TF's rewrite of the parallel
    map loses that control input and the iterator does not start
    ("input[0] == '^args_3', is not found"). The same gather without it.
    """
    if self._drop_crowds:
      data = drop_crowds(data)
    return super()._parse_train_data(data, *args, **kwargs)

  def _resize_and_crop_image_and_boxes(self, image, boxes, pad=True):
    """Model Garden's jitter resize + crop; boxes the crop cuts to less than
    `min_visible` of their area become all zero (dropped)."""
    padded_size = None
    if pad:
      padded_size = preprocess_ops.compute_padded_size(
        self._output_size, 2**self._max_level
      )
    image, image_info = preprocess_ops.resize_and_crop_image(
      image,
      self._output_size,
      padded_size=padded_size,
      aug_scale_min=self._aug_scale_min,
      aug_scale_max=self._aug_scale_max,
      keep_aspect_ratio=self._keep_aspect_ratio,
    )
    boxes, keep = joint_augment.crop_boxes(boxes, image_info, self._min_visible)
    return image, tf.where(keep[:, None], boxes, 0.0), image_info


class SegmentationParser(segmentation_input.Parser):
  """Model Garden's segmentation parser with the joint policy on image+map.

  The policy runs on the uint8 image and its label map before Model Garden
  normalises the image; its flip, jitter and ignore-label padding follow.
  """

  def __init__(
    self,
    *args,
    aug_type: Optional[common.Augmentation] = None,
    augment_reference_size: Optional[float] = 640,
    **kwargs,
  ):
    super().__init__(*args, **kwargs)
    self._joint = build_augmenter(
      aug_type, reference_size=augment_reference_size
    )
    if self._joint is not None:
      if self._additional_dense_features:
        raise ValueError(
          'aug_type with additional_dense_features is not supported: the '
          'policy would move the image but not the extra features.'
        )
      if self._gt_is_matting_map:
        raise ValueError(
          'aug_type with gt_is_matting_map is not supported: its fill '
          '(the ignore label) would read as foreground.'
        )
      if not 0 <= self._ignore_label <= 255:
        raise ValueError(
          f'ignore_label={self._ignore_label} must be a uint8 (0-255) to '
          'fill label maps under aug_type.'
        )
      if self._image_feature.num_channels != 3:
        raise ValueError(
          'aug_type needs RGB images (image_feature.num_channels=3), got '
          f'{self._image_feature.num_channels}.'
        )

  def _parse_train_data(self, data):
    return super()._parse_train_data({**data, _TRAINING: True})

  def _prepare_image_and_label(self, data):
    if self._joint is None or not data.get(_TRAINING):
      return super()._prepare_image_and_label(data)
    height, width = data['image/height'], data['image/width']
    label = tf.io.decode_image(
      data['image/segmentation/class/encoded'], channels=1
    )
    label = tf.reshape(label, (height, width))
    channels = self._image_feature.num_channels
    image = tf.io.decode_image(
      data[self._image_feature.feature_name], channels=channels, dtype=tf.uint8
    )
    image = tf.reshape(image, (height, width, channels))
    image, _, _, label = self._joint(
      image,
      tf.zeros([0, 4]),
      label_map=label,
      mask_fill=self._ignore_label,
    )
    # From here as Model Garden's `_prepare_image_and_label`.
    image = preprocess_ops.normalize_image(
      image,
      [mean / 255.0 for mean in self._image_feature.mean],
      [stddev / 255.0 for stddev in self._image_feature.stddev],
    )
    label = tf.cast(label, tf.float32)[..., None]
    if not self._preserve_aspect_ratio:
      image = tf.image.resize(image, self._output_size, method='bilinear')
      label = tf.image.resize(label, self._output_size, method='nearest')
    return image, tf.reshape(label[..., 0], [1, tf.shape(label)[0], -1])
