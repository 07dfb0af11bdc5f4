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

import contextlib
import json
import os
import socket
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
from official_selftrain.pseudo_labels import replicated
from official_selftrain.pseudo_labels import saved_model_teacher
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import shard_files
from official_selftrain.pseudo_labels import shard_writer
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import export as serving_export


def _finished_partition(output_dir: str, k: int, num_shards: int) -> str:
  with tf.io.gfile.GFile(
    shard_files.stats_path(output_dir, k, num_shards)
  ) as f:
    header = json.load(f).get('header', {})
  # Shards written before pools had a partition were split another way.
  return header.get('pool_partition', 'legacy')


def _shards_to_do(
  output_dir: str,
  num_shards: int,
  shard_indices: Optional[Sequence[int]],
  partition: str,
) -> List[int]:
  """The shards of `shard_indices` (None: all) that are not finished yet, or
  were finished with the pool split another way (they are labelled again)."""
  indices = (
    list(range(num_shards)) if shard_indices is None else list(shard_indices)
  )
  todo = []
  for k in indices:
    if not shard_files.is_finished(output_dir, k, num_shards):
      todo.append(k)
      continue
    written = _finished_partition(output_dir, k, num_shards)
    if written != partition:
      logging.warning(
        'Shard %d in %s split the pool by %s, this run by %s: labelled again.',
        k,
        output_dir,
        written,
        partition,
      )
      todo.append(k)
  if len(todo) < len(indices):
    logging.info(
      'Skipping %d finished shard(s) in %s.',
      len(indices) - len(todo),
      output_dir,
    )
  return todo


def _wait_for_shards(
  output_dir: str, num_shards: int, timeout_seconds: float, poll: float = 5.0
) -> None:
  """Waits until every shard is finished (by the other hosts)."""
  deadline = time.time() + timeout_seconds
  while True:
    finished, _ = manifest_lib.read_finished_stats(output_dir, num_shards)
    if len(finished) == num_shards:
      return
    if time.time() > deadline:
      missing = sorted(set(range(num_shards)) - set(finished))
      raise TimeoutError(
        f'Shards {missing} of {output_dir} were not finished by the other '
        f'hosts within {timeout_seconds:.0f} s: rerun those hosts (finished '
        'shards are kept).'
      )
    logging.log_every_n_seconds(
      logging.INFO,
      'Waiting for the other hosts: %d of %d shards finished in %s.',
      60,
      len(finished),
      num_shards,
      output_dir,
    )
    time.sleep(poll)


def _check_not_empty(pool: Any) -> None:
  if shard_writer.count(pool.dataset().take(1)) == 0:
    raise pools.EmptyPoolError(
      f'The unlabelled pool {pool.describe()} has no image.'
    )


# The options of `restore_teacher` a segmentation teacher takes.
_SEGMENTATION_OPTIONS = ('scales', 'flip', 'threshold', 'sliding_window')


def _partition(pool: Any, num_shards: int) -> str:
  """How the pool is split into shards (`pools.file_part`)."""
  partition = getattr(pool, 'partition', None)
  return partition(num_shards) if partition else 'records'


