"""The soft-target focal loss: Model Garden's focal loss at hard targets, and
smallest where the prediction is the soft target."""

from official.vision.losses import focal_loss
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain.losses import soft_focal_loss


def test_hard_targets_give_model_gardens_focal_loss():
  rng = tf.random.Generator.from_seed(0)
  logits = rng.normal([2, 7, 3]) * 3.0
  y_true = tf.one_hot(
    tf.constant([[0, 1, 2, 0, 1, 2, 0], [2, 2, 1, 0, 0, 1, 1]]), 3
  ) * tf.cast(rng.uniform([2, 7, 1]) > 0.4, tf.float32)
  weight = rng.uniform([2, 7])
  theirs = focal_loss.FocalLoss(
    alpha=0.25, gamma=1.5, reduction=tf_keras.losses.Reduction.SUM
  )(y_true=y_true, y_pred=logits, sample_weight=weight)
  ours = soft_focal_loss.soft_focal_loss(
    y_true, logits, weight, alpha=0.25, gamma=1.5
  )
  assert float(theirs) > 0
  assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


@pytest.mark.parametrize('target', [0.2, 0.45, 0.8])
def test_soft_target_is_the_minimum(target):
  """Zero gradient where sigmoid(logit) is the target, and more loss on
  either side of it."""
  y_true = tf.constant([[[target]]])
  weight = tf.ones([1, 1])
  at_target = tf.math.log(target / (1.0 - target))

  def loss(logit):
    return soft_focal_loss.soft_focal_loss(
      y_true, tf.reshape(logit, [1, 1, 1]), weight, alpha=0.25, gamma=2.0
    )

  logit = tf.Variable(at_target)
  with tf.GradientTape() as tape:
    value = loss(logit)
  assert abs(float(tape.gradient(value, logit))) < 1e-5
  for step in (-0.5, 0.5):
    assert float(loss(at_target + step)) > float(value)


def test_weight_scales_each_anchor():
  y_true = tf.constant([[[0.3, 0.0], [1.0, 0.0]]])
  logits = tf.constant([[[0.1, -1.0], [0.5, 2.0]]])

  def loss(weight):
    return float(
      soft_focal_loss.soft_focal_loss(
        y_true, logits, tf.constant([weight]), alpha=0.25, gamma=2.0
      )
    )

  first, second = loss([1.0, 0.0]), loss([0.0, 1.0])
  assert first > 0 and second > 0
  assert loss([2.0, 1.0]) == pytest.approx(2 * first + second, rel=1e-6)
