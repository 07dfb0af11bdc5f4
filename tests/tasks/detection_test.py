"""DetectionTask: MirroredStrategy on two CPU devices matches one device.

The comparison runs in a subprocess, because logical devices must be set up
before TensorFlow initialises (this file doubles as that script).
"""

import json
import os
import sys

import pytest

from official_selftrain import config_files

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def compare(data_dir):
  """Prints JSON: max weight / loss differences, mirrored vs one device."""
  import mirrored
  import numpy as np
  import tensorflow as tf

  one, two = mirrored.setup_two_cpus()
  os.environ['SELFTRAIN_DATA_DIR'] = data_dir
  import helpers
  from official.core import task_factory
  from official.vision.tasks import retinanet

  from official_selftrain import registry_imports  # noqa: F401
  from official_selftrain.configs import experiment as experiment_lib

  config_files.parse([helpers.TINY_GIN], ['retinanet_model.use_sync_bn = True'])
  experiment = experiment_lib.build()
  experiment.prepare()
  config = experiment.config
  tf.random.set_seed(0)  # the same batch and initial weights every run
  task = task_factory.get_task(config.task)
  batch = next(iter(task.build_inputs(config.task.train_data)))
  # The images with the most positive anchors first: the replicas' shares of
  # the positives then differ, as a per-replica normalisation must not see.
  positives = tf.reduce_sum(batch[1]['box_weights'], axis=1)
  order = tf.argsort(positives, direction='DESCENDING')
  batch = tf.nest.map_structure(lambda t: tf.gather(t, order), batch)
  model = task.build_model()
  model(batch[0], training=False)
  initial = model.get_weights()
  names = [w.name for w in model.weights]

  def make_inputs(strategy):
    # The same global batch, split across replicas.
    dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch)
    )
    return next(iter(dataset))

  result = {}
  for name, model_garden_loss in (('ours', False), ('model_garden', True)):
    if model_garden_loss:  # Model Garden's own per-replica normalisation.
      task.build_losses = lambda **kw: retinanet.RetinaNetTask.build_losses(
        task, **kw
      )
    keys = (task.loss,)
    w1, l1 = mirrored.train(one, task, config, make_inputs, initial, 1, keys)
    w2, l2 = mirrored.train(two, task, config, make_inputs, initial, 1, keys)
    l1, l2 = l1[task.loss], l2[task.loss]
    diff = [float(np.abs(a - b).max()) for a, b in zip(w1, w2)]
    worst = int(np.argmax(diff))
    result[name] = {
      'max_weight_diff': diff[worst],
      'worst_weight': names[worst],
      'max_weight_change': max(
        float(np.abs(a - c).max()) for a, c in zip(w1, initial)
      ),
      'update_gap': mirrored.update_gap(w1, w2, initial),
      'losses_one_device': l1,
      'losses_mirrored': l2,
    }
  print('RESULT ' + json.dumps(result))


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(data_dir):
  import mirrored

  result = mirrored.run_script(__file__, data_dir)
  ours, garden = result['ours'], result['model_garden']
  assert ours['max_weight_change'] > 1e-3, result  # training moved the weights
  # One step from equal weights: the loss and the update agree up to float
  # noise (SyncBatchNorm computes the variance as E[x^2] - E[x]^2 across
  # replicas, a different rounding).
  for a, b in zip(ours['losses_one_device'], ours['losses_mirrored']):
    assert abs(a - b) <= mirrored.SAME_LOSS * abs(a), result
  assert ours['update_gap'] < mirrored.SAME_UPDATE, result
  # The checks can fail: Model Garden's per-replica normalisation does.
  rel = [
    abs(a - b) / abs(a)
    for a, b in zip(garden['losses_one_device'], garden['losses_mirrored'])
  ]
  assert max(rel) > 2 * mirrored.SAME_LOSS, result
  assert garden['update_gap'] > 2 * mirrored.SAME_UPDATE, result


if __name__ == '__main__':
  compare(sys.argv[1])
