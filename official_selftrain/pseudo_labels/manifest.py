"""What an export wrote: per-shard stats, their merge, and `manifest.json`.

Each finished shard has a stats file (counts, skipped images with reasons,
boxes per class, quality counts against held-aside ground truth); the manifest
merges those of all finished shards with the run's header (teacher,
thresholds, NMS) and wall time, summed over the runs that wrote the shards.
"""

import collections
import json
import os
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Tuple

import numpy as np
import tensorflow as tf

from official_selftrain.pseudo_labels import quality
from official_selftrain.pseudo_labels import shard_files

MANIFEST = 'manifest.json'

# Per-shard counts that the manifest sums.
_SUMMED = (
  'images_written',
  'images_skipped',
  'images_without_box_at_threshold',
  'boxes_at_export_floor',
  'boxes_at_read_threshold',
)

# Score thresholds at which the manifest also gives pseudo-label quality (where
# ground truth is held aside): how much a lower or higher read threshold would
# trade precision for recall, without exporting again. Those below the
# export floor are left out (the boxes under it were not kept).
QUALITY_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class ShardStats:
  """Counts for one shard; merged into the manifest."""

  def __init__(self, read_threshold: float, num_classes: int):
    self.read_threshold = read_threshold
    # Ground truth of classes the teacher does not know (Shapes-Cls has more
    # classes than Shapes-Det, as ImageNet than COCO) is not counted as missed.
    self.num_classes = num_classes
    self.images_written = 0
    self.images_without_box = 0
    self.boxes_at_floor = 0
    self.boxes_at_threshold = 0
    self.boxes_per_class = collections.Counter()
    self.skipped: List[Dict[str, Any]] = []
    self.quality = quality.QualityCounts()
    self.quality_by_threshold = {
      t: quality.QualityCounts() for t in QUALITY_THRESHOLDS
    }

  def add(self, boxes, classes, scores, gt_boxes, gt_classes):
    keep = scores >= self.read_threshold
    self.images_written += 1
    self.boxes_at_floor += len(scores)
    self.boxes_at_threshold += int(keep.sum())
    if not keep.any():
      self.images_without_box += 1
    self.boxes_per_class.update(int(c) for c in classes[keep])
    known = gt_classes < self.num_classes
    gt_boxes, gt_classes = gt_boxes[known], gt_classes[known]
    self.quality.add(boxes[keep], classes[keep], gt_boxes, gt_classes)
    for t, counts in self.quality_by_threshold.items():
      above = scores >= t
      counts.add(boxes[above], classes[above], gt_boxes, gt_classes)

  def as_dict(self) -> Dict[str, Any]:
    return {
      'read_threshold': self.read_threshold,
      'images_written': self.images_written,
      'images_skipped': len(self.skipped),
      'skipped': self.skipped,
      'images_without_box_at_threshold': self.images_without_box,
      'boxes_at_export_floor': self.boxes_at_floor,
      'boxes_at_read_threshold': self.boxes_at_threshold,
      'boxes_per_class_at_read_threshold': {
        str(k): v for k, v in sorted(self.boxes_per_class.items())
      },
      'quality_counts': self.quality.as_dict(),
      'quality_counts_by_threshold': {
        str(t): c.as_dict() for t, c in self.quality_by_threshold.items()
      },
    }


