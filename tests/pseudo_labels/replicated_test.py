"""The labeller on two replicas (MirroredStrategy, two logical CPUs) gives
the one-device labels, for a batch that does not split evenly.

The comparison runs in a subprocess (logical devices must be set up before
TensorFlow initialises); this file doubles as that script.
"""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def compare(teacher_dir, seg_teacher_dir):
  """Prints RESULT JSON: per teacher, the two runs' outputs compared."""
  import helpers
  import mirrored
  import numpy as np
  import tensorflow as tf

  _, two = mirrored.setup_two_cpus()
  from official_selftrain.data import shapes
  from official_selftrain.pseudo_labels import export
  from official_selftrain.pseudo_labels import replicated

  images = [
    shapes.det_scene(0, 'val', i, helpers.TINY_SPEC).image for i in range(5)
  ]
  result = {}
  for name, path in (('detector', teacher_dir), ('segmenter', seg_teacher_dir)):
    options = dict(
      score_floor=0.0,  # a 6-step teacher scores low: keep its top 100
      nms_iou_threshold=0.5,
      max_detections=100,
      pre_nms_top_k=None,
      nms_version=None,
      scales=(0.75, 1.0),
      flip=True,
      threshold=0.5,
      sliding_window=False,
    )
    one = export.restore_teacher(path, None, **options)
    with two.scope():
      on_two = replicated.ReplicatedTeacher(
        export.restore_teacher(path, None, **options), two
      )
    inputs = [one.preprocess(tf.constant(i)) for i in images]
    batch = tf.stack([x for x, _ in inputs]), tf.stack([y for _, y in inputs])
    a = {k: v.numpy() for k, v in one.predict(*batch).items()}
    b = {k: v.numpy() for k, v in on_two.predict(*batch).items()}
    shapes = {k: [list(a[k].shape), list(b[k].shape)] for k in a}
    if name == 'detector':
      # Both views (flip=True) come back per image; compared fused.
      missing, total = 0, 0
      for i in range(len(images)):
        dets = []
        for out in (a, b):
          boxes, classes, scores = one.detections(out, i)
          dets.append(list(zip(classes, scores, boxes)))
        total += len(dets[0])
        missing += helpers.unmatched_detections(dets[0], dets[1], 1e-4, 1e-4)
      result[name] = {
        'shapes': shapes,
        'detections': total,
        'unmatched': missing,
      }
    else:
      diff = float(np.abs(a['probabilities'] - b['probabilities']).max())
      result[name] = {'shapes': shapes, 'max_probability_diff': diff}
  print('RESULT ' + json.dumps(result))


@pytest.mark.slow
def test_two_replicas_label_as_one_device(teacher_dir, seg_teacher_dir):
  import subprocess

  out = subprocess.run(
    [sys.executable, __file__, teacher_dir, seg_teacher_dir],
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
  )
  assert out.returncode == 0, out.stderr[-4000:]
  line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')][-1]
  result = json.loads(line[len('RESULT ') :])
  detector, segmenter = result['detector'], result['segmenter']
  for shapes in list(detector['shapes'].values()) + list(
    segmenter['shapes'].values()
  ):
    assert shapes[0] == shapes[1] and shapes[0][0] == 5, result
  assert detector['detections'] > 0, result
  # As sets: float noise between batch sizes may swap boxes scored alike.
  assert detector['unmatched'] <= 0.02 * detector['detections'], result
  assert segmenter['max_probability_diff'] < 1e-5, result


if __name__ == '__main__':
  compare(sys.argv[1], sys.argv[2])
