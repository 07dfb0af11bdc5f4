"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train the
detector and the self-training student as one process does on the same
global batch (losses, Loss Normalization's EMAs and weights).

Each worker is a process of its own (TF_CONFIG must be set before TensorFlow
starts), running this file as a script; so does the one-device reference,
which writes the global batch and initial weights the workers load.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

from official_selftrain import config_files

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

STEPS = 3
DETECTOR_KEYS = ('total_loss',)
STUDENT_KEYS = (
  'total_loss',
  'human_loss',
  'pseudo_loss',
  'human_loss_ema',
  'pseudo_loss_ema',
)


def _tasks(data_dir):
  """(detector task, student task, their configs) on the tiny config."""
  os.environ['SELFTRAIN_DATA_DIR'] = data_dir
  import gin
  import helpers
  from official.core import task_factory

  from official_selftrain import registry_imports  # noqa: F401
  from official_selftrain.configs import experiment as experiment_lib
  from official_selftrain.configs import self_training

  config_files.parse([helpers.TINY_GIN], ['retinanet_model.use_sync_bn = True'])
  detector = experiment_lib.build()
  detector.prepare()
  pseudo = os.path.join(data_dir, 'pseudo_for_multi_worker.tfrecord')
  if not os.path.exists(pseudo):
    helpers.write_pseudo_labels(pseudo, 16, helpers.TINY_SPEC)
  with gin.unlock_config():
    student = self_training.self_training_experiment(
      pseudo_label_pattern=pseudo,
      init_from_teacher=False,
      train_steps=STEPS,
      alpha=2.0,
    )
  student.prepare()
  return [
    (task_factory.get_task(e.config.task), e.config)
    for e in (detector, student)
  ]


def _halves(features, labels):
  """make_inputs: replica r of 2 takes half r of the global batch."""
  import tensorflow as tf

  def make_inputs(strategy):
    def replica(ctx):
      r, n = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
      size = tf.nest.flatten(features)[0].shape[0] // n
      return tf.nest.map_structure(
        lambda t: t[r * size : (r + 1) * size], (features, labels)
      )

    return strategy.experimental_distribute_values_from_function(replica)

  return make_inputs


def reference(data_dir, batch_file):
  """One device: writes the batches and initial weights, prints RESULT."""
  import mirrored
  import tensorflow as tf

  one = tf.distribute.OneDeviceStrategy('/cpu:0')
  saved, result = [], {}
  for name, (task, config) in zip(('detector', 'student'), _tasks(data_dir)):
    tf.random.set_seed(0)
    features, labels = next(iter(task.build_inputs(config.task.train_data)))
    model = task.build_model()
    model(features, training=False)
    initial = model.get_weights()
    keys = DETECTOR_KEYS if name == 'detector' else STUDENT_KEYS
    weights, logs = mirrored.train(
      one, task, config, lambda s: (features, labels), initial, STEPS, keys
    )
    batch = tf.nest.map_structure(lambda t: t.numpy(), (features, labels))
    saved.append((batch, initial))
    result[name] = {'logs': logs, 'weights': weights, 'initial': initial}
  with open(batch_file, 'wb') as f:
    pickle.dump(saved, f)
  with open(batch_file + '.result', 'wb') as f:
    pickle.dump(result, f)


def worker(data_dir, batch_file, out_file):
  """One worker of the cluster TF_CONFIG names; the chief writes results."""
  import mirrored
  import tensorflow as tf

  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  with open(batch_file, 'rb') as f:
    saved = pickle.load(f)
  result = {'replicas': strategy.num_replicas_in_sync}
  tasks = _tasks(data_dir)
  for name, (task, config), (batch, initial) in zip(
    ('detector', 'student'), tasks, saved
  ):
    features, labels = tf.nest.map_structure(tf.constant, batch)
    if name == 'student':
      split = task.batch_split()
      make_inputs = mirrored.human_pseudo_replicas(
        features, labels, split.human, split.pseudo
      )
    else:
      make_inputs = _halves(features, labels)
    keys = DETECTOR_KEYS if name == 'detector' else STUDENT_KEYS
    weights, logs = mirrored.train(
      strategy, task, config, make_inputs, initial, STEPS, keys
    )
    result[name] = {'logs': logs, 'weights': weights}
  if strategy.cluster_resolver.task_id == 0:
    with open(out_file, 'wb') as f:
      pickle.dump(result, f)


def _run_cluster(data_dir, batch_file, out_file):
  import helpers
  import mirrored

  ports = helpers.free_ports(2)
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  workers = []
  for index in range(2):
    tf_config = {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}
    env = dict(
      os.environ, **mirrored.COMPARISON_ENV, TF_CONFIG=json.dumps(tf_config)
    )
    workers.append(
      subprocess.Popen(
        [sys.executable, __file__, 'worker', data_dir, batch_file, out_file],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  logs = [w.communicate(timeout=600)[1] for w in workers]
  for w, log in zip(workers, logs):
    assert w.returncode == 0, log[-4000:]


@pytest.mark.slow
def test_two_workers_train_as_one_process(data_dir, tmp_path):
  import mirrored

  batch_file = str(tmp_path / 'batch.pkl')
  ref = subprocess.run(
    [sys.executable, __file__, 'reference', data_dir, batch_file],
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, **mirrored.COMPARISON_ENV),
  )
  assert ref.returncode == 0, ref.stderr[-4000:]
  out_file = str(tmp_path / 'workers.pkl')
  _run_cluster(data_dir, batch_file, out_file)
  with open(batch_file + '.result', 'rb') as f:
    one = pickle.load(f)
  with open(out_file, 'rb') as f:
    two = pickle.load(f)
  assert two['replicas'] == 2
  figures = {}
  for name in ('detector', 'student'):
    change = mirrored.max_diff(one[name]['weights'], one[name]['initial'])
    gap = mirrored.update_gap(
      one[name]['weights'], two[name]['weights'], one[name]['initial']
    )
    rel = max(
      abs(a - b) / max(abs(a), 1e-3)
      for key, values in one[name]['logs'].items()
      for a, b in zip(values, two[name]['logs'][key])
    )
    figures[name] = {
      'max_weight_change': change,
      'update_gap': gap,
      'max_relative_log_diff': rel,
    }
    assert change > 1e-3, (name, figures)  # training moved the weights
    # Float noise of SyncBatchNorm's cross-replica moments (mirrored on two
    # CPUs of one process: losses within 2e-5 relative, seen here).
    assert gap < mirrored.SAME_UPDATE, (name, figures)
    for key, values in one[name]['logs'].items():
      for a, b in zip(values, two[name]['logs'][key]):
        assert abs(a - b) <= mirrored.SAME_LOSS * max(abs(a), 1e-3), (
          name,
          key,
          a,
          b,
        )
  print('MULTI_WORKER ' + json.dumps(figures))


if __name__ == '__main__':
  if sys.argv[1] == 'reference':
    reference(sys.argv[2], sys.argv[3])
  else:
    worker(sys.argv[2], sys.argv[3], sys.argv[4])
