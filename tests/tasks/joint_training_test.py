"""Joint training (PAPER.md Table 7): detection + w x classification loss."""

import os

import gin
import helpers
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.configs import self_training
from official_selftrain.tasks import detection

pytestmark = pytest.mark.usefixtures('clear_gin')

JOINT = [
  'detection_experiment.joint_weight = 0.5',
  'detection_experiment.joint_data = @shapes_cls()',
  'detection_experiment.joint_batch_size = 6',
  'shapes_cls.image_size = 64',
  'shapes_cls.num_train = 64',
  'shapes_cls.num_val = 16',
]


def _task_and_batch(experiment):
  experiment.prepare()
  config = experiment.config
  task = task_factory.get_task(config.task)
  tf_keras.utils.set_random_seed(1)
  batch = next(iter(task.build_inputs(config.task.train_data)))
  model = task.build_model()
  return task, model, batch


def _nonzero(grads):
  return sum(
    1 for g in grads if g is not None and float(tf.reduce_max(tf.abs(g))) > 0
  )


def test_joint_loss_is_the_weighted_sum_and_both_parts_train_the_backbone(
  data_dir,
):
  config_files.parse([helpers.TINY_GIN], JOINT)
  task, model, batch = _task_and_batch(experiment_lib.build())
  features, labels = batch
  assert labels[detection.JOINT_IMAGES].shape == (6, 64, 64, 3)
  assert labels[detection.JOINT_LABELS].shape == (6,)
  with tf.GradientTape(persistent=True) as tape:
    losses = task.step_losses(model, batch)
    alone = task.step_losses(
      model, (features, detection.pop_joint_inputs(labels)[0])
    )
  assert 'joint_loss' not in alone
  # The same model on the same detection batch: the joint step's total is
  # the detection total plus w times the classification loss.
  assert float(losses['total_loss']) == pytest.approx(
    float(losses['model_loss'] + tf.reduce_sum(model.losses))
    + 0.5 * float(losses['joint_loss']),
    rel=1e-5,
  )
  assert float(losses['joint_loss']) > 0
  backbone = model.backbone.trainable_variables
  detection_grads = tape.gradient(losses['model_loss'], backbone)
  joint_grads = tape.gradient(losses['joint_loss'], backbone)
  assert _nonzero(detection_grads) > len(backbone) // 2
  assert _nonzero(joint_grads) > len(backbone) // 2
  # The classification loss does not reach the detection head, nor the
  # detection loss the classification head.
  assert (
    _nonzero(
      tape.gradient(losses['joint_loss'], model.head.trainable_variables)
    )
    == 0
  )
  assert (
    _nonzero(
      tape.gradient(losses['model_loss'], model.joint_head.trainable_variables)
    )
    == 0
  )
  assert model.joint_head.kernel.shape[-1] == 13  # Shapes-Cls labels 1..12


def test_joint_weight_needs_data():
  config_files.parse(
    [helpers.TINY_GIN], ['detection_experiment.joint_weight = 0.5']
  )
  with pytest.raises(ValueError, match='joint_data'):
    experiment_lib.build()


def test_off_by_default(data_dir):
  config_files.parse([helpers.TINY_GIN], [])
  config = experiment_lib.build().config
  assert config.task.joint_weight == 0.0
  task = task_factory.get_task(config.task)
  assert not hasattr(task.build_model(), 'joint_head')


def test_student_trains_with_the_joint_loss(data_dir, tmp_path):
  config_files.parse([helpers.TINY_GIN], JOINT)
  pseudo = os.path.join(str(tmp_path), 'pseudo.tfrecord')
  helpers.write_pseudo_labels(pseudo, 16, helpers.TINY_SPEC)
  with gin.unlock_config():
    experiment = self_training.self_training_experiment(
      pseudo_label_pattern=pseudo, init_from_teacher=False, train_steps=2
    )
  task, model, batch = _task_and_batch(experiment)
  optimizer = tf_keras.optimizers.SGD(0.01)
  metrics = task.build_metrics(training=True)
  head = [v.numpy().copy() for v in model.joint_head.trainable_variables]
  logs = task.train_step(batch, model, optimizer, metrics)
  assert float(logs['joint_loss']) > 0
  moved = [v.numpy() for v in model.joint_head.trainable_variables]
  assert any((a != b).any() for a, b in zip(head, moved))
