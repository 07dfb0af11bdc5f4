"""Init checkpoints: restored with a report; empty, misfit or missing ones stop."""

import json
import os

import helpers
import numpy as np
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets
from official_selftrain.tasks import init_restore

pytestmark = pytest.mark.usefixtures('clear_gin')


def _task(*params, init=None, modules='backbone', logging_dir=None):
  """The tiny detection task; the model built with its own seed."""
  config_files.parse([helpers.TINY_GIN], list(params))
  config = experiment_lib.build().config
  config.task.init_checkpoint = init
  config.task.init_checkpoint_modules = modules
  return task_factory.get_task(config.task, logging_dir=logging_dir)


def _model(task, seed):
  tf_keras.utils.set_random_seed(seed)
  return task.build_model()


def _values(layer):
  return [v.numpy().copy() for v in layer.variables]


def _trainer_style_checkpoint(model, path):
  """As Model Garden's trainer writes it: the model and its items at root."""
  return tf.train.Checkpoint(model=model, **model.checkpoint_items).write(path)


def test_expected_keys_are_the_checkpoint_writers_keys(tmp_path):
  model = _model(_task(), 1)
  items = dict(model.checkpoint_items)
  written = tf.train.Checkpoint(**items).write(str(tmp_path / 'ck'))
  stored = {k for k, _ in tf.train.list_variables(written)}
  stored.discard('_CHECKPOINTABLE_OBJECT_GRAPH')
  expected = init_restore.expected_variables(items)
  assert set(expected) == stored
  assert len(expected) == len(model.variables)


def test_backbone_restored_head_left_at_its_init(tmp_path):
  source = _model(_task(), 1)
  prefix = _trainer_style_checkpoint(source, str(tmp_path / 'pre' / 'ckpt'))
  task = _task(init=str(tmp_path / 'pre'), logging_dir=str(tmp_path / 'run'))
  target = _model(task, 2)
  head_before = _values(target.head)
  backbone_before = _values(target.backbone)
  task.initialize(target)
  for got, want, before in zip(
    _values(target.backbone), _values(source.backbone), backbone_before
  ):
    np.testing.assert_array_equal(got, want)
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(backbone_before, _values(source.backbone))
  )
  for got, before in zip(_values(target.head), head_before):
    np.testing.assert_array_equal(got, before)
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    report = json.load(f)
  assert report['checkpoint'] == prefix
  # Which weights, beyond the path: another model's checkpoint differs.
  assert report['fingerprint'] == init_restore.checkpoint_fingerprint(prefix)
  other = _trainer_style_checkpoint(target, str(tmp_path / 'other' / 'ckpt'))
  assert init_restore.checkpoint_fingerprint(other) != report['fingerprint']
  assert report['counts']['restored'] == len(target.backbone.variables)
  assert report['counts']['left_at_init'] == 0
  # The source's head and decoder were in the checkpoint, not asked for.
  assert report['counts']['unused_in_checkpoint'] == len(
    source.head.variables
  ) + len(source.decoder.variables)


def test_a_checkpoint_of_something_else_is_an_error(tmp_path):
  prefix = tf.train.Checkpoint(other=tf.Variable([1.0, 2.0])).write(
    str(tmp_path / 'other' / 'ckpt')
  )
  task = _task(init=prefix, logging_dir=str(tmp_path / 'run'))
  target = _model(task, 2)
  before = _values(target.backbone)
  with pytest.raises(init_restore.InitCheckpointError) as error:
    task.initialize(target)
  message = str(error.value)
  assert prefix in message and 'none of the' in message
  assert 'other' in message  # what the checkpoint holds
  for got, was in zip(_values(target.backbone), before):
    np.testing.assert_array_equal(got, was)
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    assert json.load(f)['counts']['restored'] == 0


def test_a_shape_mismatch_is_an_error_naming_the_variables(tmp_path):
  wider = _model(
    _task(
      "retinanet_model.backbone_params = {'model_id': 18, "
      "'depth_multiplier': 0.5}"
    ),
    1,
  )
  prefix = _trainer_style_checkpoint(wider, str(tmp_path / 'wide' / 'ckpt'))
  task = _task(init=prefix)
  with pytest.raises(init_restore.InitCheckpointError) as error:
    task.initialize(_model(task, 2))
  message = str(error.value)
  assert 'Shapes differ' in message and prefix in message
  assert 'backbone/' in message and 'checkpoint [' in message


def test_a_missing_checkpoint_says_how_to_make_it(tmp_path):
  missing = str(tmp_path / 'nothing_here')
  task = _task(init=missing)
  task.task_config.init_checkpoint_hint = 'Make it with: a command'
  with pytest.raises(init_restore.InitCheckpointError) as error:
    task.initialize(_model(task, 2))
  assert missing in str(error.value) and 'a command' in str(error.value)


def test_unknown_module_is_an_error():
  task = _task(init='/x', modules='backbone,neck')
  with pytest.raises(init_restore.InitCheckpointError, match='neck'):
    task.initialize(_model(task, 2))


def test_backbone_and_decoder(tmp_path):
  source = _model(_task(), 1)
  prefix = _trainer_style_checkpoint(source, str(tmp_path / 'ck'))
  task = _task(init=prefix, modules='backbone,decoder')
  target = _model(task, 2)
  head_before = _values(target.head)
  task.initialize(target)
  for got, want in zip(_values(target.decoder), _values(source.decoder)):
    np.testing.assert_array_equal(got, want)
  for got, before in zip(_values(target.head), head_before):
    np.testing.assert_array_equal(got, before)