class SegmentationStats:
  """Counts for one shard of segmentation pseudo labels: ignored pixels,
  pixels per class, and agreement with held-aside label maps: a confusion
  matrix (truth x pseudo label) over the labelled pixels whose truth is not
  ignored, and how many truth foreground pixels (class > 0) got a label.

  Pixel accuracy alone reads high when the labels are mostly background; the
  per-class IoU from the confusion matrix and the foreground coverage say how
  much of the objects the labels teach."""

  kind = 'segmentation'

  def __init__(self, num_classes: int, ignore_label: int):
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self.images_written = 0
    self.pixels = 0
    self.pixels_ignored = 0
    self.pixels_per_class = collections.Counter()
    self.pixels_compared = 0
    self.pixels_correct = 0
    self.confusion = np.zeros((num_classes, num_classes), np.int64)
    self.foreground = 0
    self.foreground_labelled = 0
    self.skipped: List[Dict[str, Any]] = []

  def add(self, labels, truth=None) -> None:
    """One image's [H, W] pseudo labels; `truth` its held-aside map."""
    self.images_written += 1
    labelled = labels != self.ignore_label
    self.pixels += labels.size
    self.pixels_ignored += int((~labelled).sum())
    values, counts = np.unique(labels[labelled], return_counts=True)
    self.pixels_per_class.update(dict(zip(values.tolist(), counts.tolist())))
    if truth is not None:
      compared = labelled & (truth != self.ignore_label)
      self.pixels_compared += int(compared.sum())
      self.pixels_correct += int((labels == truth)[compared].sum())
      pairs = truth[compared].astype(np.int64) * self.num_classes + labels[
        compared
      ].astype(np.int64)
      self.confusion += np.bincount(
        pairs, minlength=self.num_classes**2
      ).reshape(self.confusion.shape)
      foreground = (truth != self.ignore_label) & (truth > 0)
      self.foreground += int(foreground.sum())
      self.foreground_labelled += int((foreground & labelled).sum())

  def as_dict(self) -> Dict[str, Any]:
    return {
      'kind': self.kind,
      'images_written': self.images_written,
      'images_skipped': len(self.skipped),
      'skipped': self.skipped,
      'pixels': self.pixels,
      'pixels_ignored': self.pixels_ignored,
      'pixels_per_class': {
        str(k): v for k, v in sorted(self.pixels_per_class.items())
      },
      'pixels_compared': self.pixels_compared,
      'pixels_correct': self.pixels_correct,
      'confusion': self.confusion.tolist(),
      'foreground_pixels': self.foreground,
      'foreground_labelled': self.foreground_labelled,
    }


def _merge_segmentation(shards: List[Dict[str, Any]]) -> Dict[str, Any]:
  """Sums segmentation shard stats; derives the ignored fraction, the class
  histogram (fractions of labelled pixels) and the pixel accuracy."""
  total = collections.Counter()
  per_class = collections.Counter()
  skipped = []
  confusion = 0
  for s in shards:
    for key in (
      'images_written',
      'images_skipped',
      'pixels',
      'pixels_ignored',
      'pixels_compared',
      'pixels_correct',
    ):
      total[key] += s[key]
    # Shards written before the agreement counts existed have none.
    for key in ('foreground_pixels', 'foreground_labelled'):
      total[key] += s.get(key, 0)
    confusion = confusion + np.array(s.get('confusion', 0))
    per_class.update(s['pixels_per_class'])
    skipped.extend(s['skipped'])
  merged = dict(total)
  merged['images_read'] = total['images_written'] + total['images_skipped']
  merged['skipped'] = skipped
  merged['ignored_pixel_fraction'] = total['pixels_ignored'] / max(
    total['pixels'], 1
  )
  labelled = max(total['pixels'] - total['pixels_ignored'], 1)
  merged['class_histogram'] = {
    k: v / labelled for k, v in sorted(per_class.items(), key=_class_order)
  }
  merged['pixel_accuracy'] = (
    total['pixels_correct'] / total['pixels_compared']
    if total['pixels_compared']
    else None
  )
  merged.update(_agreement(confusion, total))
  return merged


def _agreement(confusion, total) -> Dict[str, Any]:
  """Per-class IoU of the labels against the truth (labelled pixels only),
  their mean over the classes either side has, and the foreground coverage."""
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2:  # no shard had a confusion matrix
    confusion = np.zeros((0, 0))
  hits = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - hits
  iou = {str(c): hits[c] / union[c] for c in range(len(hits)) if union[c]}
  return {
    'confusion': confusion.astype(np.int64).tolist(),
    'pixel_iou': iou,
    'pixel_miou': float(np.mean(list(iou.values()))) if iou else None,
    'foreground_labelled_fraction': (
      total['foreground_labelled'] / total['foreground_pixels']
      if total['foreground_pixels']
      else None
    ),
  }