def _manifest_header(
  teacher_dir: str,
  teacher: Any,
  pool: Any,
  export_floor: float,
  read_threshold: float,
  num_shards: int,
) -> Dict[str, Any]:
  """What the manifest says of the run besides its shards' stats."""
  header = {
    'teacher_dir': teacher_dir,
    'teacher_checkpoint': teacher.checkpoint,
    'teacher_step': teacher.step,
    'pool': pool.describe(),
    'pool_partition': _partition(pool, num_shards),
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
    return saved_model_teacher.SavedModelSegmentationTeacher(
      path, **{k: options[k] for k in _SEGMENTATION_OPTIONS}
    )
  if options['flip']:
    raise ValueError(
      f'{path} is a served detector: it labels one view. Labelling with '
      '--flip needs the checkpoint teacher (its model_dir).'
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
  `pre_nms_top_k`, `nms_version`, `flip` (detection); `scales`, `flip`,
  `threshold`, `sliding_window` (segmentation).
  """
  if saved_model_teacher.is_saved_model(teacher_dir):
    return _saved_model_teacher(teacher_dir, checkpoint, **options)
  params = teacher_lib.read_params(teacher_dir)
  if teacher_lib.is_segmentation(params):
    return segmentation_teacher.SegmentationTeacher(
      teacher_dir, checkpoint, **{k: options[k] for k in _SEGMENTATION_OPTIONS}
    )
  keys = (
    'score_floor',
    'nms_iou_threshold',
    'max_detections',
    'pre_nms_top_k',
    'nms_version',
    'flip',
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
  wait_for_all: bool = False,
  wait_timeout_seconds: float = 24 * 3600.0,
  merge_only: bool = False,
  strategy: Optional[tf.distribute.Strategy] = None,
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
    shard_indices: which parts this process labels (None: all); each host of
      a cluster gives its own (`hosts.Host.shards`).
    batch_size: images per teacher call.
    log_every_seconds: progress log period.
    teacher: an already restored teacher to use instead of building one from
      teacher_dir (the NMS arguments above are then the teacher's own).
    scales: a segmentation teacher's inference scales (the paper's six).
    flip: a segmentation teacher also labels each scale flipped; a detection
      teacher labels each image and its mirror and fuses the two views' boxes
      (`box_fusion`; beyond the paper).
    sliding_window: a segmentation teacher sees canvases larger than its
      input through input-size windows (`segmentation_teacher`).
    wait_for_all: after its shards, wait until the other hosts finished
      theirs (the pipeline's hosts all go on to train on every shard).
    wait_timeout_seconds: how long to wait for them before an error.
    merge_only: label nothing; merge the finished shards' stats into
      manifest.json (each shard carries its header), complete or not.
    strategy: label on its replicas (`replicated`; None: one device).

  A segmentation teacher (by the teacher_dir's params.yaml) writes label maps
  instead of boxes (`segmentation_teacher`): `read_threshold` is then its
  per-pixel threshold (pixels below it get the ignore label, 255) and
  `export_floor` is unused.

  Hosts of a cluster each label their own `shard_indices` (`hosts`) into one
  output_dir; the host that finishes the last shard writes manifest.json.

  Returns:
    The manifest (written to output_dir/manifest.json when complete).
  """
  if not 0 <= export_floor <= read_threshold:
    raise ValueError(
      f'export_floor={export_floor} must be in [0, '
      f'read_threshold={read_threshold}].'
    )
  _check_shard_count(output_dir, num_shards)
  if merge_only:
    return _write_manifest(output_dir, num_shards, None, 0.0, force=True)
  start = time.time()
  strategy = replicated.labelling_strategy(strategy)
  if teacher is None:
    with strategy.scope() if strategy else contextlib.nullcontext():
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
  header = _manifest_header(
    teacher_dir, teacher, pool, export_floor, read_threshold, num_shards
  )
  teacher = _on_replicas(teacher, strategy)
  tf.io.gfile.makedirs(output_dir)
  todo = _shards_to_do(
    output_dir, num_shards, shard_indices, header['pool_partition']
  )
  _label_shards(
    teacher,
    pool,
    output_dir,
    todo,
    num_shards,
    header,
    read_threshold=read_threshold,
    batch_size=batch_size,
    log_every_seconds=log_every_seconds,
  )
  if wait_for_all:
    _wait_for_shards(output_dir, num_shards, wait_timeout_seconds)
  return _write_manifest(output_dir, num_shards, header, time.time() - start)


def _label_shards(
  teacher, pool, output_dir, todo, num_shards, header, **options
) -> None:
  """Labels shards `todo`, each into its file and stats (with `header` and
  who labelled it when)."""
  if todo:
    _check_not_empty(pool)
  progress = progress_lib.Progress(
    'pseudo labels', 'images', every_seconds=options['log_every_seconds']
  )
  for k in todo:
    labelled = {
      'host': socket.gethostname(),
      'pid': os.getpid(),
      'started': time.time(),
    }
    stats = shard_writer.label_shard(
      teacher,
      pool,
      output_dir,
      k,
      num_shards,
      options['read_threshold'],
      options['batch_size'],
      progress,
    )
    labelled['finished'] = time.time()
    manifest_lib.write_shard_stats(
      output_dir, k, num_shards, stats, header, labelled
    )


def _on_replicas(teacher, strategy):
  """The teacher labelling on every replica of `strategy` (None: as it is)."""
  if strategy is None:
    return teacher
  if isinstance(
    teacher,
    (
      saved_model_teacher.SavedModelTeacher,
      saved_model_teacher.SavedModelSegmentationTeacher,
    ),
  ):
    logging.info('A SavedModel teacher labels on one device.')
    return teacher
  logging.info(
    'Labelling on %d replicas (%s).',
    strategy.num_replicas_in_sync,
    type(strategy).__name__,
  )
  return replicated.ReplicatedTeacher(teacher, strategy)


def _check_shard_count(output_dir: str, num_shards: int) -> None:
  """Refuses an output_dir holding shards of another count: the student
  reads every shard there, so two splittings would label images twice."""
  counts = set(shard_files.shard_counts(output_dir)) - {num_shards}
  if counts:
    raise ValueError(
      f'{output_dir} holds shards of {sorted(counts)} part(s), this export '
      f'asks for {num_shards}: give --num_shards={min(counts)} (the same on '
      'every host) or export into a new directory.'
    )


def _write_manifest(
  output_dir, num_shards, header, seconds, force=False
) -> Dict[str, Any]:
  """The merged manifest; written to output_dir/manifest.json once every
  shard is finished (by whichever host finishes last: the hosts of a cluster
  write it only then, so a partial one never replaces the whole)."""
  finished, _ = manifest_lib.read_finished_stats(output_dir, num_shards)
  complete = len(finished) == num_shards
  if not complete and not force:
    logging.info(
      '%d of %d shards finished in %s: manifest.json is written by the host '
      'that finishes the last one (or by --merge).',
      len(finished),
      num_shards,
      output_dir,
    )
  return manifest_lib.write_manifest(
    output_dir, num_shards, header, seconds, write=complete or force
  )
