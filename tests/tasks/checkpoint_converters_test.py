"""The TF1 EfficientNet converter, on a checkpoint the test writes in the
published layout (names as tensorflow/tpu's efficientnet_model.py makes
them, moving averages beside the raw values, the classifier included)."""

import json

import helpers
import numpy as np
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.tasks import init_restore

pytestmark = pytest.mark.usefixtures('clear_gin')

B0 = [
  "retinanet_model.backbone = 'efficientnet'",
  "retinanet_model.backbone_params = {'model_id': 'b0', 'se_ratio': 0.25}",
  "retinanet_model.activation = 'swish'",
]


def _tf1_names(block, index):
  """TF1 names of one MBConv block's layers, {our sublayer: TF1 layer}."""
  scope = f'efficientnet-b0/blocks_{index}'
  expanded = hasattr(block, '_conv0') and block._conv0 is not None
  names = {
    '_conv1': 'depthwise_conv2d',
    '_squeeze_excitation._se_reduce': 'se/conv2d',
    '_squeeze_excitation._se_expand': 'se/conv2d_1',
  }
  if expanded:
    names.update(
      _conv0='conv2d',
      _norm0='tpu_batch_normalization',
      _norm1='tpu_batch_normalization_1',
      _conv2='conv2d_1',
      _norm2='tpu_batch_normalization_2',
    )
  else:
    names.update(
      _norm1='tpu_batch_normalization',
      _conv2='conv2d',
      _norm2='tpu_batch_normalization_1',
    )
  return {k: f'{scope}/{v}' for k, v in names.items()}


def _sublayer(block, path):
  for part in path.split('.'):
    block = getattr(block, part)
  return block


def _published_layout(backbone, rng):
  """{TF1 name: (raw value, averaged value)} for the backbone's weights."""
  layers = [layer for layer in backbone.layers if layer.weights]
  stem_conv, stem_bn, *blocks, head_conv, head_bn = layers
  pairs = [
    (stem_conv, 'efficientnet-b0/stem/conv2d'),
    (stem_bn, 'efficientnet-b0/stem/tpu_batch_normalization'),
    (head_conv, 'efficientnet-b0/head/conv2d'),
    (head_bn, 'efficientnet-b0/head/tpu_batch_normalization'),
  ]
  for index, block in enumerate(blocks):
    for path, name in _tf1_names(block, index).items():
      pairs.append((_sublayer(block, path), name))
  values, targets = {}, {}
  for layer, scope in pairs:
    for weight in layer.weights:
      leaf = weight.name.split('/')[-1].split(':')[0]
      raw = rng.normal(size=weight.shape).astype(np.float32)
      averaged = rng.normal(size=weight.shape).astype(np.float32)
      values[f'{scope}/{leaf}'] = raw
      values[f'{scope}/{leaf}/ExponentialMovingAverage'] = averaged
      targets[weight.ref()] = averaged
  values['efficientnet-b0/head/dense/kernel'] = np.zeros(
    [1280, 1000], np.float32
  )
  values['global_step'] = np.int64(1000)
  return values, targets


def test_published_efficientnet_restores_its_moving_averages(tmp_path):
  config_files.parse([helpers.TINY_GIN], B0)
  config = experiment_lib.build().config
  config.task.init_checkpoint = str(tmp_path / 'efficientnet-b0')
  config.task.init_checkpoint_converter = 'efficientnet_tf1'
  task = task_factory.get_task(config.task, logging_dir=str(tmp_path / 'run'))
  tf_keras.utils.set_random_seed(2)
  model = task.build_model()
  values, targets = _published_layout(model.backbone, np.random.default_rng(0))
  saver = tf.compat.v1.train.Saver(
    var_list={k: tf.Variable(v) for k, v in values.items()}
  )
  saver.save(None, str(tmp_path / 'efficientnet-b0' / 'model.ckpt'))
  task.initialize(model)
  for weight in model.backbone.weights:
    np.testing.assert_array_equal(weight.numpy(), targets[weight.ref()])
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    report = json.load(f)
  assert report['counts']['restored'] == len(model.backbone.weights)
  assert report['counts']['left_at_init'] == 0
  # The classifier is not a backbone weight; the raw values gave way to
  # their moving averages.
  raw = [k for k in values if not k.endswith('ExponentialMovingAverage')]
  raw.remove('global_step')
  assert report['unused_in_checkpoint'] == sorted(raw)
  assert 'efficientnet-b0/head/dense/kernel' in raw
