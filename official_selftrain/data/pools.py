"""Unlabelled pools the teacher labels: TFRecords, image folders, TFDS splits.

Every source yields, for one part `k` of `num_parts` (so hosts can split a
pool), a tf.data.Dataset of dicts:

  index:      int64, position of the image within this part (for bookkeeping)
  source_id:  string, kept as `image/source_id` in the pseudo-label records
  encoded:    string, the original encoded image, written back unchanged
  gt_boxes:   float32 [N, 4] normalised ground truth held aside (may be empty)
  gt_classes: int64 [N]
  gt_segmentation: string, the held-aside PNG label map ('' if none)

Labels in the pool are never given to the student: they are used only to
measure pseudo-label precision and recall (Shapes pools keep them aside).
"""

import dataclasses
import os
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

import gin
import tensorflow as tf

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')

_GT_FEATURES = {
  'image/encoded': tf.io.FixedLenFeature([], tf.string, default_value=''),
  'image/source_id': tf.io.FixedLenFeature([], tf.string, default_value=''),
  'image/object/bbox/ymin': tf.io.VarLenFeature(tf.float32),
  'image/object/bbox/xmin': tf.io.VarLenFeature(tf.float32),
  'image/object/bbox/ymax': tf.io.VarLenFeature(tf.float32),
  'image/object/bbox/xmax': tf.io.VarLenFeature(tf.float32),
  'image/object/class/label': tf.io.VarLenFeature(tf.int64),
  'image/segmentation/class/encoded': tf.io.FixedLenFeature(
    [], tf.string, default_value=''
  ),
}


class EmptyPoolError(ValueError):
  """The unlabelled pool has no image."""


def _parse_record(index, record, fallback_id):
  parsed = tf.io.parse_single_example(record, _GT_FEATURES)
  dense = {
    k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
    for k, v in parsed.items()
  }
  boxes = tf.stack(
    [
      dense['image/object/bbox/ymin'],
      dense['image/object/bbox/xmin'],
      dense['image/object/bbox/ymax'],
      dense['image/object/bbox/xmax'],
    ],
    axis=-1,
  )
  source_id = dense['image/source_id']
  source_id = tf.where(tf.strings.length(source_id) > 0, source_id, fallback_id)
  return {
    'index': index,
    'source_id': source_id,
    'encoded': dense['image/encoded'],
    'gt_boxes': tf.reshape(boxes, [-1, 4]),
    'gt_classes': dense['image/object/class/label'],
    'gt_segmentation': dense['image/segmentation/class/encoded'],
  }


def _no_gt(index, source_id, encoded):
  return {
    'index': index,
    'source_id': source_id,
    'encoded': encoded,
    'gt_boxes': tf.zeros([0, 4], tf.float32),
    'gt_classes': tf.zeros([0], tf.int64),
    'gt_segmentation': tf.constant(''),
  }


@dataclasses.dataclass
class TFRecordPool:
  """TF Examples (any labels in them are ignored, kept aside for quality)."""

  pattern: str
  name: str = 'tfrecords'
  prepare_fn: Optional[Callable[[], Any]] = None

  def prepare(self) -> None:
    """Makes the pool exist (generates embedded pools)."""
    if self.prepare_fn is not None:
      self.prepare_fn()

  def describe(self) -> Dict[str, Any]:
    return {'kind': self.name, 'pattern': self.pattern}

  def files(self) -> List[str]:
    files = []
    for pattern in self.pattern.split(','):
      files.extend(sorted(tf.io.gfile.glob(pattern.strip())))
    if not files:
      raise EmptyPoolError(f'Unlabelled pool {self.pattern!r} matches no file.')
    return files

  def partition(self, num_parts: int) -> str:
    """How the pool is split, with its file count: a pool that gained or
    lost files splits otherwise, and its finished shards are redone."""
    num_files = len(self.files())
    return f'{partition_kind(num_files, num_parts)}:{num_files}'

  def dataset(self, num_parts: int = 1, part: int = 0) -> tf.data.Dataset:
    files = self.files()
    mine, stride, offset = file_part(len(files), num_parts, part)
    paths = tf.constant([files[i] for i in mine], tf.string)

    def records_of(path):
      records = tf.data.TFRecordDataset(path).enumerate()
      records = records.shard(stride, offset)
      return records.map(lambda pos, record: (path, pos, record))

    data = tf.data.Dataset.from_tensor_slices(paths).flat_map(records_of)
    return data.enumerate().map(
      lambda i, x: _parse_record(i, x[2], _record_id(x[0], x[1])),
      num_parallel_calls=tf.data.AUTOTUNE,
    )


