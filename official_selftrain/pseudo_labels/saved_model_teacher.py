"""A SavedModel as the pseudo-labeller's teacher.

A SavedModel written by `tools/export_saved_model.py` labels a pool as the
checkpoint it was exported from does: its `serving_default` signature takes
each un-augmented image as it is (the served model preprocesses it exactly as
the checkpoint teacher does), boxes come back in the image's pixels and are
normalised here, label maps come back at the image's size. Records, stats and
the manifest are the checkpoint teachers' (`teacher.Teacher.label_image`,
`segmentation_teacher.SegmentationTeacher.label_image`).

Batches whose images share one size go to the model in one call; a batch of
mixed sizes goes one image at a time (the uint8 signature takes one size).
Multi-scale segmentation labels need the model at several input sizes, which a
served model (resized to its one input) does not offer: a served segmenter
labels at scale 1, optionally flipped.
"""

from typing import Any
from typing import Dict
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from official_selftrain.pseudo_labels import manifest
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import export as serving_export


def is_saved_model(path: str) -> bool:
  return tf.io.gfile.isdir(path) and tf.saved_model.contains_saved_model(path)


class _Served:
  """The SavedModel's uint8 signature, called on padded batches."""

  def __init__(self, path: str, task: str):
    self.info = serving_export.read_info(path)
    if self.info['task'] != task:
      raise ValueError(f'{path}: a {self.info["task"]} SavedModel, not {task}.')
    self.checkpoint = path  # what the manifest names as the teacher's weights
    self.step = self.info['step']
    self.input_size = self.info['input_size']
    self._signature = tf.saved_model.load(path).signatures['serving_default']

  def preprocess(self, image: tf.Tensor):
    """uint8 [H, W, 3] -> (itself, image_info): the served model resizes."""
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    info = tf.stack([size, size, tf.ones([2]), tf.zeros([2])])
    return image, info

  def _outputs(self, images: tf.Tensor, image_info: tf.Tensor, flip=False):
    """A list of per-image output dicts (numpy), in order; each image cut
    from its padding (and flipped left-right if `flip`)."""
    sizes = np.round(image_info[:, 0, :].numpy()).astype(int)
    if (sizes == sizes[0]).all():
      groups = [(slice(None), sizes[0])]
    else:
      groups = [(slice(i, i + 1), size) for i, size in enumerate(sizes)]
    outputs = []
    for rows, (height, width) in groups:
      batch = images[rows, :height, :width]
      if flip:
        batch = tf.image.flip_left_right(batch)
      out = {k: v.numpy() for k, v in self._signature(inputs=batch).items()}
      outputs.extend(
        {k: v[i] for k, v in out.items()} for i in range(len(batch))
      )
    return outputs


class SavedModelTeacher(_Served, teacher_lib.Teacher):
  """A served detector; what `shard_writer` asks of a teacher."""

  def __init__(
    self,
    path: str,
    score_floor: float = 0.1,
    nms_iou_threshold: float = 0.5,
    max_detections: int = 100,
    **unused,
  ):
    """Loads the SavedModel; its NMS was fixed at export (`nms` in its
    info), `score_floor` drops boxes scoring below it."""
    del unused  # pre_nms_top_k, nms_version: fixed at export too
    _Served.__init__(self, path, 'detection')
    served = self.info['nms']
    if score_floor < served['pre_nms_score_threshold']:
      raise ValueError(
        f'{path} serves boxes scoring {served["pre_nms_score_threshold"]} or '
        f'more; an export floor of {score_floor} needs a SavedModel exported '
        f'with --score_threshold={score_floor}.'
      )
    for key, value in (
      ('nms_iou_threshold', nms_iou_threshold),
      ('max_num_detections', max_detections),
    ):
      if served[key] != value:
        logging.warning(
          'SavedModel teacher %s: %s is %s as exported, not %s.',
          path,
          key,
          served[key],
          value,
        )
    self.nms = dict(served, pre_nms_score_threshold=score_floor)
    self._floor = score_floor

  def new_stats(self, read_threshold: float) -> manifest.ShardStats:
    return manifest.ShardStats(read_threshold, self.info['num_classes'])

  def describe(self) -> Dict[str, Any]:
    return dict(super().describe(), saved_model=self.checkpoint)

  def predict(self, images, image_info) -> Dict[str, np.ndarray]:
    """Detections with boxes normalised to the image, scores >= the floor
    (tensors, as the checkpoint teacher's)."""
    out = self._outputs(images, image_info)
    sizes = image_info[:, 0, :].numpy()
    boxes = np.stack([o['detection_boxes'] for o in out])
    boxes = boxes / np.tile(sizes, [1, 2])[:, None, :]
    scores = np.stack([o['detection_scores'] for o in out])
    kept = np.minimum(
      (scores >= self._floor).sum(-1),
      [o['num_detections'] for o in out],
    )
    classes = np.stack([o['detection_classes'] for o in out])
    return {
      'boxes': tf.constant(np.clip(boxes, 0.0, 1.0), tf.float32),
      'scores': tf.constant(scores),
      'classes': tf.constant(classes, tf.int64),
      'num_detections': tf.constant(kept, tf.int32),
    }


class SavedModelSegmentationTeacher(
  _Served, segmentation_teacher.SegmentationTeacher
):
  """A served segmenter at scale 1 (and its flip)."""

  def __init__(
    self,
    path: str,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    threshold: float = 0.5,
    sliding_window: bool = False,
  ):
    if tuple(scales) != (1.0,) or sliding_window:
      raise ValueError(
        f'{path}: a SavedModel segmenter labels at scale 1 (its signature '
        'resizes every image to its one input size): pass --scales=1 and no '
        '--sliding_window, or label with the checkpoint it was exported from.'
      )
    _Served.__init__(self, path, 'segmentation')
    self.scales, self.flip, self.threshold = (1.0,), flip, threshold
    self.sliding_window = False
    self.num_classes = self.info['num_classes']
    self.ignore_label = self.info['ignore_label']

  def describe(self) -> Dict[str, Any]:
    return dict(super().describe(), saved_model=self.checkpoint)

  def _probabilities(self, images, image_info, flip: bool) -> np.ndarray:
    out = self._outputs(images, image_info, flip)
    largest = np.max([o['probabilities'].shape[:2] for o in out], axis=0)
    batch = np.zeros([len(out), *largest, self.num_classes], np.float32)
    for i, o in enumerate(out):
      height, width = o['image_size']
      p = o['probabilities'][:height, :width]
      batch[i, :height, :width] = p[:, ::-1] if flip else p
    return batch

  def predict(self, images, image_info) -> Dict[str, np.ndarray]:
    """{'probabilities': [B, H, W, C]} at each image's size (padded)."""
    flips = (False, True) if self.flip else (False,)
    total = sum(self._probabilities(images, image_info, f) for f in flips)
    return {'probabilities': tf.constant(total / len(flips))}
