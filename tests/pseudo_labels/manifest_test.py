"""Per-shard stats, their merge, and manifest.json (no teacher needed)."""

import json
import os

import numpy as np
import pytest

from official_selftrain.pseudo_labels import manifest
from official_selftrain.pseudo_labels import shard_files

_BOXES = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])


def _stats_of_one_labelled_image(num_classes=3):
  """One image: a right box above the threshold, one below; two true
  objects, the second of a class the teacher does not know (5)."""
  stats = manifest.ShardStats(read_threshold=0.5, num_classes=num_classes)
  stats.add(
    _BOXES,
    np.array([1, 2]),
    np.array([0.9, 0.3]),
    _BOXES,
    np.array([1, 5]),
  )
  return stats


def _empty_image(stats):
  stats.add(
    np.zeros([0, 4]),
    np.zeros([0], np.int64),
    np.zeros([0]),
    np.zeros([0, 4]),
    np.zeros([0], np.int64),
  )


def test_shard_stats_count_boxes_at_floor_and_at_threshold():
  stats = _stats_of_one_labelled_image().as_dict()
  assert stats['images_written'] == 1
  assert stats['boxes_at_export_floor'] == 2
  assert stats['boxes_at_read_threshold'] == 1
  assert stats['boxes_per_class_at_read_threshold'] == {'1': 1}


def test_shard_stats_count_images_without_box_at_threshold():
  stats = _stats_of_one_labelled_image()
  _empty_image(stats)
  assert stats.as_dict()['images_without_box_at_threshold'] == 1


def test_shard_stats_ignore_ground_truth_of_classes_the_teacher_lacks():
  counts = _stats_of_one_labelled_image().as_dict()['quality_counts']
  assert counts == {
    'true_positives': 1,
    'predictions': 1,
    'ground_truth': 1,
    'images': 1,
  }


def _two_shards():
  first = _stats_of_one_labelled_image()
  first.skipped.append({'source_id': 'x', 'shard': 0, 'reason': 'bad'})
  second = _stats_of_one_labelled_image()
  _empty_image(second)
  return [first.as_dict(), second.as_dict()]


def test_merge_stats_sums_the_counts():
  merged = manifest.merge_stats(_two_shards())
  assert merged['images_written'] == 3
  assert merged['images_skipped'] == 1
  assert merged['images_read'] == 4
  assert merged['boxes_at_export_floor'] == 4
  assert merged['boxes_per_class_at_read_threshold'] == {'1': 2}
  assert merged['skipped'] == [{'source_id': 'x', 'shard': 0, 'reason': 'bad'}]


def test_merge_stats_derives_boxes_per_image_and_quality():
  merged = manifest.merge_stats(_two_shards())
  assert merged['boxes_per_image_at_read_threshold'] == pytest.approx(2 / 3)
  quality = merged['quality_at_read_threshold']
  assert quality['available']
  assert quality['precision'] == 1.0 and quality['recall'] == 1.0


def test_merge_stats_give_quality_at_each_threshold():
  quality = manifest.merge_stats(_two_shards())['quality_by_threshold']
  # The right box scores 0.9, the wrong-class one 0.3.
  assert quality['0.3'] == {
    'precision': 0.5,
    'recall': 1.0,
    'pseudo_boxes_per_image': pytest.approx(4 / 3),
  }
  assert quality['0.5']['precision'] == 1.0
  assert quality['0.9']['recall'] == 1.0
  assert quality['0.9']['pseudo_boxes_per_image'] == pytest.approx(2 / 3)


def test_merge_at_another_read_threshold_recounts_from_the_grid():
  """Shards counted at 0.5 and read by a student at 0.3: the figures at
  the read threshold are 0.3's, never 0.5's under 0.3's name."""
  at_05 = manifest.merge_stats(_two_shards(), 0.5)
  assert at_05 == manifest.merge_stats(_two_shards())
  at_03 = manifest.merge_stats(_two_shards(), 0.3)
  assert at_03['boxes_at_read_threshold'] == 4
  assert at_03['boxes_per_image_at_read_threshold'] == pytest.approx(4 / 3)
  quality = at_03['quality_at_read_threshold']
  assert quality['precision'] == 0.5 and quality['recall'] == 1.0
  # Counted at 0.5 only: not carried over to 0.3.
  assert at_03['boxes_per_class_at_read_threshold'] is None
  assert at_03['images_without_box_at_threshold'] is None
  off_grid = manifest.merge_stats(_two_shards(), 0.35)
  assert off_grid['quality_at_read_threshold'] == {'available': False}
  assert off_grid['boxes_per_image_at_read_threshold'] is None


