"""The teacher: restored weights, Model Garden's eval path, its config."""

import os

import numpy as np
from official.core import task_factory
import pytest
import tensorflow as tf
import yaml

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import box_fusion
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


def _validation_batch(teacher, size):
  pool = pools.TFRecordPool(teacher.config.task.validation_data.input_path)
  return next(
    iter(
      pool.dataset()
      .map(lambda e: shard_writer.teacher_input(teacher, e))
      .padded_batch(size)
    )
  )


def _same_detections(a, b, box_tol=1e-5):
  """Whether two (boxes, classes, scores) are one set, up to order."""
  if len(a[2]) != len(b[2]):
    return False
  unmatched = list(range(len(b[2])))
  for box, cls, score in zip(*a):
    match = [
      j
      for j in unmatched
      if b[1][j] == cls
      and abs(b[2][j] - score) < 1e-5
      and np.abs(b[0][j] - box).max() < box_tol
    ]
    if not match:
      return False
    unmatched.remove(match[0])
  return True


FLIP_FLOOR = 1e-3
FLIP_CAP = 20


def _tied_at_the_cap(outputs, i):
  """Whether a view of image i keeps FLIP_CAP boxes and ties at its last one:
  which of the tied boxes are kept then follows the anchors' order, which the
  mirror image reverses (a saturated teacher scores many boxes 1.0)."""
  for view in range(outputs['scores'].shape[1]):
    n = outputs['num_detections'][i, view]
    scores = outputs['scores'][i, view, :n]
    if n == FLIP_CAP and np.sum(scores - scores.min() < 1e-6) > 1:
      return True
  return False


def test_a_flipping_teacher_labels_the_mirror_image_mirrored(teacher_dir):
  """Its second view of an image is its first view of the mirror image,
  mapped back; fused, an image's labels are its mirror's, mirrored."""
  # The tiny teacher is barely trained: at a higher floor some draws of it
  # score nothing on these 8 images, and there would be nothing to compare.
  teacher = teacher_lib.Teacher(
    teacher_dir, score_floor=FLIP_FLOOR, max_detections=FLIP_CAP, flip=True
  )
  assert teacher.padded_size == teacher.input_size  # canvas = image
  assert teacher.describe()['flip'] is True
  batch = _validation_batch(teacher, 8)
  images, info = batch['image'], batch['image_info']
  out = {k: v.numpy() for k, v in teacher.predict(images, info).items()}
  mirrored = teacher.predict(tf.image.flip_left_right(images), info)
  mirrored = {k: v.numpy() for k, v in mirrored.items()}
  assert out['num_detections'].shape == (8, 2)
  single = teacher_lib.Teacher(
    teacher_dir, score_floor=FLIP_FLOOR, max_detections=FLIP_CAP
  )
  plain = single.predict(images, info)
  np.testing.assert_array_equal(
    out['num_detections'][:, 0], plain['num_detections'].numpy()
  )
  differs = compared = 0
  for i in range(8):
    n = out['num_detections'][i, 1]
    assert n == mirrored['num_detections'][i, 0]
    np.testing.assert_allclose(
      out['boxes'][i, 1, :n],
      box_fusion.mirror(mirrored['boxes'][i, 0, :n]),
      atol=1e-5,
    )
    np.testing.assert_allclose(
      out['scores'][i, 1, :n], mirrored['scores'][i, 0, :n], atol=1e-6
    )
    fused = teacher.detections(out, i)
    other = teacher.detections(mirrored, i)
    if not (_tied_at_the_cap(out, i) or _tied_at_the_cap(mirrored, i)):
      mirror = (box_fusion.mirror(other[0]),) + other[1:]
      assert _same_detections(fused, mirror), i
      compared += 1
    k = plain['num_detections'][i]
    differs += not _same_detections(
      fused,
      tuple(
        plain[key][i, :k].numpy() for key in ('boxes', 'classes', 'scores')
      ),
    )
    assert (fused[2] >= FLIP_FLOOR).all() and len(fused[2]) <= FLIP_CAP
  assert compared >= 4, compared  # most images' kept boxes are not ties
  assert differs > 0  # fusing two views is not labelling one


def test_teacher_labels_under_a_mixed_policy(teacher_dir, bfloat16_policy):
  """A pipeline trained under mixed_bfloat16 leaves the policy set when its
  teacher labels: the 'batched' NMS must still get float32 inputs."""
  teacher = teacher_lib.Teacher(teacher_dir, score_floor=0.02)
  batch = _validation_batch(teacher, 4)
  out = teacher.predict(batch['image'], batch['image_info'])
  assert out['scores'].dtype == tf.float32
  assert out['num_detections'].shape[0] == 4
