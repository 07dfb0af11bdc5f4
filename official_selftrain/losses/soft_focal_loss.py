"""RetinaNet's focal loss generalised to soft targets (beyond the paper).

The student's soft pseudo boxes (`self_training_experiment.pseudo_soft_floor`)
teach the class of a box the teacher half-saw with the teacher's score as the
target, not 1 (a label) and not 0 (background). Model Garden's `FocalLoss`
takes hard targets only (it tests `y_true == 1`); this is its form written in
the target y, as Quality Focal Loss (Li et al., 2020) writes it:

    FL(p, y) = (y a + (1 - y)(1 - a)) * |y - p|^gamma * BCE(y, p)

At y in {0, 1} it is Model Garden's focal loss term for term (tested); at a
soft y it is smallest at p = y.
"""

import tensorflow as tf


def soft_focal_loss(
  y_true: tf.Tensor,
  logits: tf.Tensor,
  sample_weight: tf.Tensor,
  alpha: float,
  gamma: float,
) -> tf.Tensor:
  """The summed focal loss of soft targets.

  Args:
    y_true: [batch, anchors, classes] targets in [0, 1].
    logits: [batch, anchors, classes] class logits.
    sample_weight: [batch, anchors] weight of each anchor.
    alpha: focal loss alpha (weight of the positive term).
    gamma: focal loss gamma.

  Returns:
    The weighted sum over every anchor and class, a float32 scalar.
  """
  y_true = tf.cast(y_true, tf.float32)
  logits = tf.cast(logits, tf.float32)
  cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
    labels=y_true, logits=logits
  )
  # |y - p|^gamma with the gradient of a power at 0 kept finite (gamma >= 1
  # in RetinaNet, but a small gamma at y == p would give NaN).
  distance = tf.maximum(tf.abs(y_true - tf.sigmoid(logits)), 1e-12)
  modulator = tf.pow(distance, gamma)
  balance = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
  loss = balance * modulator * cross_entropy
  return tf.reduce_sum(loss * tf.cast(sample_weight, tf.float32)[..., None])
