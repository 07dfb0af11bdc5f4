"""Float32 inputs for RetinaNet's 'batched' NMS under a mixed policy.

Model Garden's 'batched' NMS (`tf.image.combined_non_max_suppression`) takes
float32 only and, unlike its 'v1' / 'v2' paths, does not cast: under
mixed_bfloat16 the heads' bfloat16 outputs stop evaluation (and a pipeline's
pseudo-labelling teacher) with a TypeError. Used by the trainer's task and
the teacher alike.
"""

import tensorflow as tf
import tf_keras


class Float32Detections:
  """A detection generator whose inputs are cast to float32 first (Keras
  would cast only a layer's first argument, so the cast is done here)."""

  def __init__(self, generator):
    self._generator = generator

  def __call__(self, *args, **kwargs):
    def cast(x):
      if isinstance(x, tf.Tensor) and x.dtype.is_floating:
        return tf.cast(x, tf.float32)
      return x

    return self._generator(
      *tf.nest.map_structure(cast, args),
      **tf.nest.map_structure(cast, kwargs),
    )

  def get_config(self):
    return self._generator.get_config()


def float32_nms(model: tf_keras.Model, model_config) -> tf_keras.Model:
  """`model` with float32 NMS inputs where the global policy is mixed and
  its NMS is 'batched' (see `Float32Detections`); a trainer's and a
  teacher's RetinaNet alike."""
  mixed = tf_keras.mixed_precision.global_policy().compute_dtype != 'float32'
  if mixed and model_config.detection_generator.nms_version == 'batched':
    model._detection_generator = Float32Detections(  # pylint: disable=protected-access
      model.detection_generator
    )
  return model
