"""Pseudo-label export: the teacher labels a pool into sharded TFRecords.

Output, in Model Garden's detection schema (its TfExampleDecoder reads it):
`pseudo-KKKKK-of-NNNNN.tfrecord`, each image's original encoded bytes with the
teacher's boxes, classes and `image/object/score`. Boxes are kept down to a low
export floor, so the student's read-time threshold (0.5 in the paper) can change
without running the teacher again.

Each shard is written under a temporary name and renamed when complete, then
its stats file (`.json`) is written the same way: a shard with its stats is
finished, anything else is redone. A killed run, run again, skips finished
shards and ends with every input image in exactly one shard. `manifest.json`
merges the stats of all finished shards (teacher, thresholds, NMS, counts,
skipped images with reasons, boxes per class, quality against held-aside
ground truth, wall time).
"""

import collections
from concurrent import futures
import json
import os
import time
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence

from absl import logging
import gin
import numpy as np
from official.vision.data import tf_example_builder
import tensorflow as tf

from official_selftrain.pseudo_labels import quality
from official_selftrain.pseudo_labels import sources
from official_selftrain.pseudo_labels import teacher as teacher_lib

MANIFEST = 'manifest.json'
SCORE_KEY = 'image/object/score'


def shard_path(output_dir: str, index: int, num_shards: int) -> str:
  return os.path.join(
    output_dir, f'pseudo-{index:05d}-of-{num_shards:05d}.tfrecord'
  )


def is_finished(output_dir: str, index: int, num_shards: int) -> bool:
  path = shard_path(output_dir, index, num_shards)
  return tf.io.gfile.exists(path) and tf.io.gfile.exists(path + '.json')


def _atomic_write_bytes(path: str, data: bytes) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _image_format(encoded: bytes) -> Optional[str]:
  """The format of encoded image bytes from their signature (None: unknown,
  left to Model Garden's builder to find by decoding)."""
  if encoded[:2] == b'\xff\xd8':
    return 'JPEG'
  if encoded[:8] == b'\x89PNG\r\n\x1a\n':
    return 'PNG'
  if encoded[:6] in (b'GIF87a', b'GIF89a'):
    return 'GIF'
  if encoded[:2] == b'BM':
    return 'BMP'
  return None


def pseudo_label_example(
  source_id: bytes,
  encoded: bytes,
  height: int,
  width: int,
  boxes: np.ndarray,
  classes: np.ndarray,
  scores: np.ndarray,
) -> tf.train.Example:
  """One pseudo-labelled image in Model Garden's detection schema + scores."""
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
    encoded,
    # Given in full, so the builder does not decode the image for metadata.
    image_format=_image_format(encoded),
    height=height,
    width=width,
    num_channels=3,
    image_source_id=source_id,
  )
  builder.add_boxes_feature(
    xmins=boxes[:, 1].tolist(),
    xmaxs=boxes[:, 3].tolist(),
    ymins=boxes[:, 0].tolist(),
    ymaxs=boxes[:, 2].tolist(),
    labels=classes.tolist(),
  )
  builder.add_floats_feature(SCORE_KEY, scores.tolist())
  areas = (
    (boxes[:, 2] - boxes[:, 0]) * height * (boxes[:, 3] - boxes[:, 1]) * width
  )
  builder.add_floats_feature('image/object/area', areas.tolist())
  builder.add_ints_feature('image/object/is_crowd', [0] * len(classes))
  return builder.example


def _decode_reason(encoded: bytes) -> str:
  try:
    tf.io.decode_image(encoded, channels=3, expand_animations=False)
  except tf.errors.InvalidArgumentError as e:
    return str(e).strip().splitlines()[0][:200]
  return 'decoded on retry (transient read error)'


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

  def add(self, boxes, classes, scores, gt_boxes, gt_classes):
    keep = scores >= self.read_threshold
    self.images_written += 1
    self.boxes_at_floor += len(scores)
    self.boxes_at_threshold += int(keep.sum())
    if not keep.any():
      self.images_without_box += 1
    self.boxes_per_class.update(int(c) for c in classes[keep])
    known = gt_classes < self.num_classes
    self.quality.add(
      boxes[keep], classes[keep], gt_boxes[known], gt_classes[known]
    )

  def as_dict(self) -> Dict[str, Any]:
    return {
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
    }


