"""The pseudo-label contract: how a pseudo-labelled image is written and read.

One record per image, in Model Garden's detection schema (its
`TfExampleDecoder` reads it), with the teacher's boxes, classes and
`image/object/score`. The exporter writes records with `pseudo_label_example`
down to a low export floor; the student reads them with `PseudoLabelDecoder`,
which applies the read-time threshold (the paper's 0.5). Human-labelled records
have no score and keep every box, so one decoder serves both halves of the
student's batch.
"""

from typing import Optional

import numpy as np
from official.vision.data import tf_example_builder
from official.vision.dataloaders import tf_example_decoder
import tensorflow as tf

SCORE_KEY = 'image/object/score'
# The decoded attribute of each box's soft target (1.0: a label; the teacher's
# score for a soft pseudo box), labelled onto anchors by Model Garden's
# `AnchorLabeler` as `labels['attribute_targets'][SOFT_TARGET]`.
SOFT_TARGET = 'soft_target'


def image_format(encoded: bytes) -> Optional[str]:
  """The format of encoded image bytes from their signature (None: unknown,
  left to Model Garden's builder to find by decoding)."""
  if encoded[:2] == b'\xff\xd8':
    return 'JPEG'
  if encoded[:8] == b'\x89PNG\r\n\x1a\n':
    return 'PNG'
  if encoded[:6] in (b'GIF87a', b'GIF89a'):
    return 'GIF'
  if encoded[:2] == b'BM':
    return 'BMP'
  return None


def _image_builder(source_id, encoded, height, width):
  """A builder holding the pool image's original bytes and metadata."""
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
    encoded,
    # Given in full, so the builder does not decode the image for metadata.
    image_format=image_format(encoded),
    height=height,
    width=width,
    num_channels=3,
    image_source_id=source_id,
  )
  return builder


def pseudo_label_example(
  source_id: bytes,
  encoded: bytes,
  height: int,
  width: int,
  boxes: np.ndarray,
  classes: np.ndarray,
  scores: np.ndarray,
) -> tf.train.Example:
  """One pseudo-labelled image in Model Garden's detection schema + scores."""
  builder = _image_builder(source_id, encoded, height, width)
  builder.add_boxes_feature(
    xmins=boxes[:, 1].tolist(),
    xmaxs=boxes[:, 3].tolist(),
    ymins=boxes[:, 0].tolist(),
    ymaxs=boxes[:, 2].tolist(),
    labels=classes.tolist(),
  )
  builder.add_floats_feature(SCORE_KEY, scores.tolist())
  areas = (
    (boxes[:, 2] - boxes[:, 0]) * height * (boxes[:, 3] - boxes[:, 1]) * width
  )
  builder.add_floats_feature('image/object/area', areas.tolist())
  builder.add_ints_feature('image/object/is_crowd', [0] * len(classes))
  return builder.example


def segmentation_pseudo_label_example(
  source_id: bytes,
  encoded: bytes,
  height: int,
  width: int,
  label_map: np.ndarray,
) -> tf.train.Example:
  """One pseudo-labelled image in Model Garden's segmentation schema: the
  [H, W] uint8 class map (255: ignored) PNG-encoded beside the image."""
  builder = _image_builder(source_id, encoded, height, width)
  builder.add_semantic_mask_matrix_feature(label_map[..., None])
  return builder.example


class PseudoLabelDecoder(tf_example_decoder.TfExampleDecoder):
  """Model Garden's decoder, applying the read-time threshold to pseudo boxes.

  Boxes scored >= `score_threshold` are labels. With `ignore_floor`, boxes
  scored in [ignore_floor, score_threshold) become ignore regions (label
  `ignore_label`): the anchors they match are neither positive nor negative
  (see `DetectionTask.detection_losses`), so objects the teacher half-saw are
  not taught as background. With `soft_floor`, boxes scored in
  [soft_floor, score_threshold) stay boxes of their class, and every box gets
  the attribute `SOFT_TARGET`: its score there, 1.0 at or above the threshold
  (the student's loss takes it as the class target). Below the floor (or
  without one) boxes are dropped. Human-labelled examples carry no
  `image/object/score` and keep every box (soft target 1.0), so one decoder
  serves both halves of the batch.
  """

  def __init__(
    self,
    score_threshold: float,
    ignore_floor: Optional[float] = None,
    ignore_label: int = 0,
    soft_floor: Optional[float] = None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if ignore_floor is not None and soft_floor is not None:
      raise ValueError('An ignore floor and a soft floor exclude each other.')
    self._score_threshold = score_threshold
    self._ignore_floor = ignore_floor
    self._ignore_label = ignore_label
    self._soft_floor = soft_floor

  def decode(self, serialized_example):
    decoded = super().decode(serialized_example)
    scores = tf.io.parse_single_example(
      serialized_example, {SCORE_KEY: tf.io.VarLenFeature(tf.float32)}
    )[SCORE_KEY]
    scores = tf.sparse.to_dense(scores)
    num_boxes = tf.shape(decoded['groundtruth_classes'])[0]
    scores = tf.cond(
      tf.equal(tf.size(scores), 0),
      lambda: tf.ones([num_boxes], tf.float32),
      lambda: scores,
    )
    floor = next(
      f
      for f in (self._ignore_floor, self._soft_floor, self._score_threshold)
      if f is not None
    )
    keep = scores >= floor
    for key in (
      'groundtruth_classes',
      'groundtruth_is_crowd',
      'groundtruth_area',
      'groundtruth_boxes',
    ):
      decoded[key] = tf.boolean_mask(decoded[key], keep)
    if self._ignore_floor is not None:
      uncertain = tf.boolean_mask(scores, keep) < self._score_threshold
      classes = decoded['groundtruth_classes']
      decoded['groundtruth_classes'] = tf.where(
        uncertain, tf.cast(self._ignore_label, classes.dtype), classes
      )
    if self._soft_floor is not None:
      kept = tf.boolean_mask(scores, keep)
      target = tf.where(kept < self._score_threshold, kept, 1.0)
      decoded['groundtruth_attributes'] = {SOFT_TARGET: target[:, None]}
    return decoded
