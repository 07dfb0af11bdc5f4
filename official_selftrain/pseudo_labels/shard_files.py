"""The files of a pseudo-label export: their names and how they are written.

Shard K of N is `pseudo-KKKKK-of-NNNNN.tfrecord`, its stats `<shard>.json`.
Both are written under a temporary name (`<path>.tmp-<host>-<pid>`) and renamed when
complete, the shard first: a shard with its stats file is finished, anything
else is redone, and the temporaries a killed run left are removed.
"""

import os
import re
import socket
from typing import List

import tensorflow as tf


def shard_path(output_dir: str, index: int, num_shards: int) -> str:
  return os.path.join(
    output_dir, f'pseudo-{index:05d}-of-{num_shards:05d}.tfrecord'
  )


def shard_glob(output_dir: str) -> str:
  """The glob of every shard in `output_dir` (what the student reads)."""
  return os.path.join(output_dir, 'pseudo-*.tfrecord')


def shard_counts(output_dir: str) -> List[int]:
  """The shard counts N named by the files of `output_dir` (one, normally)."""
  found = set()
  for path in tf.io.gfile.glob(shard_glob(output_dir)):
    match = re.search(r'-of-(\d+)\.tfrecord$', path)
    if match:
      found.add(int(match.group(1)))
  return sorted(found)


def stats_path(output_dir: str, index: int, num_shards: int) -> str:
  return shard_path(output_dir, index, num_shards) + '.json'


def is_finished(output_dir: str, index: int, num_shards: int) -> bool:
  return tf.io.gfile.exists(
    shard_path(output_dir, index, num_shards)
  ) and tf.io.gfile.exists(stats_path(output_dir, index, num_shards))


def temp_path(path: str) -> str:
  """Where this process writes `path` before renaming it into place (named
  by host and process, so a clash between hosts can be traced)."""
  return f'{path}.tmp-{socket.gethostname()}-{os.getpid()}'


def remove_stale_temps(path: str) -> None:
  """Removes the temporaries of `path` that a killed run on this host left
  (another host's may be a shard it is writing now)."""
  mine = re.compile(re.escape(f'.tmp-{socket.gethostname()}-') + r'\d+$')
  for stale in tf.io.gfile.glob(f'{path}.tmp-*'):
    if mine.search(stale):  # not host `vm-2`'s when this is `vm`
      tf.io.gfile.remove(stale)


def atomic_write_bytes(path: str, data: bytes) -> None:
  tmp = temp_path(path)
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)
