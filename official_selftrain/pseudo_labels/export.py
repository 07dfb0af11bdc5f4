"""Pseudo-label export: the teacher labels a pool into sharded TFRecords.

Output, in Model Garden's detection schema (its TfExampleDecoder reads it):
`pseudo-KKKKK-of-NNNNN.tfrecord`, each image's original encoded bytes with the
teacher's boxes, classes and `image/object/score` (`schema`). Boxes are kept
down to a low export floor, so the student's read-time threshold (0.5 in the
paper) can change without running the teacher again.

Each shard is written under a temporary name and renamed when complete, then
its stats file (`.json`) is written the same way: a shard with its stats is
finished, anything else is redone (`shard_files`). A killed run, run again,
skips finished shards and ends with every input image in exactly one shard
(`shard_writer` labels one). `manifest.json` merges the stats of all finished
shards (`manifest`: teacher, thresholds, NMS, counts, skipped images with
reasons, boxes per class, quality against held-aside ground truth, wall time).
"""

import time
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence

from absl import logging
import gin
import tensorflow as tf

from official_selftrain import progress as progress_lib
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import manifest as manifest_lib
from official_selftrain.pseudo_labels import saved_model_teacher
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import shard_files
from official_selftrain.pseudo_labels import shard_writer
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import export as serving_export


def _shards_to_do(
  output_dir: str, num_shards: int, shard_indices: Optional[Sequence[int]]
) -> List[int]:
  """The shards of `shard_indices` (None: all) that are not finished yet."""
  indices = (
    list(range(num_shards)) if shard_indices is None else list(shard_indices)
  )
  todo = [
    k for k in indices if not shard_files.is_finished(output_dir, k, num_shards)
  ]
  if len(todo) < len(indices):
    logging.info(
      'Skipping %d finished shard(s) in %s.',
      len(indices) - len(todo),
      output_dir,
    )
  return todo


def _check_not_empty(pool: Any) -> None:
  if shard_writer.count(pool.dataset().take(1)) == 0:
    raise pools.EmptyPoolError(
      f'The unlabelled pool {pool.describe()} has no image.'
    )


def _manifest_header(
  teacher_dir: str,
  teacher: Any,
  pool: Any,
  export_floor: float,
  read_threshold: float,
) -> Dict[str, Any]:
  """What the manifest says of the run besides its shards' stats."""
  header = {
    'teacher_dir': teacher_dir,
    'teacher_checkpoint': teacher.checkpoint,
    'teacher_step': teacher.step,
    'pool': pool.describe(),
  }
  if isinstance(teacher, teacher_lib.Teacher):  # boxes: thresholds at read
    header.update(export_floor=export_floor, read_threshold=read_threshold)
  header.update(teacher.describe())
  return header


def _saved_model_teacher(path: str, checkpoint: Optional[str], **options):
  if checkpoint:
    raise ValueError(f'{path} is a SavedModel: it takes no teacher checkpoint.')
  task = serving_export.read_info(path)['task']
  if task == 'segmentation':
    keys = ('scales', 'flip', 'threshold', 'sliding_window')
    return saved_model_teacher.SavedModelSegmentationTeacher(
      path, **{k: options[k] for k in keys}
    )
  keys = ('score_floor', 'nms_iou_threshold', 'max_detections')
  return saved_model_teacher.SavedModelTeacher(
    path, **{k: options[k] for k in keys}
  )


def restore_teacher(teacher_dir: str, checkpoint: Optional[str], **options):
  """The teacher a model_dir holds: a detector (`teacher.Teacher`) or a
  segmenter (`segmentation_teacher.SegmentationTeacher`), by its params.yaml;
  or a SavedModel of either (`saved_model_teacher`).

  `options`: `score_floor`, `nms_iou_threshold`, `max_detections`,
  `pre_nms_top_k`, `nms_version` (detection); `scales`, `flip`, `threshold`,
  `sliding_window` (segmentation).
  """
  if saved_model_teacher.is_saved_model(teacher_dir):
    return _saved_model_teacher(teacher_dir, checkpoint, **options)
  params = teacher_lib.read_params(teacher_dir)
  if teacher_lib.is_segmentation(params):
    keys = ('scales', 'flip', 'threshold', 'sliding_window')
    return segmentation_teacher.SegmentationTeacher(
      teacher_dir, checkpoint, **{k: options[k] for k in keys}
    )
  keys = (
    'score_floor',
    'nms_iou_threshold',
    'max_detections',
    'pre_nms_top_k',
    'nms_version',
  )
  return teacher_lib.Teacher(
    teacher_dir, checkpoint, **{k: options[k] for k in keys}
  )


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
  scales: Sequence[float] = segmentation_teacher.PAPER_SCALES,
  flip: bool = False,
  sliding_window: bool = False,
) -> Dict[str, Any]:
  """Labels `pool` with the teacher in `teacher_dir`; returns the manifest.

  Args:
    teacher_dir: model_dir of the trained teacher, or a SavedModel of one
      (`tools/export_saved_model.py`).
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
    teacher: an already restored teacher to use instead of building one from
      teacher_dir (the NMS arguments above are then the teacher's own).
    scales: a segmentation teacher's inference scales (the paper's six).
    flip: a segmentation teacher also labels each scale flipped.
    sliding_window: a segmentation teacher sees canvases larger than its
      input through input-size windows (`segmentation_teacher`).

  A segmentation teacher (by the teacher_dir's params.yaml) writes label maps
  instead of boxes (`segmentation_teacher`): `read_threshold` is then its
  per-pixel threshold (pixels below it get the ignore label, 255) and
  `export_floor` is unused.

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
    teacher = restore_teacher(
      teacher_dir,
      teacher_checkpoint,
      score_floor=export_floor,
      nms_iou_threshold=nms_iou_threshold,
      max_detections=max_detections,
      pre_nms_top_k=pre_nms_top_k,
      nms_version=nms_version,
      scales=scales,
      flip=flip,
      threshold=read_threshold,
      sliding_window=sliding_window,
    )
  tf.io.gfile.makedirs(output_dir)
  todo = _shards_to_do(output_dir, num_shards, shard_indices)
  if todo:
    _check_not_empty(pool)
  progress = progress_lib.Progress(
    'pseudo labels', 'images', every_seconds=log_every_seconds
  )
  for k in todo:
    stats = shard_writer.label_shard(
      teacher,
      pool,
      output_dir,
      k,
      num_shards,
      read_threshold,
      batch_size,
      progress,
    )
    manifest_lib.write_shard_stats(output_dir, k, num_shards, stats)
  return manifest_lib.write_manifest(
    output_dir,
    num_shards,
    header=_manifest_header(
      teacher_dir, teacher, pool, export_floor, read_threshold
    ),
    seconds=time.time() - start,
  )
