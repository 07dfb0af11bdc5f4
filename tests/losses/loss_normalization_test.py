"""Loss Normalization against a hand-computed example."""

import numpy as np
import pytest
import tensorflow as tf

from official_selftrain.losses import loss_normalization as ln


def test_formula_by_hand():
  # L_h = 2, L_p = 8, Lbar_h = 1, Lbar_p = 4, a = 3:
  # (2 + 3 * (1 / 4) * 8) / (1 + 3) = (2 + 6) / 4 = 2.
  got = ln.loss_normalization(
    tf.constant(2.0),
    tf.constant(8.0),
    tf.constant(1.0),
    tf.constant(4.0),
    alpha=3.0,
  )
  assert float(got) == pytest.approx(2.0)
  assert float(ln.plain_sum(tf.constant(2.0), tf.constant(8.0), 3.0)) == 26.0


def test_ema_ratio_is_a_constant_for_the_gradient():
  human, pseudo = tf.Variable(2.0), tf.Variable(8.0)
  with tf.GradientTape() as tape:
    # EMAs that depend on the losses must not carry gradient.
    loss = ln.loss_normalization(
      human, pseudo, human * 0.5, pseudo * 0.5, alpha=3.0
    )
  d_human, d_pseudo = tape.gradient(loss, [human, pseudo])
  assert float(d_human) == pytest.approx(1 / 4)
  assert float(d_pseudo) == pytest.approx(3 * (1.0 / 4.0) / 4)


def test_ema_update_with_bias_correction_by_hand():
  ema, count = tf.Variable(0.0), tf.Variable(0, dtype=tf.int64)
  decay = 0.9
  # Step 1: m = 0.1 * 5 = 0.5; corrected 0.5 / (1 - 0.9) = 5.
  assert float(ln.ema_update(ema, count, tf.constant(5.0), decay)) == (
    pytest.approx(5.0)
  )
  count.assign_add(1)
  # Step 2: m = 0.9 * 0.5 + 0.1 * 1 = 0.55; corrected 0.55 / 0.19.
  got = ln.ema_update(ema, count, tf.constant(1.0), decay)
  assert float(ema) == pytest.approx(0.55)
  assert float(got) == pytest.approx(0.55 / 0.19)
  np.testing.assert_allclose(float(got), (0.9 * 5 + 1) / 1.9, rtol=1e-6)
