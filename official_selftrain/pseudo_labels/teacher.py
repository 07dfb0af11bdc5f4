"""The teacher: a trained detector restored for inference on un-augmented images.

PAPER.md, "The recipe", step 2: the teacher sees un-augmented images at its eval
resolution. Preprocessing and box decoding are Model Garden's eval path
(`preprocess_ops.resize_and_crop_image` at scale 1, anchors from
`anchor.build_anchor_generator`, coordinates normalised as its serving module
does), so the teacher labels the pool exactly as it is evaluated.
"""

import os
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from absl import logging
from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.modeling import factory
from official.vision.ops import anchor
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops
import tensorflow as tf
import tf_keras

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.ops import mixed_precision_nms
from official_selftrain.pseudo_labels import box_fusion
from official_selftrain.pseudo_labels import manifest
from official_selftrain.pseudo_labels import schema


class NoCheckpointError(FileNotFoundError):
  """The teacher directory holds no checkpoint."""


def read_params(model_dir: str) -> Dict[str, Any]:
  """The `params.yaml` a training run wrote into its model_dir, as a dict."""
  path = os.path.join(model_dir, 'params.yaml')
  if not tf.io.gfile.exists(path):
    raise NoCheckpointError(
      f'{path} not found: {model_dir!r} is not a model_dir written by '
      'official_selftrain.train (or training never started there).'
    )
  return hyperparams.read_yaml_to_params_dict(path).as_dict()


def is_segmentation(params: Dict[str, Any]) -> bool:
  """Whether a run's params (`read_params`) are a segmentation task's."""
  return 'ignore_label' in params['task'].get('losses', {})


def load_experiment_config(model_dir: str) -> cfg.ExperimentConfig:
  """Reads the `params.yaml` a training run wrote into its model_dir.

  A student's task has self-training fields a detection task lacks; the
  model, data and runtime sections are what the teacher needs.
  """
  params = read_params(model_dir)
  config = cfg.ExperimentConfig(
    task=detection_cfg.supervised_task_config(params['task'])
  )
  config.override({'runtime': params.get('runtime', {})}, is_strict=False)
  return config


def latest_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
  path = checkpoint or tf.train.latest_checkpoint(model_dir)
  if not path:
    raise NoCheckpointError(
      f'No checkpoint in teacher directory {model_dir!r}: train the teacher '
      'first (python -m official_selftrain.train --model_dir=...).'
    )
  return path


def _configure_nms(
  generator: retinanet_cfg.DetectionGenerator,
  score_floor: float,
  nms_iou_threshold: float,
  max_detections: int,
  pre_nms_top_k: Optional[int],
  nms_version: Optional[str],
) -> Dict[str, Any]:
  """Sets the teacher's NMS in `generator`; returns its settings."""
  generator.pre_nms_score_threshold = score_floor
  generator.nms_iou_threshold = nms_iou_threshold
  generator.max_num_detections = max_detections
  if pre_nms_top_k is not None:
    generator.pre_nms_top_k = pre_nms_top_k
  if nms_version is not None:
    generator.nms_version = nms_version
  return generator.as_dict()


def _padded_size(input_size: List[int], max_level: int, pad: bool) -> List[int]:
  """The model's input size: `input_size`, padded as the eval parser pads."""
  if not pad:
    return input_size
  return preprocess_ops.compute_padded_size(input_size, 2**max_level)


def _build_model(
  model_config: retinanet_cfg.RetinaNet, padded_size: List[int]
) -> tf_keras.Model:
  model = factory.build_retinanet(
    input_specs=tf_keras.layers.InputSpec(
      shape=[None] + list(padded_size) + [3]
    ),
    model_config=model_config,
  )
  # Inside a pipeline trained under mixed_bfloat16 the policy is still set.
  return mixed_precision_nms.float32_nms(model, model_config)


