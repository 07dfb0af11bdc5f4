"""`train --strategy=multi_worker_mirrored` as a user runs it: two worker
processes on 127.0.0.1 (TF_CONFIG); only the chief writes the run's files; a
killed worker stops the run with a clear error, and the rerun resumes."""

import json
import os
import signal
import subprocess
import sys
import time

from helpers import REPO
from helpers import TINY_GIN
from helpers import free_ports
import pytest
import tensorflow as tf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _start_workers(data_dir, model_dir, steps, mode='train_and_eval'):
  """Two `train` processes of one cluster; worker 0 is the chief."""
  cluster = {'worker': [f'127.0.0.1:{p}' for p in free_ports(2)]}
  workers = []
  for index in range(2):
    tf_config = {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}
    env = dict(
      os.environ,
      SELFTRAIN_DATA_DIR=data_dir,
      TF_CPP_MIN_LOG_LEVEL='2',
      TF_CONFIG=json.dumps(tf_config),
    )
    workers.append(
      subprocess.Popen(
        [
          sys.executable,
          '-m',
          'official_selftrain.train',
          f'--gin_file={TINY_GIN}',
          f'--model_dir={model_dir}',
          '--strategy=multi_worker_mirrored',
          f'--mode={mode}',
          f'--gin_param=detection_experiment.train_steps={steps}',
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  return workers


def _finish(workers, timeout=900):
  logs = [w.communicate(timeout=timeout)[0] for w in workers]
  return [w.returncode for w in workers], logs


def _step(model_dir):
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


def test_only_the_chief_writes_and_a_lost_worker_resumes(data_dir, tmp_path):
  model_dir = str(tmp_path / 'model')
  workers = _start_workers(data_dir, model_dir, steps=300, mode='train')
  deadline = time.time() + 600
  while _step(model_dir) < 4:
    assert all(w.poll() is None for w in workers), _finish(workers)[1]
    assert time.time() < deadline, 'no checkpoint at step 4 in 600 s'
    time.sleep(0.5)
  workers[1].send_signal(signal.SIGKILL)
  codes, logs = _finish(workers, timeout=600)
  assert codes[0] == 1, logs[0][-3000:]
  assert 'A worker of the cluster stopped' in logs[0], logs[0][-3000:]
  assert 'Traceback' not in logs[0][-3000:]
  killed_at = _step(model_dir)
  assert 4 <= killed_at < 300

  # Both rerun (a shorter schedule: the test's time): resumed, not restarted.
  codes, logs = _finish(_start_workers(data_dir, model_dir, killed_at + 2))
  assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  for log in logs:
    assert f'train | step: {killed_at:6d} | training until step' in log
  assert _step(model_dir) == killed_at + 2
  # The chief's files only: an event file per chief run (the first and the
  # rerun) and summary dir, none from the worker; no scratch dir left.
  events = {
    sub: tf.io.gfile.glob(os.path.join(model_dir, sub, 'events.out.*'))
    for sub in ('train', 'validation')
  }
  assert (len(events['train']), len(events['validation'])) == (2, 1), events
  assert not tf.io.gfile.glob(os.path.join(model_dir, 'workertemp_*'))
  with open(os.path.join(model_dir, 'eval_results.json')) as f:
    assert [r['step'] for r in json.load(f)] == [killed_at + 2]
  for name in ('params.yaml', 'config.gin'):
    assert os.path.exists(os.path.join(model_dir, name))
