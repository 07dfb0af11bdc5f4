"""Helpers shared by the tests (imported as `helpers`; tests/ is on sys.path)."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = os.path.join(REPO, 'tests', 'testdata', 'tiny.gin')
TINY_SEG_GIN = os.path.join(REPO, 'tests', 'testdata', 'tiny_seg.gin')
TINY_SEG_SELFTRAIN_GIN = os.path.join(
  REPO, 'tests', 'testdata', 'tiny_seg_selftrain.gin'
)
TINY_SPEC = shapes.SceneSpec(image_size=64, max_objects=3)
# With TINY_GIN: a classifier on the tiny detector's backbone, on a tiny
# Shapes-Cls.
TINY_CLS = [
  'experiment.config = @classification_experiment()',
  'classification_experiment.data = @shapes_cls()',
  'shapes_cls.image_size = 64',
  'shapes_cls.num_train = 64',
  'shapes_cls.num_val = 16',
  'classification_experiment.train_steps = 4',
  'classification_experiment.train_batch_size = 8',
  'classification_experiment.eval_batch_size = 16',
  'classification_experiment.steps_per_loop = 2',
  'classification_experiment.checkpoint_interval = 2',
  'classification_experiment.validation_interval = 4',
  'classification_experiment.shuffle_buffer_size = 64',
]


def run_train(args, data_dir, timeout=600, env=None):
  """Runs the training entry in a subprocess; returns CompletedProcess."""
  full_env = dict(
    os.environ, SELFTRAIN_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL='2'
  )
  full_env.update(env or {})
  return subprocess.run(
    [sys.executable, '-m', 'official_selftrain.train', *args],
    cwd=REPO,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def sigkill_when(command, ready, env, what, timeout=400):
  """Starts `command`, SIGKILLs it once `ready()` is true, waits for it.

  Fails if the process ends by itself first (nothing was interrupted) or
  `ready` takes longer than `timeout` seconds.
  """
  process = subprocess.Popen(
    command,
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + timeout
  try:
    while not ready():
      assert process.poll() is None, f'{what} ended before it was killed'
      assert time.time() < deadline, f'{what}: not ready in {timeout}s'
      time.sleep(0.1)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()


def write_with_corrupt_image(path, count, bad_index):
  """Writes `count` Shapes-Det examples; record `bad_index` has a bad JPEG."""
  with tf.io.TFRecordWriter(path) as writer:
    for index in range(count):
      example = embedded.scene_to_tf_example(
        shapes.det_scene(0, 'train', index, TINY_SPEC), str(index + 1)
      )
      if index == bad_index:
        feature = example.features.feature['image/encoded'].bytes_list
        feature.value[0] = feature.value[0][:40]  # a truncated JPEG
      writer.write(example.SerializeToString())


def scene_with_ids(index, split='train'):
  """A Shapes-Det scene and its instance-id map (object k has id k + 1)."""
  scene = shapes.det_scene(0, split, index)
  # Visible masks do not overlap.
  return scene, shapes.instance_id_map(scene.masks)


def run_tool(name, *args, timeout=300):
  """Runs tools/<name>.py with args; returns the CompletedProcess."""
  return subprocess.run(
    [sys.executable, os.path.join(REPO, 'tools', name), *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
  )


def write_pseudo_labels(path, count, spec):
  """Pseudo-label records: Shapes scenes' true boxes with scores 0.2 .. 1."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for index in range(count):
      scene = shapes.det_scene(0, 'unlabeled', index, spec)
      size = spec.image_size
      scores = rng.uniform(0.2, 1.0, len(scene.classes)).astype(np.float32)
      writer.write(
        schema.pseudo_label_example(
          str(index).encode(),
          embedded.encode_jpeg(scene.image),
          size,
          size,
          scene.boxes / size,
          scene.classes,
          scores,
        ).SerializeToString()
      )


def unmatched_detections(ours, theirs, box_tolerance, score_tolerance=1e-5):
  """How many of `ours` [(class, score, box)] have no equal detection in
  `theirs` (class equal, score and box within the tolerances). Matched as
  sets: an untrained detector scores many boxes alike, and float noise
  between two equal computations may swap their order or the last one kept."""
  left = list(theirs)
  missing = 0
  for label, score, box in ours:
    for j, (other_label, other_score, other_box) in enumerate(left):
      if (
        label == other_label
        and abs(score - other_score) < score_tolerance
        and np.abs(np.asarray(box) - other_box).max() < box_tolerance
      ):
        del left[j]
        break
    else:
      missing += 1
  return missing


def free_ports(count):
  """`count` TCP ports free on 127.0.0.1 now (for a local cluster)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports
