"""The segmentation teacher: multi-scale inference, per-pixel pseudo labels.

PAPER.md, "The recipe" for PASCAL: the teacher labels each unlabelled image at
several scales (default 0.5, 0.75, 1, 1.25, 1.5, 1.75; optionally flipped),
its class probabilities are averaged at the teacher's input size, each pixel
takes the argmax, and pixels whose top probability is below the threshold
(0.5) get the ignore label 255. The map is resized to the image's own size and
PNG-encoded into `image/segmentation/class/encoded` (`schema`).

Each image is first brought to the teacher's input canvas as Model Garden's
eval parser does (aspect kept, padded bottom-right). At scale s the canvas is
resized by s and padded to a multiple of 2**max_level: Model Garden's
segmentation head sums its levels at static sizes, so each padded size gets
its own model, all restored from the one checkpoint. The logits go back to the
canvas, and are averaged there as probabilities.
"""

import math
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence

from absl import logging
import numpy as np
from official.core import config_definitions as cfg
from official.vision.modeling import factory
from official.vision.ops import preprocess_ops
import tensorflow as tf
import tf_keras

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.configs import segmentation as segmentation_cfg
from official_selftrain.pseudo_labels import manifest
from official_selftrain.pseudo_labels import schema
from official_selftrain.pseudo_labels import teacher as teacher_lib

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def load_experiment_config(params: Dict[str, Any]) -> cfg.ExperimentConfig:
  """A segmentation run's ExperimentConfig from its params.yaml dict."""
  task = segmentation_cfg.SegmentationTaskConfig()
  task.override(detection_cfg.fields_of(task, params['task']), is_strict=True)
  config = cfg.ExperimentConfig(task=task)
  config.override({'runtime': params.get('runtime', {})}, is_strict=False)
  return config


def _build(model_config, size: List[int]) -> tf_keras.Model:
  config = model_config.replace(input_size=[*size, 3])
  return factory.build_segmentation_model(
    input_specs=tf_keras.layers.InputSpec(shape=[None, *size, 3]),
    model_config=config,
  )


def window_starts(length: int, window: int) -> List[int]:
  """Starts of `window`-long windows covering [0, length), first at 0, last
  at length - window, neighbours overlapping by at least a third."""
  if length <= window:
    return [0]
  count = math.ceil((length - window) / (window * 2 / 3)) + 1
  return [round(i * (length - window) / (count - 1)) for i in range(count)]


