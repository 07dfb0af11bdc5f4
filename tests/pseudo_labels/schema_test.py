"""The pseudo-label contract: the student's decoder reads what the exporter
writes, thresholds pseudo boxes at read time, and keeps human labels whole."""

from helpers import TINY_SPEC
from helpers import write_pseudo_labels
import numpy as np
import pytest
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import schema

_SCORES = {schema.SCORE_KEY: tf.io.VarLenFeature(tf.float32)}


def _scores(record) -> np.ndarray:
  parsed = tf.io.parse_single_example(record, _SCORES)[schema.SCORE_KEY]
  return tf.sparse.to_dense(parsed).numpy()


@pytest.fixture
def pseudo_records(tmp_path):
  """Six pseudo-labelled scenes, scores uniform in [0.2, 1)."""
  path = str(tmp_path / 'p.tfrecord')
  write_pseudo_labels(path, 6, TINY_SPEC)
  return list(tf.data.TFRecordDataset(path))


def test_decoder_drops_pseudo_boxes_below_threshold(pseudo_records):
  decoder = schema.PseudoLabelDecoder(score_threshold=0.5)
  kept = total = 0
  for record in pseudo_records:
    decoded = decoder.decode(record)
    scores = _scores(record)
    expected = int(np.sum(scores >= 0.5))
    assert decoded['groundtruth_boxes'].shape[0] == expected
    assert decoded['groundtruth_area'].shape[0] == expected
    kept += expected
    total += len(scores)
  assert 0 < kept < total


def test_decoder_keeps_every_human_box():
  """Human labels carry no score: the same decoder keeps all their boxes."""
  decoder = schema.PseudoLabelDecoder(score_threshold=0.5)
  scene = shapes.det_scene(0, 'train', 0, TINY_SPEC)
  human = embedded.scene_to_tf_example(scene, '1').SerializeToString()
  decoded = decoder.decode(tf.constant(human))
  assert decoded['groundtruth_boxes'].shape[0] == len(scene.classes)


def test_ignore_band_between_floor_and_threshold(pseudo_records):
  ignore = 7
  decoder = schema.PseudoLabelDecoder(
    score_threshold=0.5, ignore_floor=0.3, ignore_label=ignore
  )
  seen_ignored = 0
  for record in pseudo_records:
    classes = decoder.decode(record)['groundtruth_classes'].numpy()
    scores = _scores(record)
    kept = scores[scores >= 0.3]
    assert len(classes) == len(kept)
    assert ((classes == ignore) == (kept < 0.5)).all()
    seen_ignored += int((classes == ignore).sum())
  assert seen_ignored > 0


@pytest.mark.parametrize(
  'head, expected',
  [
    (b'\xff\xd8\xff\xe0', 'JPEG'),
    (b'\x89PNG\r\n\x1a\n', 'PNG'),
    (b'GIF89a', 'GIF'),
    (b'BM\x00\x00', 'BMP'),
    (b'not an image', None),
  ],
)
def test_image_format_from_signature(head, expected):
  assert schema.image_format(head + b'\x00' * 16) == expected


def _soft_targets(decoded) -> np.ndarray:
  return decoded['groundtruth_attributes'][schema.SOFT_TARGET].numpy()[:, 0]


def test_soft_band_keeps_boxes_with_their_score_as_target(pseudo_records):
  """Boxes in [soft floor, threshold) stay boxes of their class with their
  score as target; at or above the threshold the target is 1; below the
  floor they are dropped."""
  decoder = schema.PseudoLabelDecoder(score_threshold=0.5, soft_floor=0.3)
  hard = schema.PseudoLabelDecoder(score_threshold=0.5)
  seen_soft = 0
  for record in pseudo_records:
    decoded = decoder.decode(record)
    scores = _scores(record)
    kept = scores[scores >= 0.3]
    targets = _soft_targets(decoded)
    assert targets.shape == kept.shape
    np.testing.assert_allclose(targets, np.where(kept < 0.5, kept, 1.0))
    classes = decoded['groundtruth_classes'].numpy()
    np.testing.assert_array_equal(
      classes[kept >= 0.5], hard.decode(record)['groundtruth_classes'].numpy()
    )
    seen_soft += int((kept < 0.5).sum())
  assert seen_soft > 0


def test_soft_band_gives_human_boxes_target_one():
  decoder = schema.PseudoLabelDecoder(score_threshold=0.5, soft_floor=0.3)
  scene = shapes.det_scene(0, 'train', 0, TINY_SPEC)
  human = embedded.scene_to_tf_example(scene, '1').SerializeToString()
  targets = _soft_targets(decoder.decode(tf.constant(human)))
  np.testing.assert_array_equal(targets, np.ones(len(scene.classes)))


def test_ignore_and_soft_floor_exclude_each_other():
  with pytest.raises(ValueError, match='exclude'):
    schema.PseudoLabelDecoder(
      score_threshold=0.5, ignore_floor=0.2, soft_floor=0.3
    )
