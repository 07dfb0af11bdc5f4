"""Segmentation pseudo labels: multi-scale probabilities averaged, low-
confidence pixels ignored, written by the same exporter as boxes."""

import json
import os

from helpers import run_tool
import numpy as np
from official.vision.dataloaders import segmentation_input
from PIL import Image
import pytest
import tensorflow as tf

from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import labeller_benchmark
from official_selftrain.pseudo_labels import manifest as manifest_lib
from official_selftrain.pseudo_labels import segmentation_teacher

pytestmark = pytest.mark.slow


def _images(pool, count=4):
  images = []
  for element in pool.dataset().take(count):
    images.append(tf.io.decode_image(element['encoded'], channels=3))
  return images


def _predict(teacher, images):
  batch = [teacher.preprocess(image) for image in images]
  canvas = tf.stack([b[0] for b in batch])
  info = tf.stack([b[1] for b in batch])
  return teacher.predict(canvas, info)['probabilities'].numpy(), info.numpy()


def test_scales_are_averaged_as_probabilities(seg_teacher_dir, seg_pool):
  images = _images(seg_pool)

  def probabilities(scales, flip=False):
    teacher = segmentation_teacher.SegmentationTeacher(
      seg_teacher_dir, scales=scales, flip=flip
    )
    return _predict(teacher, images)[0]

  half, full = probabilities([0.5]), probabilities([1.0])
  both = probabilities([0.5, 1.0])
  np.testing.assert_allclose(both, (half + full) / 2, atol=1e-5)
  np.testing.assert_allclose(both.sum(-1), 1.0, atol=1e-4)
  assert not np.allclose(half, full, atol=1e-3)  # the scales do differ
  flipped = probabilities([1.0], flip=True)
  assert flipped.shape == full.shape and not np.allclose(flipped, full)


@pytest.mark.parametrize(
  'length,window,starts',
  [
    (100, 128, [0]),
    (128, 128, [0]),
    (160, 128, [0, 32]),
    (256, 128, [0, 64, 128]),
  ],
)
def test_windows_cover_the_canvas_with_overlap(length, window, starts):
  assert segmentation_teacher.window_starts(length, window) == starts
  for length in range(129, 600, 7):
    got = segmentation_teacher.window_starts(length, window)
    assert got[0] == 0 and got[-1] == length - window
    assert all(0 < b - a <= window * 2 / 3 + 1 for a, b in zip(got, got[1:]))


def test_sliding_windows_see_input_size_canvases(seg_teacher_dir, seg_pool):
  """Scales up to 1 fit one window: the same probabilities as the whole
  canvas. Above, each pixel gets the mean of the logits of the windows over
  it, each window seen by the input-size model alone."""
  images = _images(seg_pool, 2)

  def teacher(scales, window):
    return segmentation_teacher.SegmentationTeacher(
      seg_teacher_dir, scales=scales, sliding_window=window
    )

  small = [0.75, 1.0]
  np.testing.assert_allclose(
    _predict(teacher(small, True), images)[0],
    _predict(teacher(small, False), images)[0],
    atol=1e-6,
  )
  windowed = teacher([2.0], True)
  assert list(windowed._models) == [(128, 128)]
  canvas = tf.stack([windowed.preprocess(image)[0] for image in images])
  scaled = tf.image.resize(canvas, [256, 256], method='bilinear')
  logits = windowed._window_logits(scaled, [256, 256]).numpy()
  tile = {
    s: windowed._logits(scaled[:, s : s + 128, :128], [128, 128]).numpy()
    for s in (0, 64, 128)
  }
  # Rows 0-63 lie in the first window alone, 64-127 in the first two.
  np.testing.assert_allclose(
    logits[:, :64, :64], tile[0][:, :64, :64], atol=1e-5
  )
  np.testing.assert_allclose(
    logits[:, 64:128, :64],
    (tile[0][:, 64:, :64] + tile[64][:, :64, :64]) / 2,
    atol=1e-5,
  )
  whole = _predict(teacher([2.0], False), images)[0]
  assert not np.allclose(_predict(windowed, images)[0], whole, atol=1e-3)


def test_pixels_below_the_threshold_are_ignored(seg_teacher_dir, seg_pool):
  teacher = segmentation_teacher.SegmentationTeacher(
    seg_teacher_dir, scales=[1.0], threshold=0.5
  )
  probabilities, info = _predict(teacher, _images(seg_pool, 1))
  labels = teacher.label_map(probabilities[0], info[0], 128, 128)
  top = probabilities[0].max(-1)
  np.testing.assert_array_equal(labels == 255, top < 0.5)
  sure = top >= 0.5
  np.testing.assert_array_equal(labels[sure], probabilities[0].argmax(-1)[sure])


