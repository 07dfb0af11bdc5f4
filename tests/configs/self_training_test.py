"""The student's configuration: shared with the teacher unless scoped apart."""

from official.core import task_factory
import pytest

from official_selftrain import config_files
from official_selftrain.configs import detection as detection_cfg
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.configs import self_training
from official_selftrain.data import parsers
from official_selftrain.ops import joint_augment

pytestmark = pytest.mark.usefixtures('clear_gin')


def build(params=()):
  config_files.parse(['shapes_selftrain.gin'], list(params))
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
  assert task.pseudo_background_weight == 1.0  # beyond the paper: off
  assert task.pseudo_soft_floor is None  # beyond the paper: off
  assert task.pseudo_box_weight == 1.0  # beyond the paper: off
  assert task.loss_normalization and task.alpha == 1.0
  assert task.ema_decay == 0.9997
  assert task.init_checkpoint == '/t' and task.init_checkpoint_modules == 'all'
  assert task.model.as_dict() == teacher.task.model.as_dict()
  # Same augmentation policy on both halves: one parser config.
  assert (
    task.train_data.parser.as_dict() == teacher.task.train_data.parser.as_dict()
  )
  control = self_training.supervised_control(
    pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
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
      pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
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
  augmenter = parser._augmenter
  assert isinstance(augmenter, joint_augment.JointRandAugment)


def test_background_weight_outside_0_1_names_the_binding():
  config_files.parse(
    ['shapes_selftrain.gin'],
    ['self_training_experiment.pseudo_background_weight = 2.0'],
  )
  pipeline = experiment_lib.build()
  with pytest.raises(ValueError, match='pseudo_background_weight'):
    pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')


@pytest.mark.parametrize(
  'bindings, match',
  [
    (['self_training_experiment.pseudo_soft_floor = 0.5'], 'pseudo_soft_floor'),
    (['self_training_experiment.pseudo_ignore_floor = -0.1'], 'ignore_floor'),
    (
      [
        'self_training_experiment.pseudo_soft_floor = 0.2',
        'self_training_experiment.pseudo_ignore_floor = 0.2',
      ],
      'exclude each other',
    ),
  ],
)
def test_soft_and_ignore_floors_are_checked(bindings, match):
  config_files.parse(['shapes_selftrain.gin'], bindings)
  pipeline = experiment_lib.build()
  with pytest.raises(ValueError, match=match):
    pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')


def test_soft_floor_reaches_the_student_not_the_control():
  pipeline, student = build(
    ['self_training_experiment.pseudo_soft_floor = 0.2']
  )
  assert student.task.pseudo_soft_floor == 0.2
  assert student.task.pseudo_ignore_floor is None
  experiment = pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
  control = self_training.supervised_control(experiment).config.task
  assert 'pseudo_soft_floor' not in control.as_dict()


def test_negative_box_weight_names_the_binding():
  config_files.parse(
    ['shapes_selftrain.gin'],
    ['self_training_experiment.pseudo_box_weight = -1.0'],
  )
  pipeline = experiment_lib.build()
  with pytest.raises(ValueError, match='pseudo_box_weight'):
    pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')


def test_init_from_teacher_needs_teacher_dir():
  config_files.parse(['shapes_selftrain.gin'], [])
  pipeline = experiment_lib.build()
  with pytest.raises(ValueError, match='teacher_dir'):
    pipeline.student(pseudo_label_pattern='/p/*')


def test_control_has_exactly_the_supervised_fields():
  """Derived from the dataclass fields: a student-only setting (here the
  ignore band) never reaches the control."""
  pipeline, _ = build(
    [
      'self_training_experiment.pseudo_ignore_floor = 0.3',
      'self_training_experiment.pseudo_background_weight = 0.1',
      'self_training_experiment.pseudo_box_weight = 0.0',
    ]
  )
  student = pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
  control = self_training.supervised_control(student).config.task
  assert type(control) is detection_cfg.DetectionTaskConfig
  assert set(control.as_dict()) == set(
    detection_cfg.DetectionTaskConfig().as_dict()
  )
  assert 'pseudo_label_data' not in control.train_data.as_dict()
  assert control.train_data.parser.as_dict() == (
    student.config.task.train_data.parser.as_dict()
  )


def test_supervised_task_config_keeps_a_non_default_backbone():
  """A one-of config is taken whole: an EfficientNet student gives an
  EfficientNet control, not the default ResNet."""
  task = detection_cfg.DetectionTaskConfig()
  task.model.backbone.type = 'efficientnet'
  task.model.backbone.efficientnet.model_id = 'b7'
  derived = detection_cfg.supervised_task_config(task.as_dict())
  assert derived.model.backbone.type == 'efficientnet'
  assert derived.model.backbone.efficientnet.model_id == 'b7'


@pytest.mark.parametrize(
  'human, ratio, expected',
  [(32, 1.0, (32, 32)), (32, 3.0, (32, 96)), (8, 0.5, (8, 4))],
)
def test_batch_split_round_trips_through_model_gardens_reader(
  human, ratio, expected
):
  split = self_training.BatchSplit.from_ratio(human, ratio)
  data = self_training.SelfTrainingDataConfig()
  split.apply_to(data)
  assert (split.human, split.pseudo) == expected
  assert self_training.BatchSplit.of(data) == split
  assert data.global_batch_size == sum(expected)


def test_batch_split_per_replica_must_divide():
  split = self_training.BatchSplit(32, 32)
  assert split.per_replica(4) == self_training.BatchSplit(8, 8)
  with pytest.raises(ValueError, match='3 replicas'):
    split.per_replica(3)


def test_student_batch_is_the_teacher_batch_plus_pseudo():
  _, student = build(['self_training_experiment.pseudo_ratio = 3.0'])
  split = self_training.BatchSplit.of(student.task.train_data)
  assert (split.human, split.pseudo) == (32, 96)


def test_student_and_control_share_the_seed_and_test_split():
  pipeline, _ = build(['detection_experiment.seed = 5'])
  student = pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
  control = self_training.supervised_control(student)
  for experiment in (student, control):
    assert experiment.seed == 5
    assert experiment.test_split == pipeline.teacher.test_split
    assert experiment.config.task.train_data.seed == 5
  assert student.config.task.train_data.pseudo_label_data.seed == 5


def test_supervised_from_scratch_has_all_the_students_steps():
  pipeline, _ = build(['detection_experiment.seed = 5'])
  student = pipeline.student(teacher_dir='/t', pseudo_label_pattern='/p/*')
  teacher = pipeline.teacher.config
  arm = self_training.supervised_from_scratch(pipeline.teacher, student, 3000)
  config = arm.config
  assert config.trainer.train_steps == 3000
  assert config.trainer.optimizer_config.learning_rate.cosine.decay_steps == (
    3000
  )
  assert config.task.init_checkpoint == teacher.task.init_checkpoint  # None
  assert config.task.train_data.global_batch_size == 32  # the human half
  assert config.task.train_data.parser.as_dict() == (
    teacher.task.train_data.parser.as_dict()
  )
  assert arm.seed == 5 and arm.test_split == pipeline.teacher.test_split
  assert pipeline.teacher.config.trainer.train_steps == 2000  # not changed


@pytest.mark.parametrize('as_list', [False, True])
def test_warm_start_stages_chain(as_list):
  """One warm start stage (bound alone or in a list) or two: each stage and
  then the teacher start from the previous stage's dir, and every stage's
  steps count in the teacher's."""
  stages = ['@warm_start/detection_experiment()']
  if as_list:
    stages.append('@warm_start2/detection_experiment()')
  binding = ', '.join(stages)
  pipeline, _ = build(
    [
      'self_training_pipeline.teacher_warm_start = '
      + (f'[{binding}]' if as_list else binding),
      'warm_start/detection_experiment.train_steps = 300',
      'warm_start2/detection_experiment.train_steps = 20',
    ]
  )
  configs = pipeline.configs()
  names = ['teacher_warm_start', 'teacher_warm_start_2'][: len(stages)]
  assert list(configs)[0] == 'teacher'
  assert not configs[names[0]].task.init_checkpoint
  for name, previous in zip([*names[1:], 'teacher'], names):
    assert configs[name].task.init_checkpoint == f'<model_dir>/{previous}'
    assert configs[name].task.init_checkpoint_modules == 'all'
  teacher = pipeline.teacher.config.trainer.train_steps
  assert pipeline.teacher_steps() == teacher + (320 if as_list else 300)
