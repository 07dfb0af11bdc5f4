"""Labelling one shard: part K of the pool in, a finished shard file out.

The teacher labels batches of un-augmented images while a writer thread turns
the previous batch into records (`schema.pseudo_label_example`) and stats, and
a counting thread finds the shard's size (for the ETA, and to name the images
that did not decode). The shard is written under a temporary name and renamed
when complete (`shard_files`).
"""

import collections
from concurrent import futures
import functools
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional
from typing import Set

from absl import logging
import numpy as np
import tensorflow as tf

from official_selftrain import progress as progress_lib
from official_selftrain.pseudo_labels import manifest
from official_selftrain.pseudo_labels import shard_files
from official_selftrain.pseudo_labels import teacher as teacher_lib

# What the writer thread needs of each image, as numpy on the host (and the
# teacher's own `host_keys`).
_HOST_KEYS = ('index', 'source_id', 'encoded', 'height', 'width')

# Batches labelled ahead of the writer thread before the teacher waits.
_MAX_PENDING = 2


def teacher_input(
  teacher: teacher_lib.Teacher, element: Dict[str, tf.Tensor]
) -> Dict[str, tf.Tensor]:
  """A pool element with its image decoded and preprocessed for the teacher."""
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


def count(dataset: tf.data.Dataset) -> int:
  return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


def _teacher_batches(
  teacher: teacher_lib.Teacher, raw: tf.data.Dataset, batch_size: int
) -> tf.data.Dataset:
  data = raw.map(
    lambda e: teacher_input(teacher, e),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  # A record whose image does not decode is dropped here and named later.
  return data.ignore_errors().padded_batch(batch_size).prefetch(2)


class ShardWriter:
  """Serialises, writes and counts labelled images of one shard.

  Runs on its own thread so the teacher labels the next batch meanwhile: this
  host-side work (building Examples, matching against held-aside ground truth)
  cost ~15% of export speed when done in turn with inference.
  """

  def __init__(self, writer, stats, teacher):
    self._writer = writer
    self._stats = stats
    self._teacher = teacher
    self.seen: Set[int] = set()

  def write_batch(self, out, host) -> int:
    for i in range(len(host['index'])):
      example = self._teacher.label_image(out, host, i, self._stats)
      self._writer.write(example.SerializeToString())
      self.seen.add(int(host['index'][i]))
    return len(host['index'])


def _report(
  progress: progress_lib.Progress,
  index: int,
  done_before: int,
  done_in_shard: int,
  shard_total: Optional[int],
  force: bool = False,
) -> None:
  """Logs images done overall (the line's count and rate) and in the shard."""
  of = '?' if shard_total is None else shard_total
  details = f'shard {index}: {done_in_shard}/{of} images'
  rate = progress.rate()
  if shard_total is not None and rate:
    left = max(shard_total - done_in_shard, 0) / rate
    details += f', shard ETA {progress_lib.duration(left)}'
  progress.update(done_before + done_in_shard, details=details, force=force)


def _label_batches(
  teacher: teacher_lib.Teacher,
  raw: tf.data.Dataset,
  batch_size: int,
  shard_writer: ShardWriter,
  report: Callable[..., None],
) -> int:
  """Labels `raw` into `shard_writer`; returns the number of records in it.

  `report(done_in_shard, shard_total, force=...)` is called as batches are
  written (shard_total None while still being counted).
  """
  with (
    futures.ThreadPoolExecutor(1) as write_thread,
    futures.ThreadPoolExecutor(1) as count_thread,
  ):
    # The shard's size is counted beside the labelling, not before it.
    expected = count_thread.submit(count, raw)
    pending = collections.deque()
    for batch in _teacher_batches(teacher, raw, batch_size):
      out = teacher.predict(batch['image'], batch['image_info'])
      out = {key: v.numpy() for key, v in out.items()}
      keys = _HOST_KEYS + tuple(teacher.host_keys)
      host = {key: batch[key].numpy() for key in keys}
      check_finite(out, host['source_id'])
      pending.append(write_thread.submit(shard_writer.write_batch, out, host))
      while pending and (len(pending) > _MAX_PENDING or pending[0].done()):
        pending.popleft().result()
        total = expected.result() if expected.done() else None
        report(len(shard_writer.seen), total)
    while pending:
      pending.popleft().result()
      report(len(shard_writer.seen), expected.result(), force=not pending)
    return expected.result()


def check_finite(out: Dict[str, np.ndarray], source_ids) -> None:
  """Refuses a batch whose teacher outputs hold NaN or inf (a diverged
  checkpoint): thresholds compare False with NaN, so its labels would be
  written silently wrong. Raised before the batch is written; this shard's
  file stays a temporary one and the finished shards stay as they are."""
  bad = sorted(
    key
    for key, value in out.items()
    if value.dtype.kind == 'f' and not np.isfinite(value).all()
  )
  if bad:
    ids = [s.decode(errors='replace') for s in source_ids[:5]]
    raise ValueError(
      f"The teacher's {', '.join(bad)} are not finite (NaN or inf) on the "
      f'batch of images {ids}: has its checkpoint diverged? Nothing of this '
      'batch was written; finished shards are kept.'
    )


def _decode_reason(encoded: bytes) -> str:
  try:
    tf.io.decode_image(encoded, channels=3, expand_animations=False)
  except tf.errors.InvalidArgumentError as e:
    return str(e).strip().splitlines()[0][:200]
  return 'decoded on retry (transient read error)'


def _list_skipped(
  raw: tf.data.Dataset,
  missing: Set[int],
  index: int,
  stats: manifest.ShardStats,
) -> None:
  """Adds the records of `raw` whose index is `missing` to the skipped."""
  for element in raw:
    if int(element['index']) in missing:
      stats.skipped.append(
        {
          'source_id': element['source_id'].numpy().decode(errors='replace'),
          'shard': index,
          'reason': _decode_reason(element['encoded'].numpy()),
        }
      )
  logging.warning(
    'Shard %d: skipped %d image(s) that do not decode: %s',
    index,
    len(missing),
    stats.skipped[:5],
  )


def label_shard(
  teacher: teacher_lib.Teacher,
  pool: Any,
  output_dir: str,
  index: int,
  num_shards: int,
  read_threshold: float,
  batch_size: int,
  progress: progress_lib.Progress,
) -> manifest.ShardStats:
  """Labels part `index` of the pool into its shard; returns its stats.

  `progress` counts images over the whole export: this shard's are added to
  its count, and the shard's own count and ETA are given beside it.
  """
  raw = pool.dataset(num_shards, index)
  stats = teacher.new_stats(read_threshold)
  path = shard_files.shard_path(output_dir, index, num_shards)
  shard_files.remove_stale_temps(path)  # left by a killed run
  tmp = shard_files.temp_path(path)
  report = functools.partial(_report, progress, index, progress.done)
  with tf.io.TFRecordWriter(tmp) as writer:
    shard_writer = ShardWriter(writer, stats, teacher)
    expected = _label_batches(teacher, raw, batch_size, shard_writer, report)
  missing = set(range(expected)) - shard_writer.seen
  if missing:
    _list_skipped(raw, missing, index, stats)
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return stats
