"""The student's configuration: shared with the teacher unless scoped apart."""

import gin
from official.core import task_factory
import pytest

from official_selftrain import train
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.configs import self_training
from official_selftrain.data import parsers
from official_selftrain.ops import joint_augment


@pytest.fixture(autouse=True)
def clear_gin():
  gin.clear_config()
  experiment_lib.register_configurables()
  yield
  gin.clear_config()


def build(params=()):
  train.parse_gin(['shapes_selftrain.gin'], list(params))
  pipeline = experiment_lib.build()
  student = pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
  return pipeline, student.config


def test_student_defaults_follow_the_paper():
  pipeline, student = build()
  teacher = pipeline.teacher.config
  task = student.task
  assert task.train_data.global_batch_size == 64  # 32 human + 32 pseudo
  assert task.train_data.pseudo_label_data.global_batch_size == 32
  assert task.train_data.pseudo_label_data.input_path == '/p/*'
  assert task.pseudo_score_threshold == 0.5
  assert task.loss_normalization and task.alpha == 1.0
  assert task.ema_decay == 0.9997
  assert task.init_checkpoint == '/t' and task.init_checkpoint_modules == 'all'
  assert task.model.as_dict() == teacher.task.model.as_dict()
  # Same augmentation policy on both halves: one parser config.
  assert (
    task.train_data.parser.as_dict() == teacher.task.train_data.parser.as_dict()
  )
  control = self_training.supervised_control(
    pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*'), 32
  )
  assert control.config.task.train_data.global_batch_size == 32
  assert control.config.trainer.train_steps == student.trainer.train_steps
  assert control.config.task.init_checkpoint == '/t'
  assert (
    control.config.trainer.optimizer_config.as_dict()
    == student.trainer.optimizer_config.as_dict()
  )


def test_larger_student_from_random_init_by_gin_scope():
  _, student = build(
    [
      'self_training_pipeline.student = @student/self_training_experiment',
      'student/retinanet_model.head_filters = 96',
      'student/self_training_experiment.init_from_teacher = False',
    ]
  )
  assert student.task.model.head.num_filters == 96
  assert student.task.init_checkpoint is None


def test_student_policy_reaches_student_and_control_not_teacher():
  pipeline, student = build(
    [
      "detection_experiment.policy = 'S1'",
      "self_training_experiment.policy = 'S4'",
    ]
  )
  teacher_parser = pipeline.teacher.config.task.train_data.parser
  assert teacher_parser.aug_type is None
  assert teacher_parser.aug_scale_max == 1.2
  for config in (
    student,
    self_training.supervised_control(
      pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*'), 32
    ).config,
  ):
    parser = config.task.train_data.parser
    assert parser.aug_type.type == 'randaug'
    assert (parser.aug_scale_min, parser.aug_scale_max) == (0.5, 2.0)
    assert parser.min_visible == 0.25


def test_student_parses_human_and_pseudo_halves_with_the_joint_policy():
  """One parser for both halves (Model Garden's combination reader calls the
  task's parser on each), and it is ours, running the student's policy."""
  _, student = build(["self_training_experiment.policy = 'S4'"])
  task = task_factory.get_task(student.task)
  parser = task.build_parser(student.task.train_data)
  assert isinstance(parser, parsers.RetinaNetParser)
  augmenter = parser._augmenter  # pylint: disable=protected-access
  assert isinstance(augmenter, joint_augment.JointRandAugment)


def test_init_from_teacher_needs_teacher_dir():
  train.parse_gin(['shapes_selftrain.gin'], [])
  pipeline = experiment_lib.build()
  with pytest.raises(ValueError, match='teacher_dir'):
    pipeline.student(pseudo_label_pattern='/p/*')
