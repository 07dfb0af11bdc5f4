"""Shapes-Cls pre-training: the classifier trains the detector's backbone, and
its checkpoint restores whole into the detector as the init."""

import json
import os

import helpers
from official.core import task_factory
import pytest
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.tasks import init_restore

pytestmark = pytest.mark.usefixtures('clear_gin')

TINY_CLS = helpers.TINY_CLS


def test_classifier_is_built_on_the_detectors_backbone():
  config_files.parse([helpers.TINY_GIN], TINY_CLS)
  job = experiment_lib.build()
  detector = job.config.task.model
  config_files.parse([helpers.TINY_GIN], [])
  assert detector.backbone.as_dict() == (
    experiment_lib.build().config.task.model.backbone.as_dict()
  )
  assert detector.input_size == [64, 64, 3]
  assert detector.num_classes == 13  # 12 Shapes-Cls classes, labels from 1


@pytest.mark.slow
def test_pretrained_backbone_restores_whole_into_the_detector(
  data_dir, tmp_path
):
  pretrain_dir = str(tmp_path / 'pretrain')
  args = [f'--gin_file={helpers.TINY_GIN}', f'--model_dir={pretrain_dir}']
  args += [f'--gin_param={p}' for p in TINY_CLS]
  result = helpers.run_train(args, data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'top-1' in result.stdout + result.stderr
  with open(os.path.join(pretrain_dir, 'eval_results.json')) as f:
    assert 0.0 <= json.load(f)[-1]['accuracy'] <= 1.0

  config_files.parse(
    [helpers.TINY_GIN], [f"detection_experiment.init = '{pretrain_dir}'"]
  )
  config = experiment_lib.build().config
  task = task_factory.get_task(config.task, logging_dir=str(tmp_path / 'det'))
  tf_keras.utils.set_random_seed(3)
  model = task.build_model()
  task.initialize(model)
  with open(tmp_path / 'det' / init_restore.REPORT_FILE) as f:
    counts = json.load(f)['counts']
  assert counts['restored'] == len(model.backbone.variables)
  assert counts['left_at_init'] == 0 and counts['shape_mismatches'] == 0
  assert counts['unused_in_checkpoint'] == 2  # the classifier's logits layer