def _records(output_dir):
  decoder = segmentation_input.Decoder()
  out = {}
  for path in tf.io.gfile.glob(os.path.join(output_dir, 'pseudo-*.tfrecord')):
    for record in tf.data.TFRecordDataset(path):
      data = decoder.decode(record)
      label = tf.io.decode_png(data['image/segmentation/class/encoded'])
      image = tf.io.decode_image(data['image/encoded'], channels=3)
      assert label.shape[:2] == image.shape[:2]
      example = tf.train.Example.FromString(record.numpy())
      source = example.features.feature['image/source_id'].bytes_list.value[0]
      out[source.decode()] = label.numpy()[..., 0]
  return out


def _truth(pool):
  return {
    e['source_id'].numpy().decode(): tf.io.decode_png(
      e['gt_segmentation']
    ).numpy()[..., 0]
    for e in pool.dataset()
  }


def test_exporter_writes_label_maps_and_their_manifest(
  seg_teacher_dir, seg_pool, tmp_path
):
  manifest = export.export_pseudo_labels(
    teacher_dir=seg_teacher_dir,
    pool=seg_pool,
    output_dir=str(tmp_path),
    num_shards=2,
    batch_size=5,
    scales=[0.75, 1.0, 1.5],
    flip=True,
    read_threshold=0.4,
    sliding_window=True,
  )
  labels, truth = _records(str(tmp_path)), _truth(seg_pool)
  assert sorted(labels) == sorted(truth) and len(labels) == 12
  stacked = np.stack([labels[k] for k in sorted(labels)])
  gt = np.stack([truth[k] for k in sorted(labels)])
  assert set(np.unique(stacked)) <= set(range(7)) | {255}
  assert manifest['complete'] and manifest['images_written'] == 12
  assert manifest['scales'] == [0.75, 1.0, 1.5] and manifest['flip']
  assert manifest['sliding_window']
  assert manifest['pixel_threshold'] == 0.4
  ignored = stacked == 255
  assert manifest['ignored_pixel_fraction'] == pytest.approx(ignored.mean())
  compared = ~ignored & (gt != 255)
  assert manifest['pixel_accuracy'] == pytest.approx(
    (stacked == gt)[compared].mean()
  )
  assert sum(manifest['class_histogram'].values()) == pytest.approx(1.0)
  # Per-class IoU over the compared pixels, and the foreground coverage.
  for c, iou in manifest['pixel_iou'].items():
    hit = ((stacked == int(c)) & (gt == int(c)) & compared).sum()
    union = (((stacked == int(c)) | (gt == int(c))) & compared).sum()
    assert iou == pytest.approx(hit / union)
  assert manifest['pixel_miou'] == pytest.approx(
    np.mean(list(manifest['pixel_iou'].values()))
  )
  foreground = (gt > 0) & (gt != 255)
  assert manifest['foreground_labelled_fraction'] == pytest.approx(
    (foreground & ~ignored).sum() / foreground.sum()
  )
  with open(tmp_path / manifest_lib.MANIFEST) as f:
    assert json.load(f)['pixel_accuracy'] == manifest['pixel_accuracy']


def test_visualize_draws_segmentation_overlays(
  seg_teacher_dir, seg_pool, tmp_path
):
  export.export_pseudo_labels(
    teacher_dir=seg_teacher_dir,
    pool=seg_pool,
    output_dir=str(tmp_path / 'pl'),
    num_shards=1,
    scales=[1.0],
  )
  output = str(tmp_path / 'seg.png')
  result = run_tool(
    'visualize.py',
    f'--pseudo_labels={tmp_path / "pl"}',
    f'--output={output}',
    '--num_images=4',
    '--columns=2',
    '--scale=1',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(output) as picture:
    assert picture.size == (2 * 256, 2 * 128)  # image beside its overlay


def test_labeller_benchmark_compares_scales_on_one_pool(
  seg_teacher_dir, seg_pool
):
  # Threshold 0: every pixel labelled, so a barely trained teacher's labels
  # have an accuracy too.
  report = labeller_benchmark.benchmark_seg_labeller(
    seg_teacher_dir,
    seg_pool,
    batch_size=4,
    repeats=2,
    flip=True,
    threshold=0.0,
    scales=(1.0, 1.5),
    sliding_window=True,
  )
  assert report['num_images'] == 12
  assert report['multi_scale'] == {
    'scales': [1.0, 1.5],
    'flip': True,
    'sliding_window': True,
  }
  rates = report['images_per_second']
  assert set(rates) == {'single_scale', 'multi_scale'}
  assert all(r > 0 for r in rates.values())
  assert report['multi_over_single_speed'] > 0
  for quality in report['quality'].values():
    assert 0.0 <= quality['pixel_accuracy'] <= 1.0
    assert quality['ignored_pixel_fraction'] == 0.0
    # Threshold 0: every pixel of the twelve 128x128 scenes is compared.
    assert quality['pixels_compared'] == 12 * 128 * 128