def merge_stats(shards: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
  """Sums per-shard stats; derives rates, quality and boxes per image."""
  shards = list(shards)
  total = collections.Counter()
  per_class = collections.Counter()
  counts = quality.QualityCounts()
  skipped = []
  for s in shards:
    for key in (
      'images_written',
      'images_skipped',
      'images_without_box_at_threshold',
      'boxes_at_export_floor',
      'boxes_at_read_threshold',
    ):
      total[key] += s[key]
    per_class.update(
      {k: v for k, v in s['boxes_per_class_at_read_threshold'].items()}
    )
    counts.merge(quality.QualityCounts.from_dict(s['quality_counts']))
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
  return merged


@gin.configurable
def export_pseudo_labels(
  teacher_dir: str = gin.REQUIRED,
  pool: Any = gin.REQUIRED,
  output_dir: str = gin.REQUIRED,
  teacher_checkpoint: Optional[str] = None,
  export_floor: float = 0.1,
  read_threshold: float = 0.5,
  nms_iou_threshold: float = 0.5,
  max_detections: int = 100,
  pre_nms_top_k: Optional[int] = None,
  nms_version: Optional[str] = None,
  num_shards: int = 8,
  shard_indices: Optional[Sequence[int]] = None,
  batch_size: int = 32,
  log_every_seconds: float = 10.0,
  teacher: Optional[teacher_lib.Teacher] = None,
) -> Dict[str, Any]:
  """Labels `pool` with the teacher in `teacher_dir`; returns the manifest.

  Args:
    teacher_dir: model_dir of the trained teacher.
    pool: an unlabelled pool (`@tfrecord_pool()`, `@image_folder_pool()`,
      `@tfds_pool()`).
    output_dir: where shards and manifest.json go.
    teacher_checkpoint: a specific checkpoint (default: latest in teacher_dir).
    export_floor: boxes scored below this are not written.
    read_threshold: the student's default threshold (0.5, the paper's); used
      for the manifest's counts and quality.
    nms_iou_threshold: NMS IoU (0.5).
    max_detections: boxes kept per image (100).
    pre_nms_top_k: per-level candidates before NMS (None: the teacher's).
    nms_version: NMS implementation (None: the teacher's).
    num_shards: parts the pool is split into (one output file each).
    shard_indices: which parts this process labels (None: all); give each host
      of a cluster its own, e.g. [task_index].
    batch_size: images per teacher call.
    log_every_seconds: progress log period.
    teacher: an already restored Teacher to use instead of building one from
      teacher_dir (the NMS arguments above are then the teacher's own).

  Returns:
    The manifest (also written to output_dir/manifest.json).
  """
  if not 0 <= export_floor <= read_threshold:
    raise ValueError(
      f'export_floor={export_floor} must be in [0, '
      f'read_threshold={read_threshold}].'
    )
  start = time.time()
  if teacher is None:
    teacher = teacher_lib.Teacher(
      teacher_dir,
      teacher_checkpoint,
      score_floor=export_floor,
      nms_iou_threshold=nms_iou_threshold,
      max_detections=max_detections,
      pre_nms_top_k=pre_nms_top_k,
      nms_version=nms_version,
    )
  tf.io.gfile.makedirs(output_dir)
  indices = (
    list(range(num_shards)) if shard_indices is None else list(shard_indices)
  )
  todo = [k for k in indices if not is_finished(output_dir, k, num_shards)]
  if len(todo) < len(indices):
    logging.info(
      'Skipping %d finished shard(s) in %s.',
      len(indices) - len(todo),
      output_dir,
    )
  progress = _Progress(log_every_seconds)
  if todo and _count(pool.dataset().take(1)) == 0:
    raise sources.EmptyPoolError(
      f'The unlabelled pool {pool.describe()} has no image.'
    )
  for k in todo:
    stats = _export_shard(
      teacher,
      pool,
      output_dir,
      k,
      num_shards,
      read_threshold,
      batch_size,
      progress,
    )
    _atomic_write_bytes(
      shard_path(output_dir, k, num_shards) + '.json',
      json.dumps(stats.as_dict()).encode(),
    )
  manifest = write_manifest(
    output_dir,
    num_shards,
    header={
      'teacher_dir': teacher_dir,
      'teacher_checkpoint': teacher.checkpoint,
      'teacher_step': teacher.step,
      'pool': pool.describe(),
      'export_floor': export_floor,
      'read_threshold': read_threshold,
      'nms': teacher.nms,
      'teacher_input_size': teacher.input_size,
    },
    seconds=time.time() - start,
  )
  return manifest


def write_manifest(
  output_dir: str, num_shards: int, header: Dict[str, Any], seconds: float
) -> Dict[str, Any]:
  """Merges the finished shards' stats into output_dir/manifest.json."""
  finished, stats = [], []
  for k in range(num_shards):
    if is_finished(output_dir, k, num_shards):
      finished.append(k)
      with tf.io.gfile.GFile(
        shard_path(output_dir, k, num_shards) + '.json'
      ) as f:
        stats.append(json.load(f))
  path = os.path.join(output_dir, MANIFEST)
  previous = {}
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      previous = json.load(f)
  manifest = dict(header)
  manifest.update(merge_stats(stats))
  manifest['num_shards'] = num_shards
  manifest['finished_shards'] = finished
  manifest['complete'] = len(finished) == num_shards
  manifest['wall_seconds'] = previous.get('wall_seconds', 0.0) + seconds
  _atomic_write_bytes(path, json.dumps(manifest, indent=1).encode())
  return manifest


class _Progress:
  """Logs images done, images/s and ETA across shards."""

  def __init__(self, every_seconds: float):
    self._every = every_seconds
    self._start = time.time()
    self._last = self._start
    self.images = 0

  def update(
    self,
    count: int,
    shard: int,
    done_in_shard: int,
    shard_total: Optional[int],
    final: bool = False,
  ):
    """Logs now and then; shard_total None while still being counted."""
    self.images += count
    now = time.time()
    if final or now - self._last >= self._every:
      self._last = now
      rate = self.images / max(now - self._start, 1e-9)
      if shard_total is None:
        where, eta = f'{done_in_shard}/? images', 'shard ETA ?'
      else:
        where = f'{done_in_shard}/{shard_total} images'
        left = max(shard_total - done_in_shard, 0) / max(rate, 1e-9)
        eta = f'shard ETA {left:.0f}s'
      logging.info(
        'pseudo labels: shard %d %s | %.1f images/s | %s',
        shard,
        where,
        rate,
        eta,
      )


def _decoded(teacher: teacher_lib.Teacher, element):
  image = tf.io.decode_image(
    element['encoded'], channels=3, expand_animations=False
  )
  image.set_shape([None, None, 3])
  model_input, image_info = teacher.preprocess(image)
  element = dict(element)
  element['image'] = model_input
  element['image_info'] = image_info
  element['height'] = tf.shape(image)[0]
  element['width'] = tf.shape(image)[1]
  return element


def _count(dataset: tf.data.Dataset) -> int:
  return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


class _ShardWriter:
  """Serialises, writes and counts labelled images of one shard.

  Runs on its own thread so the teacher labels the next batch meanwhile: this
  host-side work (building Examples, matching against held-aside ground truth)
  cost ~15% of export speed when done in turn with inference.
  """

  def __init__(self, writer, stats: ShardStats):
    self._writer = writer
    self._stats = stats
    self.seen = set()

  def write_batch(self, out, host) -> int:
    for i in range(len(host['index'])):
      n = out['num_detections'][i]
      boxes, classes = out['boxes'][i, :n], out['classes'][i, :n]
      scores = out['scores'][i, :n]
      self._writer.write(
        pseudo_label_example(
          host['source_id'][i],
          host['encoded'][i],
          int(host['height'][i]),
          int(host['width'][i]),
          boxes,
          classes,
          scores,
        ).SerializeToString()
      )
      gt_classes = host['gt_classes'][i]
      valid = gt_classes > 0  # padded_batch pads with class 0
      self._stats.add(
        boxes, classes, scores, host['gt_boxes'][i][valid], gt_classes[valid]
      )
      self.seen.add(int(host['index'][i]))
    return len(host['index'])


_HOST_KEYS = (
  'index',
  'source_id',
  'encoded',
  'height',
  'width',
  'gt_boxes',
  'gt_classes',
)


def _export_shard(
  teacher, pool, output_dir, k, num_shards, read_threshold, batch_size, progress
) -> ShardStats:
  """Labels part k of the pool into its shard; returns the shard's stats."""
  raw = pool.dataset(num_shards, k)
  data = raw.map(
    lambda e: _decoded(teacher, e),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  # A record whose image does not decode is dropped here and named below.
  data = data.ignore_errors().padded_batch(batch_size).prefetch(2)
  stats = ShardStats(read_threshold, teacher.config.task.model.num_classes)
  path = shard_path(output_dir, k, num_shards)
  for stale in tf.io.gfile.glob(f'{path}.tmp-*'):
    tf.io.gfile.remove(stale)  # left by a killed run
  tmp = f'{path}.tmp-{os.getpid()}'
  with (
    tf.io.TFRecordWriter(tmp) as writer,
    futures.ThreadPoolExecutor(1) as write_thread,
    futures.ThreadPoolExecutor(1) as count_thread,
  ):
    shard_writer = _ShardWriter(writer, stats)
    # The shard's size (for the ETA, and to find images that did not decode)
    # is counted beside the labelling, not before it.
    expected = count_thread.submit(_count, raw)
    pending = collections.deque()
    for batch in data:
      out = teacher.predict(batch['image'], batch['image_info'])
      out = {key: v.numpy() for key, v in out.items()}
      host = {key: batch[key].numpy() for key in _HOST_KEYS}
      pending.append(write_thread.submit(shard_writer.write_batch, out, host))
      while pending and (len(pending) > 2 or pending[0].done()):
        done = pending.popleft().result()
        total = expected.result() if expected.done() else None
        progress.update(done, k, len(shard_writer.seen), total)
    while pending:
      done = pending.popleft().result()
      progress.update(
        done,
        k,
        len(shard_writer.seen),
        expected.result(),
        final=not pending,
      )
    expected = expected.result()
  missing = set(range(expected)) - shard_writer.seen
  if missing:
    for element in raw:
      index = int(element['index'])
      if index in missing:
        stats.skipped.append(
          {
            'source_id': element['source_id'].numpy().decode(errors='replace'),
            'shard': k,
            'reason': _decode_reason(element['encoded'].numpy()),
          }
        )
    logging.warning(
      'Shard %d: skipped %d image(s) that do not decode: %s',
      k,
      len(missing),
      stats.skipped[:5],
    )
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return stats
