"""Noisy Student pre-training end to end on a tiny Shapes-Cls, and its labels."""

import json
import os

import helpers
import numpy as np
from official.vision.dataloaders import classification_input
import pytest
import tensorflow as tf

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.pseudo_labels import classification as labeller

pytestmark = pytest.mark.usefixtures('clear_gin')

# The tiny classifier of helpers.TINY_CLS as teacher and noised student.
TINY_NS = [
  *helpers.TINY_CLS,
  'experiment.config = @noisy_student_pipeline()',
  'noisy_student_pipeline.teacher = @classification_experiment()',
  'noisy_student_pipeline.student = @student/classification_experiment()',
  'noisy_student_pipeline.pool = @shapes_cls_pool()',
  'shapes_cls_pool.image_size = 64',
  'shapes_cls_pool.num_images = 40',
  'student/classification_experiment.randaugment_magnitude = 9',
  'student/classification_experiment.dropout_rate = 0.5',
  'student/classification_experiment.stochastic_depth_drop_rate = 0.2',
]


def _records(directory):
  pattern = os.path.join(directory, 'data-*')
  return list(tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))))


@pytest.mark.slow
def test_noisy_student_pipeline(data_dir, tmp_path):
  model_dir = str(tmp_path / 'ns')
  args = [f'--gin_file={helpers.TINY_GIN}', f'--model_dir={model_dir}']
  args += [f'--gin_param={p}' for p in TINY_NS]
  args.append('--gin_param=noisy_student_pipeline.threshold = 0.0')
  result = helpers.run_train(args, data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(model_dir, 'summary.json')) as f:
    summary = json.load(f)
  for stage in ('teacher', 'student'):
    assert summary[stage]['step'] == 4
    assert 0.0 <= summary[stage]['accuracy'] <= 1.0
  manifest = summary['pseudo_labels']
  assert manifest['num_images'] == 40 and manifest['num_kept'] == 40
  assert 0.0 <= manifest['accuracy_all'] <= 1.0
  # Model Garden's classification decoder reads the labels back.
  records = _records(os.path.join(model_dir, 'pseudo_labels'))
  assert len(records) == 40
  decoder = classification_input.Decoder()
  labels = [int(decoder.decode(r)['image/class/label']) for r in records]
  assert (
    np.bincount(labels, minlength=13).tolist()
    == (manifest['class_histogram_kept'] + [0] * 13)[:13]
  )
  # The student read human and pseudo labels.
  with open(os.path.join(model_dir, 'student', 'params.yaml')) as f:
    assert 'pseudo_labels/data-*' in f.read()


@pytest.mark.slow
def test_threshold_drops_low_confidence_images(data_dir, tmp_path):
  config_files.parse([helpers.TINY_GIN], TINY_NS)
  job = experiment_lib.build()
  job.prepare()
  # An untrained teacher: its checkpoint, written as a training run would.
  model = labeller.load_classifier(job.teacher.config, None)
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / 't' / 'ck'))
  config = job.teacher.config
  kept = {}
  for threshold in (0.0, 0.09, 1.01):
    manifest = labeller.label_pool(
      config,
      prefix,
      job.pool.pattern,
      str(tmp_path / f'labels_{threshold}'),
      threshold=threshold,
    )
    records = _records(str(tmp_path / f'labels_{threshold}'))
    assert len(records) == manifest['num_kept']
    kept[threshold] = manifest['num_kept']
  assert kept[0.0] == 40 and kept[1.01] == 0
  assert 0 <= kept[0.09] <= 40