def _class_order(item):
  return int(item[0])


def merge_stats(
  shards: Iterable[Dict[str, Any]], read_threshold: Optional[float] = None
) -> Dict[str, Any]:
  """Sums per-shard stats; derives rates, quality and boxes per image.

  The `*_at_read_threshold` figures are those of `read_threshold` (default:
  the one the shards were counted at). Finished shards are reused when the
  student reads them at another threshold; their figures at it are then
  taken from the per-threshold counts (`QUALITY_THRESHOLDS`), and those
  counted only at the old threshold (per class, images without a box)
  become None.
  """
  shards = list(shards)
  if shards and shards[0].get('kind') == SegmentationStats.kind:
    return _merge_segmentation(shards)
  total = collections.Counter()
  per_class = collections.Counter()
  counts = quality.QualityCounts()
  by_threshold = collections.defaultdict(quality.QualityCounts)
  skipped = []
  for s in shards:
    for key in _SUMMED:
      total[key] += s[key]
    per_class.update(s['boxes_per_class_at_read_threshold'])
    counts.merge(quality.QualityCounts.from_dict(s['quality_counts']))
    # Absent from shards an older version wrote.
    for t, c in s.get('quality_counts_by_threshold', {}).items():
      by_threshold[t].merge(quality.QualityCounts.from_dict(c))
    skipped.extend(s['skipped'])
  written = max(total['images_written'], 1)
  merged = dict(total)
  merged['images_read'] = total['images_written'] + total['images_skipped']
  merged['skipped'] = skipped
  merged['boxes_per_image_at_read_threshold'] = (
    total['boxes_at_read_threshold'] / written
  )
  merged['boxes_per_class_at_read_threshold'] = dict(sorted(per_class.items()))
  merged['quality_at_read_threshold'] = counts.summary()
  merged['quality_by_threshold'] = {
    t: _brief(c) for t, c in sorted(by_threshold.items()) if c.has_ground_truth
  }
  counted_at = {_counted_at(s) for s in shards} - {None}
  if read_threshold is not None and counted_at - {read_threshold}:
    _recount_at(merged, by_threshold, read_threshold, written)
  return merged


def _counted_at(shard: Dict[str, Any]) -> Optional[float]:
  """The read threshold a shard's `*_at_read_threshold` counts were taken
  at (shards of an older version carry it in their header only)."""
  if 'read_threshold' in shard:
    return shard['read_threshold']
  return (shard.get('header') or {}).get('read_threshold')


def _recount_at(merged, by_threshold, read_threshold, written) -> None:
  """The `*_at_read_threshold` figures at a threshold the shards were not
  counted at, from the per-threshold counts (unavailable off that grid)."""
  match = [t for t in by_threshold if abs(float(t) - read_threshold) < 1e-9]
  counts = by_threshold[match[0]] if match else None
  boxes = counts.predictions if counts is not None else None
  merged['boxes_at_read_threshold'] = boxes
  merged['boxes_per_image_at_read_threshold'] = (
    None if boxes is None else boxes / written
  )
  merged['quality_at_read_threshold'] = (
    counts.summary() if counts is not None else {'available': False}
  )
  merged['boxes_per_class_at_read_threshold'] = None
  merged['images_without_box_at_threshold'] = None


def _brief(counts: quality.QualityCounts) -> Dict[str, float]:
  summary = counts.summary()
  return {
    k: summary[k] for k in ('precision', 'recall', 'pseudo_boxes_per_image')
  }


def write_shard_stats(
  output_dir: str,
  index: int,
  num_shards: int,
  stats: Any,
  header: Optional[Dict[str, Any]] = None,
  labelled: Optional[Dict[str, Any]] = None,
) -> None:
  """Writes a shard's stats file, which marks the shard finished.

  `header` (teacher, thresholds, pool and its partition) goes with it, so any
  host can merge the manifest and shards labelled apart can be checked alike;
  `labelled`: by which host and process, when (start and end, epoch seconds).
  """
  record = stats.as_dict()
  if header is not None:
    record['header'] = header
  if labelled is not None:
    record['labelled'] = labelled
  shard_files.atomic_write_bytes(
    shard_files.stats_path(output_dir, index, num_shards),
    json.dumps(record).encode(),
  )


