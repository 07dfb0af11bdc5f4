"""The bundled gin files resolve to the paper's settings."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from official_selftrain import config_files
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import parsers
from official_selftrain.ops import joint_augment
from official_selftrain.tasks import detection as detection_task

pytestmark = pytest.mark.usefixtures('clear_gin')


def build(*files, params=()):
  config_files.parse(list(files), list(params))
  return experiment_lib.build().config


@pytest.mark.parametrize('policy', ['s1', 's2', 's3', 's4'])
def test_coco_configs_follow_the_paper(policy):
  config = build(f'coco_{policy}.gin')
  model = config.task.model
  assert model.backbone.type == 'efficientnet'
  assert model.backbone.efficientnet.model_id == 'b7'
  assert model.backbone.efficientnet.se_ratio == 0.25
  assert model.backbone.efficientnet.stochastic_depth_drop_rate == 0.2
  assert model.input_size == [640, 640, 3]
  assert (model.min_level, model.max_level) == (3, 7)
  assert model.anchor.num_scales * len(model.anchor.aspect_ratios) == 9
  assert model.norm_activation.use_sync_bn
  assert model.num_classes == 91
  assert config.task.train_data.global_batch_size == 256
  assert config.task.losses.l2_weight_decay == 1e-4
  optimizer = config.trainer.optimizer_config
  assert optimizer.learning_rate.type == 'cosine'
  assert optimizer.learning_rate.cosine.initial_learning_rate == 0.32
  assert (
    optimizer.learning_rate.cosine.decay_steps == config.trainer.train_steps
  )
  assert optimizer.warmup.linear.warmup_steps == 1000
  assert optimizer.warmup.linear.warmup_learning_rate == 0.0032
  assert config.runtime.mixed_precision_dtype == 'bfloat16'
  parser = config.task.train_data.parser
  expected_jitter = (0.8, 1.2) if policy in ('s1', 's2') else (0.5, 2.0)
  assert (parser.aug_scale_min, parser.aug_scale_max) == expected_jitter
  assert config.task.init_checkpoint is None  # Rand Init


# EfficientNet-B7 without its classifier, as published (Keras'
# EfficientNetB7(include_top=False): 64,097,687, its input normalisation's 7
# numbers included); without squeeze-and-excitation it would be 52.1M.
B7_BACKBONE_PARAMS = 64_097_680


@pytest.mark.slow
def test_coco_backbone_is_the_published_efficientnet_b7():
  config = build('coco_s4.gin')
  task = detection_task.DetectionTask(config.task)
  model = task.build_model()
  backbone = model.backbone
  assert backbone.count_params() == B7_BACKBONE_PARAMS
  blocks = [
    m for m in backbone.submodules if type(m).__name__ == 'SqueezeExcitation'
  ]
  assert len(blocks) == 55  # one per MBConv block of B7
  # RetinaNet around it: FPN P3-P7 and the two heads, 256 channels.
  model(tf.zeros([1, 640, 640, 3]), training=True)
  total = sum(int(np.prod(v.shape)) for v in model.variables)
  assert 64e6 < total < 75e6, total


def test_coco_steps_s1_and_s4_from_the_paper():
  assert build('coco_s1.gin').trainer.train_steps == 45000
  gin.clear_config()
  assert build('coco_s4.gin').trainer.train_steps == 120000


def test_gin_param_and_dotted_override():
  config = build(
    'shapes_s1.gin',
    params=[
      "detection_experiment.policy = 'S4'",
      "detection_experiment.overrides = {'task.losses.focal_loss_gamma': 2.0}",
      'runtime.mixed_precision_dtype = "float16"',
    ],
  )
  assert config.task.train_data.parser.aug_type.type == 'randaug'
  assert config.task.losses.focal_loss_gamma == 2.0
  assert config.runtime.loss_scale == 'dynamic'


def test_unknown_file_and_binding_are_named():
  with pytest.raises(config_files.GinFileNotFoundError, match='coco_s9.gin'):
    build('coco_s9.gin')
  with pytest.raises(
    config_files.GinConfigError, match='detection_experiment.polcy'
  ):
    build('shapes_s1.gin', params=["detection_experiment.polcy = 'S2'"])


def test_print_config_describes_bindings_and_model_garden_config():
  text = experiment_lib.describe(
    experiment_lib.Experiment(config=build('coco_s4.gin'))
  )
  assert "detection_experiment.policy = 'S4'" in text
  assert 'model_id: b7' in text


def test_policy_bindings_reach_the_parser():
  """augment_policy bindings set the parser config, and the task's parser
  runs the policy jointly (data.parsers) with those settings."""
  config = build(
    'shapes_s1.gin',
    params=[
      "detection_experiment.policy = 'S4'",
      'augment_policy.randaugment_magnitude = 15',
      'augment_policy.randaugment_layers = 3',
      'augment_policy.min_visible = 0.5',
      'augment_policy.scale_jitter = (0.6, 1.6)',
    ],
  )
  parser_config = config.task.train_data.parser
  assert parser_config.aug_type.randaug.magnitude == 15
  assert parser_config.min_visible == 0.5
  parser = detection_task.DetectionTask(config.task).build_parser(
    config.task.train_data
  )
  assert isinstance(parser, parsers.RetinaNetParser)
  augmenter = parser._augmenter
  assert isinstance(augmenter, joint_augment.JointRandAugment)
  assert (augmenter.magnitude, augmenter.num_layers) == (15.0, 3)
  assert augmenter.min_visible == 0.5
  assert parser._aug_scale_min == 0.6


def _experiment(*params):
  config_files.parse(['shapes_s1.gin'], list(params))
  return experiment_lib.build()


def test_seed_binding_seeds_the_run_and_the_data_order():
  experiment = _experiment('detection_experiment.seed = 3')
  assert experiment.seed == 3
  assert experiment.config.task.train_data.seed == 3


def test_unseeded_by_default():
  experiment = _experiment()
  assert experiment.seed is None
  assert experiment.config.task.train_data.seed is None


def test_shapes_det_test_split_is_apart_from_val():
  experiment = _experiment()
  split = experiment.test_split
  val = experiment.config.task.validation_data.input_path
  assert split.num_images == 1000
  assert '/test_1000/' in split.input_path and '/val_500/' in val
  assert split.annotation_file.endswith('/test_1000/annotations.json')


def test_on_test_split_evaluates_there_into_its_own_file():
  experiment = _experiment()
  test = experiment.on_test_split()
  assert test.config.task.validation_data.input_path == (
    experiment.test_split.input_path
  )
  assert test.config.task.annotation_file == (
    experiment.test_split.annotation_file
  )
  assert test.config.trainer.validation_steps == 20  # 1000 images / 50
  assert test.results_file == 'test_results.json'
  # The original still evaluates on val.
  assert '/val_500/' in experiment.config.task.validation_data.input_path
  assert experiment.results_file == 'eval_results.json'


def test_no_test_split_when_none_is_asked_for():
  experiment = _experiment('shapes_det.num_test = 0')
  assert experiment.test_split is None
  with pytest.raises(ValueError, match='no test split'):
    experiment.on_test_split()


@pytest.mark.parametrize(
  'init,folder',
  [
    ('imagenet', 'efficientnet-b7'),
    ('imagenet_plus_plus', 'noisy-student-efficientnet-b7'),
    ('simclr', 'r50_1x_sk0'),
  ],
)
def test_coco_inits_point_to_the_published_checkpoints(init, folder):
  task = build(
    'coco_s4.gin', params=[f"detection_experiment.init = '{init}'"]
  ).task
  assert task.init_checkpoint == f'/data/pretrained/{folder}'
  assert task.init_checkpoint_converter
  assert 'storage.googleapis.com' in task.init_checkpoint_hint or (
    'gs://' in task.init_checkpoint_hint
  )