def restore(model: tf_keras.Model, checkpoint: str) -> int:
  """Restores `model` from `checkpoint`; returns the checkpoint's step."""
  # The trainer saves the model's modules at the checkpoint's root too.
  status = tf.train.Checkpoint(**model.checkpoint_items).read(checkpoint)
  status.expect_partial().assert_existing_objects_matched()
  status.assert_nontrivial_match()
  return int(
    tf.train.load_checkpoint(checkpoint).get_tensor(
      'global_step/.ATTRIBUTES/VARIABLE_VALUE'
    )
  )


def _anchors(
  model_config: retinanet_cfg.RetinaNet, padded_size: List[int]
) -> Dict[str, tf.Tensor]:
  """The anchor boxes of every level, for one image of `padded_size`."""
  return anchor.build_anchor_generator(
    min_level=model_config.min_level,
    max_level=model_config.max_level,
    num_scales=model_config.anchor.num_scales,
    aspect_ratios=model_config.anchor.aspect_ratios,
    anchor_size=model_config.anchor.anchor_size,
  )(image_size=padded_size)


class Teacher:
  """Restores a RetinaNet from a model_dir and labels batches of images.

  Attributes:
    config: the teacher's ExperimentConfig (from its params.yaml).
    checkpoint: path of the restored checkpoint.
    step: its training step.
  """

  def __init__(
    self,
    model_dir: str,
    checkpoint: Optional[str] = None,
    score_floor: float = 0.1,
    nms_iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: Optional[int] = None,
    nms_version: Optional[str] = None,
    config: Optional[cfg.ExperimentConfig] = None,
    flip: bool = False,
  ):
    """Builds the model and restores the checkpoint.

    Args:
      model_dir: the teacher's training directory.
      checkpoint: a specific checkpoint (default: the latest in model_dir).
      score_floor: boxes below this score are dropped before NMS.
      nms_iou_threshold: NMS IoU.
      max_detections: boxes kept per image.
      pre_nms_top_k: per-level candidates before NMS (None: the teacher's).
      nms_version: Model Garden NMS version (None: the teacher's).
      config: the teacher's config (default: model_dir's params.yaml); with
        it and `checkpoint`, model_dir may be None.
      flip: also label each image mirrored left-right, and fuse the two
        views' boxes (`box_fusion.fuse`, at the NMS IoU; an option beyond
        the paper, which labels detection in one view).
    """
    self.flip = flip
    self.score_floor = score_floor
    self.config = config or load_experiment_config(model_dir)
    self.checkpoint = latest_checkpoint(model_dir, checkpoint)
    model_config = self.config.task.model
    self.nms = _configure_nms(
      model_config.detection_generator,
      score_floor=score_floor,
      nms_iou_threshold=nms_iou_threshold,
      max_detections=max_detections,
      pre_nms_top_k=pre_nms_top_k,
      nms_version=nms_version,
    )
    parser = self.config.task.validation_data.parser
    self.input_size = list(model_config.input_size[:2])
    self.padded_size = _padded_size(
      self.input_size, model_config.max_level, parser.pad
    )
    self._keep_aspect_ratio = parser.keep_aspect_ratio
    self.model = _build_model(model_config, self.padded_size)
    self.step = restore(self.model, self.checkpoint)
    self._anchors = _anchors(model_config, self.padded_size)
    logging.info(
      'Teacher: %s (step %d), input %s',
      self.checkpoint,
      self.step,
      self.input_size,
    )

  # One view unless asked (subclasses that build no model label one view).
  flip = False

  # What `label_image` reads of each image besides its id, bytes and size.
  host_keys = ('gt_boxes', 'gt_classes')

  def new_stats(self, read_threshold: float) -> manifest.ShardStats:
    return manifest.ShardStats(
      read_threshold, self.config.task.model.num_classes
    )

  def label_image(self, out, host, i, stats) -> tf.train.Example:
    """The record of image i of a labelled batch; adds it to `stats`."""
    boxes, classes, scores = self.detections(out, i)
    gt_classes = host['gt_classes'][i]
    valid = gt_classes > 0  # padded_batch pads with class 0
    stats.add(
      boxes, classes, scores, host['gt_boxes'][i][valid], gt_classes[valid]
    )
    return schema.pseudo_label_example(
      host['source_id'][i],
      host['encoded'][i],
      int(host['height'][i]),
      int(host['width'][i]),
      boxes,
      classes,
      scores,
    )

  def detections(self, out, i):
    """Image i's boxes, classes and scores in a labelled batch; the views of
    a flipping teacher fused."""
    n = out['num_detections'][i]
    if not self.flip:
      return out['boxes'][i, :n], out['classes'][i, :n], out['scores'][i, :n]
    views = [
      (
        out['boxes'][i, v, :k],
        out['classes'][i, v, :k],
        out['scores'][i, v, :k],
      )
      for v, k in enumerate(n)
    ]
    return box_fusion.fuse(
      views,
      iou_threshold=self.nms['nms_iou_threshold'],
      score_floor=self.score_floor,
      max_detections=self.nms['max_num_detections'],
    )

  def describe(self) -> Dict[str, Any]:
    """The teacher's settings, for the manifest."""
    described = {'nms': self.nms, 'teacher_input_size': self.input_size}
    if self.flip:  # absent: one view (as in labels written before the option)
      described['flip'] = True
    return described

  def preprocess(self, image: tf.Tensor):
    """uint8 [H, W, 3] -> (model input, image_info), no augmentation."""
    # As Model Garden's parser: uint8 in, scaled to [0, 1], then mean/std.
    image = preprocess_ops.normalize_image(tf.cast(image, tf.uint8))
    return preprocess_ops.resize_and_crop_image(
      image,
      self.input_size,
      padded_size=self.padded_size,
      aug_scale_min=1.0,
      aug_scale_max=1.0,
      keep_aspect_ratio=self._keep_aspect_ratio,
    )

  def _view(self, images, image_info, flipped: bool):
    """One view's detections, boxes normalised to the original image."""
    batch = tf.shape(images)[0]
    anchors = {
      k: tf.tile(v[None], [batch, 1, 1, 1]) for k, v in self._anchors.items()
    }
    image_shape = image_info[:, 1, :]
    if flipped:
      # The mirrored canvas holds the image at its right edge: clip boxes to
      # the whole canvas width, then mirror them back.
      images = tf.image.flip_left_right(images)
      width = tf.cast(tf.shape(images)[2], image_shape.dtype)
      image_shape = tf.stack(
        [image_shape[:, 0], tf.fill([batch], width)], axis=1
      )
    outputs = self.model(
      images, image_shape=image_shape, anchor_boxes=anchors, training=False
    )
    boxes = outputs['detection_boxes']
    if flipped:
      ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
      width = tf.cast(tf.shape(images)[2], boxes.dtype)
      boxes = tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)
    boxes = boxes / tf.tile(image_info[:, 2:3, :], [1, 1, 2])
    boxes = tf.clip_by_value(
      box_ops.normalize_boxes(boxes, image_info[:, 0:1, :]), 0.0, 1.0
    )
    return {
      'boxes': boxes,
      'scores': outputs['detection_scores'],
      'classes': tf.cast(outputs['detection_classes'], tf.int64),
      'num_detections': tf.cast(outputs['num_detections'], tf.int32),
    }

  @tf.function
  def predict(
    self, images: tf.Tensor, image_info: tf.Tensor
  ) -> Dict[str, tf.Tensor]:
    """Detections with boxes normalised to the original image, in [0, 1];
    with `flip`, each key holds the two views on axis 1 (`detections`
    fuses them)."""
    out = self._view(images, image_info, flipped=False)
    if not self.flip:
      return out
    mirrored = self._view(images, image_info, flipped=True)
    return {k: tf.stack([out[k], mirrored[k]], axis=1) for k in out}
