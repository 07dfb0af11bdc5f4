"""Image-level pseudo labels: a classifier labels an unlabelled iconic pool.

Noisy Student's labelling step (PAPER.md, "The recipe"; Xie et al. 2019): the
teacher classifier, without noise, predicts each pool image; images whose top
probability is below a confidence threshold (0.3 in Noisy Student) are
dropped; the rest are written with the predicted class as
`image/class/label` (and its probability as `image/class/score`), so Model
Garden's classification reader trains a student on them beside the human
labels. A pool that keeps its true labels aside (Shapes-Cls) gets the
labels' accuracy in the manifest.

The detection exporter (`export.py`) writes boxes; this writes one label per
image. Preprocessing is Model Garden's classification parser's eval path, so
the teacher sees pool images as it saw its held-out split.
"""

import json
import os
import shutil
import time
from typing import Any
from typing import Dict
from typing import Optional

from absl import logging
import numpy as np
from official.core import config_definitions as cfg
from official.vision.dataloaders import classification_input
from official.vision.modeling import factory
import tensorflow as tf
import tf_keras

from official_selftrain import progress

MANIFEST = 'manifest.json'


def _parser(data, model) -> classification_input.Parser:
  return classification_input.Parser(
    output_size=model.input_size[:2],
    num_classes=model.num_classes,
    image_field_key=data.image_field_key,
    label_field_key=data.label_field_key,
    decode_jpeg_only=data.decode_jpeg_only,
    center_crop_fraction=data.center_crop_fraction,
    tf_resize_method=data.tf_resize_method,
  )


def _pool_dataset(pattern: str, config: cfg.ExperimentConfig, batch: int):
  """(encoded image, true label or -1, model input) batches, in file order."""
  data = config.task.validation_data
  parse = _parser(data, config.task.model).parse_fn(is_training=False)
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f'No pool files match {pattern!r}.')

  def one(raw):
    # One parse, as Model Garden's classification Decoder's, except that a
    # pool without labels reads -1 where the Decoder would fail.
    features = tf.io.parse_single_example(
      raw,
      {
        data.image_field_key: tf.io.FixedLenFeature([], tf.string),
        data.label_field_key: tf.io.FixedLenFeature([], tf.int64, -1),
      },
    )
    image, _ = parse(features)
    return features[data.image_field_key], features[data.label_field_key], image

  return (
    tf.data.TFRecordDataset(files)
    .map(one, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(batch)
    .prefetch(2)
  )


def load_classifier(config: cfg.ExperimentConfig, checkpoint: Optional[str]):
  """Model Garden's classifier with a training run's weights (None: as
  initialised)."""
  model = factory.build_classification_model(
    input_specs=tf_keras.layers.InputSpec(
      shape=[None] + list(config.task.model.input_size)
    ),
    model_config=config.task.model,
  )
  if checkpoint:
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial()
  return model


def _example(encoded: bytes, label: int, score: float) -> bytes:
  feature = {
    'image/encoded': tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[encoded])
    ),
    'image/format': tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[b'jpeg'])
    ),
    'image/class/label': tf.train.Feature(
      int64_list=tf.train.Int64List(value=[label])
    ),
    'image/class/score': tf.train.Feature(
      float_list=tf.train.FloatList(value=[score])
    ),
  }
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString()


def label_pool(
  config: cfg.ExperimentConfig,
  checkpoint: str,
  pool_pattern: str,
  output_dir: str,
  threshold: float = 0.3,
  batch_size: int = 100,
  num_shards: int = 4,
) -> Dict[str, Any]:
  """Labels the pool with the classifier; returns (and writes) the manifest.

  The directory appears complete or not at all (temporary name, then
  rename), so a killed run labels again from the start.

  Args:
    config: the teacher's experiment config (model and eval preprocessing).
    checkpoint: the teacher's checkpoint file prefix.
    pool_pattern: glob of the pool's TFRecords.
    output_dir: where `data-*.tfrecord` and `manifest.json` go.
    threshold: images whose top probability is below it are dropped.
    batch_size: inference batch.
    num_shards: output TFRecord shards.

  Returns:
    The manifest dict.
  """
  if os.path.exists(os.path.join(output_dir, MANIFEST)):
    with open(os.path.join(output_dir, MANIFEST)) as f:
      return json.load(f)
  model = load_classifier(config, checkpoint)
  tmp_dir = f'{output_dir}.tmp-{os.getpid()}'
  shutil.rmtree(tmp_dir, ignore_errors=True)
  os.makedirs(tmp_dir)
  start = time.time()
  counts = _write_labels(
    model,
    _pool_dataset(pool_pattern, config, batch_size),
    tmp_dir,
    threshold,
    num_shards,
  )
  manifest = _manifest(counts, threshold, checkpoint, pool_pattern, start)
  with open(os.path.join(tmp_dir, MANIFEST), 'w') as f:
    json.dump(manifest, f, indent=1)
  shutil.rmtree(output_dir, ignore_errors=True)
  os.rename(tmp_dir, output_dir)
  logging.info(
    'Pseudo labels: %d of %d pool images kept (score >= %.2f), accuracy of '
    'the kept labels %s, in %s',
    manifest['num_kept'],
    manifest['num_images'],
    threshold,
    manifest.get('accuracy_kept'),
    output_dir,
  )
  return manifest


def _write_labels(model, dataset, out_dir, threshold, num_shards):
  """Runs the teacher and writes the kept images; returns raw counts."""
  writers = [
    tf.io.TFRecordWriter(
      os.path.join(out_dir, f'data-{k:05d}-of-{num_shards:05d}.tfrecord')
    )
    for k in range(num_shards)
  ]
  predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False)))
  status = progress.Progress('pseudo labels', 'images', None, 10.0)
  labels, scores, truth, kept = [], [], [], 0
  for encoded, true_label, images in dataset:
    probs = predict(images).numpy()
    top, score = probs.argmax(axis=1), probs.max(axis=1)
    for raw, label, p in zip(encoded.numpy(), top, score):
      if p >= threshold:
        writers[kept % num_shards].write(_example(raw, int(label), float(p)))
        kept += 1
    labels += top.tolist()
    scores += score.tolist()
    truth += true_label.numpy().tolist()
    status.update(len(labels))
  for writer in writers:
    writer.close()
  return np.array(labels), np.array(scores), np.array(truth)


def _manifest(counts, threshold, checkpoint, pool, start) -> Dict[str, Any]:
  labels, scores, truth = counts
  keep = scores >= threshold
  manifest = {
    'checkpoint': checkpoint,
    'pool': pool,
    'threshold': threshold,
    'num_images': int(len(labels)),
    'num_kept': int(keep.sum()),
    'class_histogram_kept': np.bincount(labels[keep]).tolist(),
    'seconds': round(time.time() - start, 1),
  }
  if len(truth) and (truth >= 0).all():  # the pool's truth, held aside
    manifest['accuracy_all'] = float((labels == truth).mean())
    manifest['accuracy_kept'] = (
      float((labels[keep] == truth[keep]).mean()) if keep.any() else None
    )
  return manifest
