"""Serving modules: a trained detector or segmenter behind the signatures of
Model Garden's serving modules (uint8 images, encoded image bytes, serialized
tf.Examples).

They subclass Model Garden's `export_base.ExportModule` for its signatures and
export; two things are our own. The model is the restored one the
pseudo-labeller runs (`pseudo_labels.teacher`, `segmentation_teacher`), so a
served model labels as the teacher does. And each image of a bytes or
tf.Example batch is decoded and preprocessed to the model's input canvas on its
own, before batching: Model Garden's modules stack the decoded images first,
which fails on a batch of mixed sizes. Outputs are in each input image's own
frame: boxes in its pixels, class maps at its size.
"""

from typing import Callable
from typing import Dict
from typing import List

from official.vision.serving import export_base
import tensorflow as tf

from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import teacher as teacher_lib

# Input type -> signature name in the SavedModel.
SIGNATURES = {
  'image_tensor': 'serving_default',
  'image_bytes': 'serve_image_bytes',
  'tf_example': 'serve_examples',
}


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG / PNG / BMP / GIF bytes -> uint8 [H, W, 3] (InvalidArgument if the
  bytes are not an image)."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_example(serialized: tf.Tensor) -> tf.Tensor:
  """A serialized tf.Example's `image/encoded` -> uint8 [H, W, 3]."""
  features = tf.io.parse_single_example(
    serialized, {'image/encoded': tf.io.FixedLenFeature((), tf.string)}
  )
  return decode_image(features['image/encoded'])


class _ServingModule(export_base.ExportModule):
  """Per-image decoding and preprocessing around a restored teacher; the
  subclasses give `_outputs(model inputs, image_info)`."""

  def __init__(self, teacher, canvas: List[int], batch_size=None):
    self._teacher = teacher
    self._canvas = list(canvas)
    super().__init__(
      teacher.config,
      batch_size=batch_size,
      input_image_size=list(teacher.input_size),
      model=teacher.model,
    )

  @property
  def teacher(self):
    """The restored predictor served (`pseudo_labels` teacher classes)."""
    return self._teacher

  def _inputs(self, to_image: Callable[[tf.Tensor], tf.Tensor], elements):
    """(model inputs, image_info) of a batch; `to_image` turns each element
    into uint8 [H, W, 3], preprocessed then on its own."""
    with tf.device('cpu:0'):
      return tf.map_fn(
        lambda element: self._teacher.preprocess(to_image(element)),
        elements,
        fn_output_signature=(
          tf.TensorSpec(self._canvas + [3], tf.float32),
          tf.TensorSpec([4, 2], tf.float32),
        ),
      )

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> the outputs."""
    return self._outputs(*self._inputs(tf.identity, images))

  @tf.function
  def inference_from_image_bytes(self, inputs: tf.Tensor):
    return self._outputs(*self._inputs(decode_image, inputs))

  @tf.function
  def inference_from_tf_example(self, inputs: tf.Tensor):
    return self._outputs(*self._inputs(decode_example, inputs))


class DetectionServingModule(_ServingModule):
  """A RetinaNet: boxes [ymin, xmin, ymax, xmax] in the input image's pixels,
  classes, scores and the number of detections per image."""

  def __init__(self, teacher: teacher_lib.Teacher, batch_size=None):
    super().__init__(teacher, teacher.padded_size, batch_size)

  def _outputs(self, images, image_info) -> Dict[str, tf.Tensor]:
    out = self._teacher.predict(images, image_info)
    # The teacher's boxes are normalised to the original image.
    size = tf.tile(image_info[:, 0, :], [1, 2])[:, None, :]
    return {
      'detection_boxes': out['boxes'] * size,
      'detection_scores': out['scores'],
      'detection_classes': out['classes'],
      'num_detections': out['num_detections'],
    }


class SegmentationServingModule(_ServingModule):
  """A segmenter: per-pixel class probabilities and the argmax class map at
  each input image's size, and that size. In a batch of mixed sizes the maps
  are padded bottom-right to the largest: probabilities with 0, the class map
  with the ignore label."""

  def __init__(
    self, teacher: segmentation_teacher.SegmentationTeacher, batch_size=None
  ):
    if teacher.scales != (1.0,) or teacher.flip:
      raise ValueError('A served segmenter runs at scale 1, without flips.')
    super().__init__(teacher, teacher.input_size, batch_size)

  def _outputs(self, images, image_info) -> Dict[str, tf.Tensor]:
    canvas = self._teacher.predict(images, image_info)['probabilities']
    sizes = tf.cast(image_info[:, 0, :], tf.int32)
    largest = tf.reduce_max(sizes, axis=0)

    def at_image_size(args):
      probabilities, info = args
      valid = tf.cast(tf.round(info[1]), tf.int32)
      size = tf.cast(info[0], tf.int32)
      region = probabilities[: valid[0], : valid[1]]
      region = tf.image.resize(region, size, method='bilinear')
      return tf.pad(
        region, [[0, largest[0] - size[0]], [0, largest[1] - size[1]], [0, 0]]
      )

    probabilities = tf.map_fn(
      at_image_size,
      (canvas, image_info),
      fn_output_signature=tf.TensorSpec(
        [None, None, self._teacher.num_classes], tf.float32
      ),
    )
    class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    padding = tf.reduce_sum(probabilities, axis=-1) == 0
    class_map = tf.where(padding, self._teacher.ignore_label, class_map)
    return {
      'probabilities': probabilities,
      'class_map': class_map,
      'image_size': sizes,
    }
