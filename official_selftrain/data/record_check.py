"""Finds TF Example records whose image does not decode, by file and index.

A corrupt JPEG inside a TFRecord fails deep in a tf.data map with a message
that names neither the file nor the record, and tf.data has no per-element
try/except. So the scan runs eagerly, record by record, only when it is needed:
when training failed on a decode error (to name the culprit), or when the user
asked to skip such records (`skip_corrupt_records`). Results are cached by file
path, size and modification time.
"""

import dataclasses
import hashlib
import json
import os
from typing import List
from typing import Optional
from typing import Sequence
from typing import Union

from absl import logging
import tensorflow as tf

IMAGE_KEY = 'image/encoded'


@dataclasses.dataclass(frozen=True)
class BadRecord:
  path: str
  index: int
  reason: str

  def __str__(self):
    return f'{self.path} record #{self.index}: {self.reason}'


def _expand(patterns: Union[str, Sequence[str]]) -> List[str]:
  if isinstance(patterns, str):
    patterns = patterns.split(',')
  files = []
  for pattern in patterns:
    files.extend(sorted(tf.io.gfile.glob(pattern.strip())))
  return files


def scan_file(path: str) -> List[BadRecord]:
  """Decodes every image of one TFRecord file; returns those that fail."""
  bad = []
  spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value='')}
  for index, record in enumerate(tf.data.TFRecordDataset(path)):
    try:
      encoded = tf.io.parse_single_example(record, spec)[IMAGE_KEY]
      if not encoded.numpy():
        raise ValueError('empty image/encoded')
      tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      reason = str(e).strip().splitlines()[0][:200]
      bad.append(BadRecord(path, index, reason))
  return bad


def _cache_key(path: str) -> str:
  stat = tf.io.gfile.stat(path)
  return hashlib.sha1(
    f'{path}:{stat.length}:{stat.mtime_nsec}'.encode()
  ).hexdigest()


def find_undecodable_records(
  patterns: Union[str, Sequence[str]], cache_dir: Optional[str] = None
) -> List[BadRecord]:
  """Scans all files matching `patterns` (comma-separated or a list).

  Args:
    patterns: file glob(s) of TFRecords in the detection schema.
    cache_dir: if given, per-file results are kept there and reused while the
      file's size and modification time are unchanged.

  Returns:
    The records whose `image/encoded` does not decode, in file order.
  """
  bad = []
  for path in _expand(patterns):
    cache = None
    if cache_dir:
      cache = os.path.join(cache_dir, f'record_check_{_cache_key(path)}.json')
      if tf.io.gfile.exists(cache):
        with tf.io.gfile.GFile(cache) as f:
          bad.extend(BadRecord(**r) for r in json.load(f))
        continue
    logging.info('Checking that every image of %s decodes...', path)
    found = scan_file(path)
    bad.extend(found)
    if cache:
      tf.io.gfile.makedirs(cache_dir)
      with tf.io.gfile.GFile(cache, 'w') as f:
        json.dump([dataclasses.asdict(r) for r in found], f)
  return bad