# Header fields shards of one export may differ in (the teacher's path as a
# host spells it; the student's read threshold, applied when reading boxes).
_FREE_HEADER = ('teacher_dir', 'read_threshold')


def check_same_header(finished: List[int], stats: List[Dict[str, Any]]):
  """The header the shards share (the first one's); {} if none has one.

  Raises:
    ValueError: two shards were labelled by different teachers, pools,
      partitions or settings (hosts started with different flags), naming
      the shards and the setting.
  """
  headers = [(k, s['header']) for k, s in zip(finished, stats) if 'header' in s]
  if not headers:
    return {}
  first_shard, first = headers[0]
  for shard, header in headers[1:]:
    for key in sorted((set(first) | set(header)) - set(_FREE_HEADER)):
      if header.get(key) != first.get(key):
        raise ValueError(
          f'Shards {first_shard} and {shard} of one export differ in {key}: '
          f'{first.get(key)!r} vs {header.get(key)!r}. Label every shard '
          'with the same teacher and pool (or export into a new directory).'
        )
  return first


def read_finished_stats(
  output_dir: str, num_shards: int
) -> Tuple[List[int], List[Dict[str, Any]]]:
  """The indices of the finished shards and their stats, in order."""
  finished, stats = [], []
  for k in range(num_shards):
    if shard_files.is_finished(output_dir, k, num_shards):
      finished.append(k)
      with tf.io.gfile.GFile(
        shard_files.stats_path(output_dir, k, num_shards)
      ) as f:
        stats.append(json.load(f))
  return finished, stats


def read_manifest(output_dir: str) -> Dict[str, Any]:
  """The manifest of an export in `output_dir`; {} when it has none."""
  path = os.path.join(output_dir, MANIFEST)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _labelling_span(stats: List[Dict[str, Any]], images: int):
  """Processes that labelled the shards, and the time from the first shard's
  start to the last one's end (a killed host's downtime included)."""
  runs = [s['labelled'] for s in stats if 'labelled' in s]
  if not runs:
    return None
  span = max(r['finished'] for r in runs) - min(r['started'] for r in runs)
  return {
    'processes': len({(r['host'], r['pid']) for r in runs}),
    'span_seconds': span,
    'images_per_second': images / span if span > 0 else None,
  }


def write_manifest(
  output_dir: str,
  num_shards: int,
  header: Optional[Dict[str, Any]],
  seconds: float,
  write: bool = True,
  read_threshold: Optional[float] = None,
) -> Dict[str, Any]:
  """Merges the finished shards' stats into output_dir/manifest.json (only
  returned, not written, with `write=False`). `header` None: the shards' own;
  `read_threshold` replaces the header's (figures at a student's threshold).
  """
  finished, stats = read_finished_stats(output_dir, num_shards)
  shared = check_same_header(finished, stats)
  path = os.path.join(output_dir, MANIFEST)
  previous = read_manifest(output_dir)
  header = dict(shared if header is None else header)
  if read_threshold is not None:
    header['read_threshold'] = read_threshold
  manifest = dict(header)
  manifest.update(merge_stats(stats, header.get('read_threshold')))
  floor = header.get('export_floor')
  if floor is not None and 'quality_by_threshold' in manifest:
    manifest['quality_by_threshold'] = {
      t: q
      for t, q in manifest['quality_by_threshold'].items()
      if float(t) >= floor - 1e-9
    }
  manifest['num_shards'] = num_shards
  manifest['finished_shards'] = finished
  labelling = _labelling_span(stats, manifest.get('images_read', 0))
  if labelling:
    manifest['labelling'] = labelling
  manifest['complete'] = len(finished) == num_shards
  manifest['wall_seconds'] = previous.get('wall_seconds', 0.0) + seconds
  if write:
    shard_files.atomic_write_bytes(
      path, json.dumps(manifest, indent=1).encode()
    )
  return manifest
