"""Runs a task's train_step under a strategy from fixed weights (test helper).

Logical CPU devices must be configured before TensorFlow initialises, so the
tests that compare MirroredStrategy with one device run these in a subprocess.
"""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf


def setup_two_cpus():
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
  )
  return (
    tf.distribute.OneDeviceStrategy('/cpu:0'),
    tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']),
  )


def train(
  strategy,
  task,
  config,
  make_inputs,
  initial_weights,
  steps=3,
  log_keys=('total_loss',),
):
  """`steps` train steps; returns (final weights, {key: [per-step values]}).

  Args:
    strategy: a tf.distribute strategy.
    task: the task; its model is built under the strategy.
    config: the ExperimentConfig (for the optimizer).
    make_inputs: strategy -> distributed inputs for one step (reused).
    initial_weights: weights to start from.
    steps: how many steps.
    log_keys: logs to record each step (mean over replicas).

  Returns:
    (weights, logs).
  """
  with strategy.scope():
    model = task.build_model()
    model.set_weights(initial_weights)
    optimizer = task.create_optimizer(
      config.trainer.optimizer_config, config.runtime
    )
    metrics = task.build_metrics(training=True)
  inputs = make_inputs(strategy)

  @tf.function
  def step():
    logs = strategy.run(
      task.train_step, args=(inputs, model, optimizer, metrics)
    )
    return {
      k: strategy.reduce(tf.distribute.ReduceOp.MEAN, logs[k], None)
      for k in log_keys
    }

  history = {k: [] for k in log_keys}
  for _ in range(steps):
    for metric in metrics:
      metric.reset_state()
    for k, v in step().items():
      history[k].append(float(v))
  return [w.numpy() for w in model.weights], history


def human_pseudo_replicas(features, labels, human: int, pseudo: int):
  """make_inputs for `train`: each replica reads [its human part | its pseudo
  part] of a one-device [human | pseudo] batch, as the combination reader
  does per replica; together they are the one-device batch."""

  def make_inputs(strategy):
    def replica(ctx):
      r, n = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
      h, p = human // n, pseudo // n

      def take(t):
        return tf.concat(
          [t[r * h : (r + 1) * h], t[human + r * p : human + (r + 1) * p]],
          axis=0,
        )

      return tf.nest.map_structure(take, (features, labels))

    return strategy.experimental_distribute_values_from_function(replica)

  return make_inputs


def max_diff(a, b):
  """Largest difference over float weights (step counters excluded)."""
  return max(
    float(np.abs(x - y).max())
    for x, y in zip(a, b)
    if np.asarray(x).dtype.kind == 'f'
  )


def run_script(script, data_dir):
  """Runs a comparison script in a fresh process; returns its RESULT JSON."""
  out = subprocess.run(
    [sys.executable, script, data_dir],
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
  )
  assert out.returncode == 0, out.stderr[-4000:]
  lines = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
  return json.loads(lines[-1][len('RESULT ') :])
