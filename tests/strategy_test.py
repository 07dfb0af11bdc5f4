"""Strategy choice: the default cannot trip a user; a missing TPU is named."""

import os

from helpers import TINY_GIN
from helpers import run_train
import pytest

from official_selftrain import train_lib


@pytest.mark.parametrize(
  'name, num_gpus, visible, expected',
  [
    ('auto', None, 0, ('one_device', 0)),
    ('auto', None, 1, ('one_device', 1)),
    ('auto', None, 4, ('mirrored', 4)),
    ('auto', 1, 4, ('one_device', 1)),
    ('auto', 2, 4, ('mirrored', 2)),
    # One device on a multi-GPU host takes one GPU, not all of them.
    ('one_device', None, 4, ('one_device', 1)),
    ('one_device', None, 0, ('one_device', 0)),
    ('mirrored', None, 4, ('mirrored', 4)),
    ('mirrored', None, 0, ('mirrored', 0)),
    ('multi_worker_mirrored', None, 2, ('multi_worker_mirrored', 2)),
    ('tpu', None, 0, ('tpu', 0)),
  ],
)
def test_strategy_and_gpus(name, num_gpus, visible, expected):
  assert train_lib.resolve_strategy(name, num_gpus, visible) == expected


@pytest.mark.parametrize(
  'name, num_gpus, visible, message',
  [
    ('one_device', 2, 4, r'one_device runs on one device.*--strategy=mirrored'),
    ('auto', 3, 2, r'--num_gpus=3, but 2 GPU\(s\) are visible'),
    ('mirrored', 1, 0, r'--num_gpus=1, but 0 GPU'),
    ('horovod', None, 0, r'--strategy=horovod is not one of'),
  ],
)
def test_impossible_choice_names_the_flag(name, num_gpus, visible, message):
  with pytest.raises(ValueError, match=message):
    train_lib.resolve_strategy(name, num_gpus, visible)


def test_tpu_without_address_names_the_flag():
  with pytest.raises(ValueError, match='--strategy=tpu needs --tpu='):
    train_lib.build_strategy('tpu', None)


@pytest.mark.e2e
def test_unreachable_tpu_stops_with_an_error_naming_tpu(data_dir, tmp_path):
  # No TPU here: the resolver fails (NotFoundError) and the user is told.
  result = run_train(
    [
      f'--gin_file={TINY_GIN}',
      f'--model_dir={tmp_path}',
      '--strategy=tpu',
      '--tpu=local',
    ],
    data_dir,
  )
  assert result.returncode == 1, result.stderr[-2000:]
  assert '--tpu=local: no TPU reachable (NotFoundError' in result.stderr
  assert 'Traceback' not in result.stderr


def test_student_mixed_batch_has_static_shapes_for_tpu(data_dir, clear_gin):
  # XLA on TPU compiles one program per shape: the student's [human | pseudo]
  # batches must have every dimension known (drop_remainder, padded boxes).
  import gin
  import helpers
  from official.core import task_factory
  import tensorflow as tf

  from official_selftrain import config_files
  from official_selftrain.configs import self_training

  config_files.parse([TINY_GIN], [])
  pseudo = os.path.join(data_dir, 'pseudo_for_static_shapes.tfrecord')
  helpers.write_pseudo_labels(pseudo, 16, helpers.TINY_SPEC)
  with gin.unlock_config():
    student = self_training.self_training_experiment(
      pseudo_label_pattern=pseudo, init_from_teacher=False, train_steps=3
    )
  student.prepare()
  config = student.config
  assert config.task.train_data.drop_remainder
  task = task_factory.get_task(config.task)
  dataset = task.build_inputs(config.task.train_data)
  specs = tf.nest.flatten(dataset.element_spec)
  assert specs and all(s.shape.is_fully_defined() for s in specs), specs
  batch = config.task.train_data.global_batch_size
  assert all(s.shape[0] == batch for s in specs), specs