def partition_kind(num_files: int, num_parts: int) -> str:
  """How `file_part` splits `num_files` files into `num_parts` parts."""
  return 'files' if num_files >= num_parts else 'records'


def file_part(num_files: int, num_parts: int, part: int):
  """(file indices, record stride, record offset) of part `part`.

  With at least as many files as parts, part k is files k, k + P, ...: each
  host reads only its own files. With fewer, part k reads the one file
  f = k mod F and takes every m-th of its records from k div F on, m the
  number of parts that share file f: still each record in exactly one part,
  and no part reads a file it does not label from. (tf.data's `shard` on the
  whole pool, the usual way, makes every part read every file.)
  """
  if not 0 <= part < num_parts:
    raise ValueError(f'part {part} is not in [0, {num_parts}).')
  if partition_kind(num_files, num_parts) == 'files':
    return list(range(part, num_files, num_parts)), 1, 0
  file_index = part % num_files
  sharing = len(range(file_index, num_parts, num_files))
  return [file_index], sharing, part // num_files


def _record_id(path, position):
  """`<file path>:<record position>`, the id of a record without one (the
  whole path: two folders may hold files of one name)."""
  return tf.strings.join([path, tf.strings.as_string(position)], ':')


@dataclasses.dataclass
class ImageFolderPool:
  """JPEG/PNG files in a folder (recursively) or matching a glob; no labels."""

  path: str
  name: str = 'images'

  def describe(self) -> Dict[str, Any]:
    return {'kind': self.name, 'path': self.path}

  def files(self) -> List[str]:
    if tf.io.gfile.isdir(self.path):
      found = []
      for root, _, names in tf.io.gfile.walk(self.path):
        found.extend(
          os.path.join(root, n)
          for n in names
          if n.lower().endswith(IMAGE_EXTENSIONS)
        )
    else:
      found = [
        f
        for f in tf.io.gfile.glob(self.path)
        if f.lower().endswith(IMAGE_EXTENSIONS)
      ]
    if not found:
      raise EmptyPoolError(
        f'Unlabelled pool {self.path!r} has no image file '
        f'({", ".join(IMAGE_EXTENSIONS)}).'
      )
    return sorted(found)

  def partition(self, num_parts: int) -> str:
    del num_parts  # one image per file: parts are always sets of files
    return 'files'

  def dataset(self, num_parts: int = 1, part: int = 0) -> tf.data.Dataset:
    files = self.files()[part::num_parts]  # may be none: more parts than files
    base = self.path if tf.io.gfile.isdir(self.path) else ''
    ids = [os.path.relpath(f, base) if base else f for f in files]
    data = tf.data.Dataset.from_tensor_slices(
      (tf.constant(files, tf.string), tf.constant(ids, tf.string))
    ).enumerate()
    return data.map(
      lambda i, x: _no_gt(i, x[1], tf.io.read_file(x[0])),
      num_parallel_calls=tf.data.AUTOTUNE,
    )


@dataclasses.dataclass
class TFDSPool:
  """A TFDS split (its labels are not used); images re-encoded as PNG."""

  dataset_name: str
  split: str = 'train'
  data_dir: Optional[str] = None
  image_key: str = 'image'
  name: str = 'tfds'

  def describe(self) -> Dict[str, Any]:
    return {
      'kind': self.name,
      'dataset': self.dataset_name,
      'split': self.split,
    }

  def partition(self, num_parts: int) -> str:
    del num_parts
    return 'records'

  def dataset(self, num_parts: int = 1, part: int = 0) -> tf.data.Dataset:
    import tensorflow_datasets as tfds  # slow to import; only TFDS pools need it

    data = tfds.load(
      self.dataset_name,
      split=self.split,
      data_dir=self.data_dir,
      shuffle_files=False,
    )
    data = data.shard(num_parts, part).enumerate()
    prefix = f'{self.dataset_name}/{self.split}/'

    def convert(index, example):
      image = example[self.image_key]
      source_id = tf.strings.join(
        [prefix, tf.strings.as_string(index * num_parts + part)]
      )
      # Lossless, so the student sees the pixels the teacher saw.
      return _no_gt(index, source_id, tf.io.encode_png(image))

    return data.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


@gin.configurable
def tfrecord_pool(pattern: str = gin.REQUIRED) -> TFRecordPool:
  return TFRecordPool(pattern)


@gin.configurable
def image_folder_pool(path: str = gin.REQUIRED) -> ImageFolderPool:
  return ImageFolderPool(path)


@gin.configurable
def tfds_pool(
  dataset_name: str = gin.REQUIRED,
  split: str = 'train',
  data_dir: Optional[str] = None,
  image_key: str = 'image',
) -> TFDSPool:
  return TFDSPool(dataset_name, split, data_dir, image_key)
