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


def _task_and_model(params, checkpoint_dir, converter, run_dir):
  """The tiny detector with `params`, to start from `checkpoint_dir`."""
  config_files.parse([helpers.TINY_GIN], params)
  config = experiment_lib.build().config
  config.task.init_checkpoint = checkpoint_dir
  config.task.init_checkpoint_converter = converter
  task = task_factory.get_task(config.task, logging_dir=run_dir)
  tf_keras.utils.set_random_seed(2)
  return task, task.build_model()


def test_published_efficientnet_restores_its_moving_averages(tmp_path):
  task, model = _task_and_model(
    B0,
    str(tmp_path / 'efficientnet-b0'),
    'efficientnet_tf1',
    str(tmp_path / 'run'),
  )
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


R50 = [
  "retinanet_model.backbone = 'resnet'",
  "retinanet_model.backbone_params = {'model_id': 50}",
]
R50_BLOCKS = (3, 4, 6, 3)


def _holder(layer, rng, targets, **attribute):
  """A tf.Module standing for a SimCLR layer: `conv2d` or `bn` holding
  variables named as Keras names them, values recorded for our layer."""
  inner = tf.Module()
  for weight in layer.weights:
    leaf = weight.name.split('/')[-1].split(':')[0]
    value = rng.normal(size=weight.shape).astype(np.float32)
    setattr(inner, leaf, tf.Variable(value))
    targets[weight.ref()] = value
  outer = tf.Module()
  setattr(outer, attribute['as'], inner)
  return outer


def _simclr_layout(backbone, rng):
  """SimCLR's TF2 object graph for ResNet-50 (google-research/simclr
  tf2/resnet.py), with random values of our backbone's shapes."""
  layers = [layer for layer in backbone.layers if layer.weights]
  stem_conv, stem_bn, *blocks = layers
  targets = {}
  resnet = tf.Module()
  resnet.initial_conv_relu_max_pool = [
    _holder(stem_conv, rng, targets, **{'as': 'conv2d'}),
    tf.Module(),  # IdentityLayer
    _holder(stem_bn, rng, targets, **{'as': 'bn'}),
    tf.Module(),  # MaxPooling2D
    tf.Module(),  # IdentityLayer
  ]
  groups, start = [], 0
  for count in R50_BLOCKS:
    group = tf.Module()
    group.layers = []
    for block in blocks[start : start + count]:
      simclr = tf.Module()
      if hasattr(block, '_shortcut'):  # the first block of a group
        simclr.projection_layers = [
          _holder(block._shortcut, rng, targets, **{'as': 'conv2d'}),
          _holder(block._norm0, rng, targets, **{'as': 'bn'}),
        ]
      simclr.conv_relu_dropblock_layers = []
      for conv, norm in (
        (block._conv1, block._norm1),
        (block._conv2, block._norm2),
        (block._conv3, block._norm3),
      ):
        simclr.conv_relu_dropblock_layers += [
          _holder(conv, rng, targets, **{'as': 'conv2d'}),
          _holder(norm, rng, targets, **{'as': 'bn'}),
          tf.Module(),  # DropBlock
        ]
      group.layers.append(simclr)
    groups.append(group)
    start += count
  resnet.block_groups = groups
  model = tf.Module()
  model.resnet_model = resnet
  model.head_supervised = tf.Module()
  model.head_supervised.kernel = tf.Variable(tf.zeros([2048, 1000]))
  return model, targets


def test_simclr_resnet50_restores_into_model_gardens(tmp_path):
  task, model = _task_and_model(
    R50, str(tmp_path / 'r50_1x_sk0'), 'simclr_tf2', str(tmp_path / 'run')
  )
  simclr, targets = _simclr_layout(model.backbone, np.random.default_rng(0))
  tf.train.Checkpoint(model=simclr).write(str(tmp_path / 'r50_1x_sk0' / 'ck'))
  task.initialize(model)
  for weight in model.backbone.weights:
    np.testing.assert_array_equal(weight.numpy(), targets[weight.ref()])
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    report = json.load(f)
  assert report['counts']['restored'] == len(model.backbone.weights)
  assert report['unused_in_checkpoint'] == ['model/head_supervised/kernel']
