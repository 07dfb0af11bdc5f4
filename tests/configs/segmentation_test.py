"""The segmentation gin files resolve to the paper's PASCAL settings, and
their models have the paper's parameter counts (Table 6)."""

import re

import helpers
from official.vision.modeling.layers import nn_layers
import pytest

from official_selftrain import config_files
from official_selftrain import train_lib
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets

pytestmark = pytest.mark.usefixtures('clear_gin')


def build(*files, params=()):
  config_files.parse(list(files), list(params))
  return experiment_lib.build()


@pytest.mark.parametrize(
  'name,model_id,lr,steps,policy',
  [
    ('pascal_s1', 'b7', 0.08, 40000, 'S1'),
    ('pascal_s4', 'b7', 0.08, 40000, 'S4'),
    ('pascal_l2_s4', 'l2', 0.2, 20000, 'S4'),
  ],
)
def test_pascal_configs_follow_the_paper(name, model_id, lr, steps, policy):
  config = build(f'{name}.gin').config
  model = config.task.model
  assert model.backbone.type == 'efficientnet'
  assert model.backbone.efficientnet.model_id == model_id
  assert model.backbone.efficientnet.se_ratio == 0.25
  assert model.decoder.type == 'nasfpn'
  assert model.decoder.nasfpn.num_repeats == 7
  assert model.decoder.nasfpn.use_separable_conv
  assert (model.min_level, model.max_level) == (3, 7)
  assert model.head.level == 2 and model.head.num_convs == 3
  assert model.head.feature_fusion == 'pyramid_fusion'
  assert model.input_size == [512, 512, 3]
  assert model.num_classes == 21
  assert model.norm_activation.use_sync_bn
  assert model.norm_activation.norm_momentum == 0.997
  assert config.task.losses.ignore_label == 255
  assert config.task.losses.l2_weight_decay == 1e-5
  assert config.task.train_data.global_batch_size == 256
  assert config.trainer.train_steps == steps
  optimizer = config.trainer.optimizer_config
  assert optimizer.learning_rate.type == 'cosine'
  assert optimizer.learning_rate.cosine.initial_learning_rate == lr
  train = config.task.train_data
  jitter = (0.8, 1.2) if policy == 'S1' else (0.5, 2.0)
  assert (train.aug_scale_min, train.aug_scale_max) == jitter
  assert (train.aug_type is None) == (policy == 'S1')
  assert config.task.validation_data.aug_type is None
  assert config.task.init_checkpoint is None


def _model_of(name):
  from official.core import task_factory  # pylint: disable=g-import-not-at-top

  config = build(f'{name}.gin').config
  return task_factory.get_task(config.task).build_model()


@pytest.mark.slow
def test_pascal_b7_has_se_blocks_and_the_papers_parameter_count():
  model = _model_of('pascal_s4')
  se_blocks = [
    layer
    for layer in model.backbone._flatten_layers()  # pylint: disable=protected-access
    if isinstance(layer, nn_layers.SqueezeExcitation)
  ]
  assert len(se_blocks) == 55  # one per MBConv block of B7
  # PAPER.md: Eff-B7 NAS-FPN 71M parameters; measured 69.5M (-2.1%).
  assert model.count_params() == pytest.approx(71e6, rel=0.05)


@pytest.mark.slow
def test_pascal_l2_has_the_papers_parameter_count():
  # PAPER.md: Eff-L2 NAS-FPN 485M parameters; measured 481.6M (-0.7%).
  config = build('pascal_l2_s4.gin').config
  assert train_lib.count_params(config) == pytest.approx(485e6, rel=0.05)


def test_count_params_flag_prints_the_models_count(data_dir):
  result = helpers.run_train(
    ['--gin_file=shapes_seg.gin', '--count_params'], data_dir
  )
  assert result.returncode == 0, result.stderr[-3000:]
  printed = re.findall(r'^params: (\d+)$', result.stdout, re.M)
  assert printed == [
    str(train_lib.count_params(build('shapes_seg.gin').config))
  ]


def test_count_params_names_each_stage_of_a_pipeline(data_dir):
  result = helpers.run_train(
    ['--gin_file=shapes_selftrain.gin', '--count_params'], data_dir
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r'^teacher params: \d+$', result.stdout, re.M)


def test_missing_pascal_says_which_binding_and_how_to_make_it(tmp_path):
  job = build('pascal_s1.gin', params=[f"pascal_voc.data_dir = '{tmp_path}'"])
  with pytest.raises(datasets.MissingDatasetError) as error:
    job.prepare()
  message = str(error.value)
  assert 'pascal_voc.data_dir' in message
  assert 'create_voc_tfrecords' in message


def test_shapes_seg_reads_shapes_det_with_its_test_split():
  job = build('shapes_seg.gin')
  task = job.config.task
  assert task.model.num_classes == 7  # background + Shapes-Det's 6
  assert 'shapes_det' in task.train_data.input_path
  assert job.test_split is not None and job.test_split.num_images == 1000
  data = task.train_data  # Augment-S1: flip and scale jitter, no policy
  assert data.aug_type is None and data.aug_rand_hflip
  assert (data.aug_scale_min, data.aug_scale_max) == (0.8, 1.2)
  assert task.model.decoder.type == 'nasfpn'


def test_fpn_decoder_and_a_wrong_decoder_name():
  job = build('shapes_seg.gin', params=["segmentation_model.decoder = 'fpn'"])
  decoder = job.config.task.model.decoder
  assert decoder.type == 'fpn' and decoder.fpn.num_filters == 48
  with pytest.raises(ValueError, match='segmentation_model.decoder'):
    build('shapes_seg.gin', params=["segmentation_model.decoder = 'unet'"])


def test_seed_flag_seeds_segmentation():
  # The --seed flag's bindings (train.py) must name a configurable that exists.
  job = build('shapes_seg.gin', params=['segmentation_experiment.seed = 7'])
  assert job.seed == 7 and job.config.task.train_data.seed == 7