def test_inits_by_name(tmp_path):
  config_files.parse(
    [helpers.TINY_GIN],
    [
      "detection_experiment.init = 'imagenet'",
      f"shapes_det.pretrained_dir = '{tmp_path}'",
    ],
  )
  task = experiment_lib.build().config.task
  assert task.init_checkpoint == os.path.join(tmp_path, 'shapes_cls_pretrain')
  assert 'shapes_cls_pretrain.gin' in task.init_checkpoint_hint


def test_a_changed_recipe_names_a_new_cache(tmp_path):
  inits = datasets.shapes_inits(str(tmp_path))
  assert inits['imagenet'].path == os.path.join(tmp_path, 'shapes_cls_pretrain')
  assert inits['imagenet_plus_plus'].path == os.path.join(
    tmp_path, 'shapes_cls_noisy_student_r2', 'student'
  )
  assert 'shapes_cls_noisy_student_r2' in inits['imagenet_plus_plus'].make


@pytest.mark.parametrize(
  'init,expected',
  [('rand_init', None), ('/some/ckpt', '/some/ckpt')],
)
def test_rand_init_and_paths(init, expected):
  config_files.parse(
    [helpers.TINY_GIN], [f"detection_experiment.init = '{init}'"]
  )
  assert experiment_lib.build().config.task.init_checkpoint == expected


def test_a_name_the_dataset_lacks_is_an_error():
  config_files.parse(
    [helpers.TINY_GIN], ["detection_experiment.init = 'simclr'"]
  )
  with pytest.raises(ValueError, match='no simclr checkpoint'):
    experiment_lib.build()


def test_an_unknown_converter_is_named(tmp_path):
  config_files.parse([helpers.TINY_GIN], ["detection_experiment.init = '/x'"])
  config = experiment_lib.build().config
  config.task.init_checkpoint_converter = 'some_format'
  task = task_factory.get_task(config.task)
  with pytest.raises(init_restore.InitCheckpointError, match='some_format'):
    task.initialize(_model(task, 2))


LATE_STAGES = 'backbone/layer_with_weights-[6-9]/'


def test_a_skip_pattern_keeps_its_variables_at_their_init(tmp_path):
  source = _model(_task(), 1)
  prefix = _trainer_style_checkpoint(source, str(tmp_path / 'pre' / 'ckpt'))
  task = _task(
    f"detection_experiment.init = '{prefix}'",
    f"detection_experiment.init_checkpoint_skip = '{LATE_STAGES}'",
    init=prefix,
    logging_dir=str(tmp_path / 'run'),
  )
  assert task.task_config.init_checkpoint_skip == LATE_STAGES
  target = _model(task, 2)
  items = {'backbone': target.backbone}
  before = {
    k: v.numpy().copy()
    for k, v in init_restore.expected_variables(items).items()
  }
  wanted = {
    k: v.numpy()
    for k, v in init_restore.expected_variables(
      {'backbone': source.backbone}
    ).items()
  }
  task.initialize(target)
  changed = {'skipped': 0, 'restored': 0}
  for key, variable in init_restore.expected_variables(items).items():
    skipped = any(f'layer_with_weights-{i}/' in key for i in range(6, 10))
    want = before[key] if skipped else wanted[key]
    np.testing.assert_array_equal(variable.numpy(), want, err_msg=key)
    # Both groups hold weights that differ between the two models.
    if not np.array_equal(before[key], wanted[key]):
      changed['skipped' if skipped else 'restored'] += 1
  assert min(changed.values()) > 0, changed
  with open(tmp_path / 'run' / init_restore.REPORT_FILE) as f:
    report = json.load(f)
  assert report['skip_pattern'] == LATE_STAGES
  assert report['skipped'] and all(
    'layer_with_weights-' in k and k.split('-')[1][0] in '6789'
    for k in report['skipped']
  )
  assert report['counts']['restored'] + report['counts']['skipped'] == len(
    before
  )
  assert report['counts']['left_at_init'] == 0
  # Skipped on purpose, so not reported unused in the checkpoint either.
  assert not set(report['skipped']) & set(report['unused_in_checkpoint'])


@pytest.mark.parametrize(
  'pattern,message',
  [
    ('backbone/no_such_layer/', 'finds none'),
    ('backbone/[6-', 'not a regular'),
  ],
)
def test_a_skip_pattern_that_finds_nothing_is_an_error(
  tmp_path, pattern, message
):
  prefix = _trainer_style_checkpoint(_model(_task(), 1), str(tmp_path / 'ck'))
  task = _task(init=prefix)
  task.task_config.init_checkpoint_skip = pattern
  target = _model(task, 2)
  before = _values(target.backbone)
  with pytest.raises(init_restore.InitCheckpointError, match=message) as error:
    task.initialize(target)
  assert pattern in str(error.value) and prefix in str(error.value)
  for got, was in zip(_values(target.backbone), before):
    np.testing.assert_array_equal(got, was)


def test_a_skip_pattern_without_an_init_is_an_error():
  config_files.parse(
    [helpers.TINY_GIN],
    ["detection_experiment.init_checkpoint_skip = 'backbone/'"],
  )
  with pytest.raises(ValueError, match='init_checkpoint_skip'):
    experiment_lib.build()