class SegmentationTeacher:
  """Restores a segmentation model from a model_dir and labels images.

  Offers what `shard_writer` asks of a teacher (as `teacher.Teacher`):
  `preprocess`, `predict`, `host_keys`, `new_stats`, `label_image`,
  `describe`.
  """

  host_keys = ('image_info', 'gt_segmentation')

  def __init__(
    self,
    model_dir: str,
    checkpoint: Optional[str] = None,
    scales: Sequence[float] = PAPER_SCALES,
    flip: bool = False,
    threshold: float = 0.5,
    sliding_window: bool = False,
    config: Optional[cfg.ExperimentConfig] = None,
  ):
    """Builds one model per padded scale size and restores the checkpoint.

    Args:
      model_dir: the teacher's training directory.
      checkpoint: a specific checkpoint (default: the latest in model_dir).
      scales: inference scales, relative to the teacher's input size.
      flip: also label each scale's horizontal flip.
      threshold: pixels whose averaged top probability is below it get 255.
      sliding_window: a scaled canvas larger than the input is seen through
        input-size windows (overlapping, logits averaged) instead of whole,
        padded: the model then sees canvases of the size it was trained on
        (a scale-jitter crop), whose top level keeps its extent.
      config: the teacher's config (default: model_dir's params.yaml); with
        it and `checkpoint`, model_dir may be None.
    """
    if not scales or min(scales) <= 0:
      raise ValueError(f'scales={scales}: need positive scales.')
    self.config = config or load_experiment_config(
      teacher_lib.read_params(model_dir)
    )
    self.checkpoint = teacher_lib.latest_checkpoint(model_dir, checkpoint)
    model_config = self.config.task.model
    self.input_size = list(model_config.input_size[:2])
    self.num_classes = model_config.num_classes
    self.ignore_label = self.config.task.losses.ignore_label
    self.scales, self.flip, self.threshold = tuple(scales), flip, threshold
    self.sliding_window = sliding_window
    stride = 2**model_config.max_level
    self._sizes = {
      s: [
        d if sliding_window else math.ceil(s * d / stride) * stride
        for d in self.input_size
      ]
      for s in self.scales
    }
    self._models = {}
    for size in {tuple(v) for v in self._sizes.values()}:
      self._models[size] = _build(model_config, list(size))
      self.step = teacher_lib.restore(self._models[size], self.checkpoint)
    logging.info(
      'Segmentation teacher: %s (step %d), input %s, scales %s, flip %s',
      self.checkpoint,
      self.step,
      self.input_size,
      self.scales,
      self.flip,
    )

  @property
  def model(self) -> tf_keras.Model:
    """The model, where every scale runs at one padded size (as at scale 1
    alone, for serving)."""
    if len(self._models) != 1:
      raise ValueError(f'{len(self._models)} models, one per padded size.')
    return next(iter(self._models.values()))

  def preprocess(self, image: tf.Tensor):
    """uint8 [H, W, 3] -> (the input canvas, image_info), no augmentation."""
    image = preprocess_ops.normalize_image(tf.cast(image, tf.uint8))
    return preprocess_ops.resize_and_crop_image(
      image,
      self.input_size,
      padded_size=self.input_size,
      aug_scale_min=1.0,
      aug_scale_max=1.0,
    )

  def _logits(self, x, size):
    """Logits of the canvas x padded to `size`, at that size."""
    x = tf.image.pad_to_bounding_box(x, 0, 0, *size)
    logits = self._models[tuple(size)](x, training=False)['logits']
    return tf.image.resize(tf.cast(logits, tf.float32), size, method='bilinear')

  def _window_logits(self, x, scaled):
    """Logits of the canvas x ([B, *scaled, 3]) from input-size windows,
    averaged where they overlap (at least the input size, padded)."""
    window = list(self.input_size)
    size = [max(s, w) for s, w in zip(scaled, window)]
    x = tf.image.pad_to_bounding_box(x, 0, 0, *size)
    total, count = 0.0, 0.0
    for y0 in window_starts(size[0], window[0]):
      for x0 in window_starts(size[1], window[1]):
        tile = x[:, y0 : y0 + window[0], x0 : x0 + window[1]]
        pad = [
          [0, 0],
          [y0, size[0] - y0 - window[0]],
          [x0, size[1] - x0 - window[1]],
          [0, 0],
        ]
        total += tf.pad(self._logits(tile, window), pad)
        count += tf.pad(tf.ones([1, *window, 1]), pad)
    return total / count

  def _probabilities(self, images, scale, flip):
    """Class probabilities on the canvas from the canvas seen at `scale`."""
    height, width = self.input_size
    scaled = [round(scale * height), round(scale * width)]
    x = tf.image.resize(images, scaled, method='bilinear')
    if flip:
      x = tf.image.flip_left_right(x)
    if self.sliding_window:
      logits = self._window_logits(x, scaled)
    else:
      logits = self._logits(x, self._sizes[scale])
    logits = logits[:, : scaled[0], : scaled[1]]
    if flip:
      logits = tf.image.flip_left_right(logits)
    logits = tf.image.resize(logits, self.input_size, method='bilinear')
    return tf.nn.softmax(logits)

  @tf.function
  def predict(self, images: tf.Tensor, image_info: tf.Tensor):
    """{'probabilities': [B, H, W, C]}: averaged over scales (and flips)."""
    del image_info  # the valid region is cut on the host (`label_image`)
    total, count = 0.0, 0
    for scale in self.scales:
      for flip in (False, True) if self.flip else (False,):
        total += self._probabilities(images, scale, flip)
        count += 1
    return {'probabilities': total / count}

  def label_map(self, probabilities, image_info, height, width) -> np.ndarray:
    """[H, W] uint8 labels of one image: its canvas region resized to its
    size, argmax, 255 where the top probability is below the threshold."""
    valid = np.round(image_info[1]).astype(int)
    region = probabilities[: valid[0], : valid[1]]
    region = tf.image.resize(region, [height, width], method='bilinear')
    region = region.numpy()
    labels = region.argmax(-1).astype(np.uint8)
    labels[region.max(-1) < self.threshold] = self.ignore_label
    return labels

  def new_stats(self, read_threshold: float) -> manifest.SegmentationStats:
    del read_threshold  # the threshold is applied here, when labelling
    return manifest.SegmentationStats(self.num_classes, self.ignore_label)

  def label_image(self, out, host, i, stats) -> tf.train.Example:
    """The record of image i of a labelled batch; adds it to `stats`."""
    height, width = int(host['height'][i]), int(host['width'][i])
    labels = self.label_map(
      out['probabilities'][i], host['image_info'][i], height, width
    )
    truth = None
    if host['gt_segmentation'][i]:
      truth = tf.io.decode_png(host['gt_segmentation'][i]).numpy()[..., 0]
    stats.add(labels, truth)
    return schema.segmentation_pseudo_label_example(
      host['source_id'][i], host['encoded'][i], height, width, labels
    )

  def describe(self) -> Dict[str, Any]:
    return {
      'task': 'segmentation',
      'scales': list(self.scales),
      'flip': self.flip,
      'sliding_window': self.sliding_window,
      'pixel_threshold': self.threshold,
      'teacher_input_size': self.input_size,
    }
