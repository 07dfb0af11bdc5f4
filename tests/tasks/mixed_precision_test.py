"""DetectionTask under mixed_bfloat16: evaluation with 'batched' NMS runs."""

import helpers
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib

pytestmark = pytest.mark.usefixtures('clear_gin')


def _tiny_task():
  config_files.parse([helpers.TINY_GIN], [])
  config = experiment_lib.build().config
  assert config.task.model.detection_generator.nms_version == 'batched'
  return task_factory.get_task(config.task)


def test_batched_nms_gets_float32_under_mixed_bfloat16(bfloat16_policy):
  model = _tiny_task().build_model()
  images = tf.random.uniform([2, 64, 64, 3])
  outputs = model(
    images, image_shape=tf.constant([[64, 64]] * 2), training=False
  )
  assert outputs['detection_scores'].dtype == tf.float32
  assert outputs['detection_boxes'].shape == (2, 100, 4)


def test_float32_model_keeps_model_gardens_generator():
  model = _tiny_task().build_model()
  assert isinstance(model.detection_generator, tf_keras.layers.Layer)
