"""The teacher: restored weights, Model Garden's eval path, its config."""

import os

import numpy as np
from official.core import task_factory
import pytest
import tensorflow as tf
import yaml

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import shard_writer
from official_selftrain.pseudo_labels import teacher as teacher_lib


@pytest.fixture(scope='module')
def teacher(teacher_dir):
  return teacher_lib.Teacher(teacher_dir)


@pytest.fixture(scope='module')
def reader(teacher):
  """The teacher's checkpoint, read directly."""
  return tf.train.load_checkpoint(teacher.checkpoint)


def test_teacher_restores_the_backbone_weights(teacher, reader):
  key = 'backbone/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE'
  np.testing.assert_array_equal(
    teacher.model.backbone.weights[0].numpy(), reader.get_tensor(key)
  )


def test_teacher_restores_every_head_weight(teacher, reader):
  head_keys = [
    k
    for k in reader.get_variable_to_shape_map()
    if k.startswith('head/') and 'OPTIMIZER' not in k
  ]
  restored = [w.numpy() for w in teacher.model.head.weights]
  assert head_keys
  for k in head_keys:
    value = reader.get_tensor(k)
    assert any(
      r.shape == value.shape and np.array_equal(value, r) for r in restored
    ), k


def _model_garden_scores(config, teacher):
  """Detection scores by source id from Model Garden's validation path."""
  task = task_factory.get_task(config.task)
  features, labels = next(iter(task.build_inputs(config.task.validation_data)))
  outputs = teacher.model(
    features,
    anchor_boxes=labels['anchor_boxes'],
    image_shape=labels['image_info'][:, 1, :],
    training=False,
  )
  source_ids = labels['groundtruths']['source_id'].numpy()
  return {
    int(source_id): outputs['detection_scores'][i].numpy()
    for i, source_id in enumerate(source_ids)
  }


def test_teacher_sees_what_model_garden_eval_sees(teacher_dir):
  """Teacher.predict == Model Garden's validation path, on the same images."""
  teacher = teacher_lib.Teacher(teacher_dir, score_floor=0.05)
  config = teacher.config
  expected = _model_garden_scores(config, teacher)
  pool = pools.TFRecordPool(config.task.validation_data.input_path)
  batch = next(
    iter(
      pool.dataset()
      .map(lambda e: shard_writer.teacher_input(teacher, e))
      .padded_batch(64)
    )
  )
  got = teacher.predict(batch['image'], batch['image_info'])['scores'].numpy()
  compared = 0
  for source_id, scores in zip(batch['source_id'].numpy(), got):
    if int(source_id) in expected:  # Model Garden's parser makes ids ints
      np.testing.assert_allclose(scores, expected[int(source_id)], atol=1e-5)
      compared += 1
  assert compared >= 8


def test_teacher_nms_is_the_one_asked_for(teacher_dir):
  teacher = teacher_lib.Teacher(
    teacher_dir, score_floor=0.2, nms_iou_threshold=0.6, max_detections=7
  )
  assert teacher.nms['pre_nms_score_threshold'] == 0.2
  assert teacher.nms['nms_iou_threshold'] == 0.6
  assert teacher.nms['max_num_detections'] == 7


def test_dir_without_checkpoint_is_an_error(dir_without_checkpoint):
  with pytest.raises(teacher_lib.NoCheckpointError, match='No checkpoint'):
    teacher_lib.latest_checkpoint(dir_without_checkpoint)


def test_dir_without_params_is_an_error(tmp_path):
  with pytest.raises(teacher_lib.NoCheckpointError, match='params.yaml'):
    teacher_lib.load_experiment_config(str(tmp_path))


@pytest.fixture
def student_dir(teacher_dir, tmp_path):
  """A model_dir whose params.yaml is a student's: the teacher's settings
  plus self-training fields a detection task does not have."""
  with open(os.path.join(teacher_dir, 'params.yaml')) as f:
    params = yaml.safe_load(f)
  params['task']['alpha'] = 0.5
  params['task']['pseudo_score_threshold'] = 0.7
  params['task']['train_data']['pseudo_label_data'] = {'input_path': 'p*'}
  with open(tmp_path / 'params.yaml', 'w') as f:
    yaml.safe_dump(params, f)
  return str(tmp_path)


def test_config_of_a_student_is_its_detection_task(teacher_dir, student_dir):
  config = teacher_lib.load_experiment_config(student_dir)
  assert type(config.task) is detection_cfg.DetectionTaskConfig
  assert 'alpha' not in config.task.as_dict()
  assert 'pseudo_label_data' not in config.task.train_data.as_dict()
  teacher_config = teacher_lib.load_experiment_config(teacher_dir)
  assert config.task.model.as_dict() == teacher_config.task.model.as_dict()
  assert config.runtime.as_dict() == teacher_config.runtime.as_dict()
