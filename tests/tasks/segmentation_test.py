"""Semantic segmentation trains, reports mIoU with per-class IoU, and starts
from a backbone checkpoint by the same init bindings as detection."""

import glob
import json
import os

import helpers
import numpy as np
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.tasks import init_restore

pytestmark = pytest.mark.usefixtures('clear_gin')


@pytest.mark.slow
def test_tiny_segmentation_trains_and_reports_miou(data_dir, tmp_path):
  model_dir = str(tmp_path / 'seg')
  result = helpers.run_train(
    [f'--gin_file={helpers.TINY_SEG_GIN}', f'--model_dir={model_dir}'],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'mIoU' in result.stdout
  with open(os.path.join(model_dir, 'eval_results.json')) as f:
    metrics = json.load(f)[-1]
  assert metrics['step'] == 4
  ious = [metrics[f'iou/{c}'] for c in range(7)]
  assert metrics['mIoU'] == pytest.approx(np.mean(ious), abs=1e-6)
  # The same checkpoint on the same val images, IoU counted here with numpy:
  # every batch in (Model Garden's own evaluation dropped the first).
  np.testing.assert_allclose(ious, _numpy_ious(model_dir), atol=1e-4)
  assert metrics['iou/0'] > 0.5  # background, most pixels, is mostly found
  # TensorBoard: the per-class IoU beside mIoU.
  tags = set()
  for path in glob.glob(os.path.join(model_dir, 'validation', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {'mIoU', 'iou/0', 'iou/6'} <= tags


def _numpy_ious(model_dir, num_classes=7, ignore=255):
  """Per-class IoU of model_dir's latest checkpoint on the tiny val split,
  logits resized to the label maps as Model Garden's metric does."""
  task = _seg_task()
  model = task.build_model()
  checkpoint = tf.train.latest_checkpoint(model_dir)
  tf.train.Checkpoint(model=model).read(checkpoint).expect_partial()
  data = task.build_inputs(task.task_config.validation_data)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  for images, labels in data:
    logits = model(images, training=False)['logits']
    masks = labels['masks'].numpy()[..., 0].astype(int)
    logits = tf.image.resize(logits, masks.shape[1:3], method='bilinear')
    predicted = logits.numpy().argmax(-1)
    valid = masks != ignore
    np.add.at(confusion, (masks[valid], predicted[valid]), 1)
  hits = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - hits
  return np.where(union > 0, hits / np.maximum(union, 1), 0.0)


def _seg_task(*params, logging_dir=None):
  config_files.parse([helpers.TINY_SEG_GIN], list(params))
  config = experiment_lib.build().config
  return task_factory.get_task(config.task, logging_dir=logging_dir)


def _values(layer):
  return [v.numpy().copy() for v in layer.variables]


def test_a_detectors_backbone_restores_into_the_segmenter(tmp_path):
  # The Shapes detector and segmenter share their backbone's bindings, so
  # `init = 'imagenet'` (a classifier on that backbone) serves both.
  config_files.parse([helpers.TINY_GIN], [])
  detection = experiment_lib.build().config
  tf_keras.utils.set_random_seed(1)
  source = task_factory.get_task(detection.task).build_model()
  tf.train.Checkpoint(model=source, **source.checkpoint_items).write(
    str(tmp_path / 'det' / 'ckpt')
  )
  task = _seg_task(
    f"segmentation_experiment.init = '{tmp_path / 'det'}'",
    logging_dir=str(tmp_path / 'run'),
  )
  tf_keras.utils.set_random_seed(2)
  target = task.build_model()
  head_before = _values(target.head)
  task.initialize(target)
  for got, want in zip(_values(target.backbone), _values(source.backbone)):
    np.testing.assert_array_equal(got, want)
  for got, before in zip(_values(target.head), head_before):
    np.testing.assert_array_equal(got, before)
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    counts = json.load(f)['counts']
  assert counts['restored'] == len(target.backbone.variables)
  assert counts['left_at_init'] == 0 and counts['shape_mismatches'] == 0


def test_init_by_name_on_shapes_points_at_the_pretrained_backbone():
  task = _seg_task("segmentation_experiment.init = 'imagenet'").task_config
  assert task.init_checkpoint.endswith(
    os.path.join('pretrained', 'shapes_cls_pretrain')
  )
  assert 'shapes_cls_pretrain.gin' in task.init_checkpoint_hint


def test_the_segmenter_takes_the_skip_pattern():
  pattern = 'backbone/layer_with_weights-[6-9]/'
  task = _seg_task(
    "segmentation_experiment.init = 'imagenet'",
    f"segmentation_experiment.init_checkpoint_skip = '{pattern}'",
  ).task_config
  assert task.init_checkpoint_skip == pattern