def test_manifest_at_a_students_threshold(tmp_path):
  output_dir = str(tmp_path)
  for index in range(2):
    _finish_shard(output_dir, index, 2)
  manifest.write_manifest(output_dir, 2, {'read_threshold': 0.5}, 1.0)
  restated = manifest.write_manifest(
    output_dir, 2, None, 0.0, write=False, read_threshold=0.3
  )
  assert restated['read_threshold'] == 0.3
  assert restated['quality_at_read_threshold']['precision'] == 0.5
  assert manifest.read_manifest(output_dir)['read_threshold'] == 0.5


def test_manifest_leaves_out_thresholds_below_the_export_floor(tmp_path):
  output_dir = str(tmp_path)
  for index in range(2):
    _finish_shard(output_dir, index, 2)
  written = manifest.write_manifest(output_dir, 2, {'export_floor': 0.3}, 1.0)
  assert sorted(written['quality_by_threshold']) == [
    '0.3',
    '0.4',
    '0.5',
    '0.6',
    '0.7',
    '0.8',
    '0.9',
  ]


def test_merge_of_no_shard_has_no_quality():
  merged = manifest.merge_stats([])
  assert merged['images_read'] == 0
  assert merged['quality_at_read_threshold'] == {'available': False}


def _finish_shard(output_dir, index, num_shards):
  path = shard_files.shard_path(output_dir, index, num_shards)
  shard_files.atomic_write_bytes(path, b'')
  manifest.write_shard_stats(
    output_dir, index, num_shards, _stats_of_one_labelled_image()
  )


def test_manifest_merges_finished_shards_only(tmp_path):
  out = str(tmp_path)
  _finish_shard(out, 0, 3)
  _finish_shard(out, 2, 3)
  # A shard without its stats file is not finished.
  shard_files.atomic_write_bytes(shard_files.shard_path(out, 1, 3), b'')
  written = manifest.write_manifest(out, 3, {'teacher_step': 6}, seconds=2.0)
  assert written['finished_shards'] == [0, 2]
  assert not written['complete']
  assert written['images_written'] == 2
  assert written['teacher_step'] == 6
  with open(os.path.join(out, manifest.MANIFEST)) as f:
    assert json.load(f) == written


def test_manifest_adds_the_wall_time_of_earlier_runs(tmp_path):
  out = str(tmp_path)
  _finish_shard(out, 0, 1)
  manifest.write_manifest(out, 1, {}, seconds=2.0)
  written = manifest.write_manifest(out, 1, {}, seconds=3.0)
  assert written['complete']
  assert written['wall_seconds'] == 5.0


def test_shards_carry_their_header_and_must_agree(tmp_path):
  out = str(tmp_path)
  header = {'teacher_checkpoint': 'ckpt-6', 'pool': {'kind': 'x'}}
  for index in range(2):
    shard_files.atomic_write_bytes(shard_files.shard_path(out, index, 3), b'')
    manifest.write_shard_stats(
      out, index, 3, _stats_of_one_labelled_image(), header
    )
  # Merged with no header given (`--merge`): the shards' own.
  merged = manifest.write_manifest(out, 3, None, seconds=0.0)
  assert merged['teacher_checkpoint'] == 'ckpt-6'
  shard_files.atomic_write_bytes(shard_files.shard_path(out, 2, 3), b'')
  manifest.write_shard_stats(
    out,
    2,
    3,
    _stats_of_one_labelled_image(),
    dict(header, teacher_checkpoint='ckpt-9'),
  )
  with pytest.raises(ValueError, match=r'Shards 0 and 2 .* teacher_checkpoint'):
    manifest.write_manifest(out, 3, None, seconds=0.0)
