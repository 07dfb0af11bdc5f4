"""Shard names, the finished check and atomic writes."""

import os
import socket

from official_selftrain.pseudo_labels import shard_files


def test_shard_path_names_index_and_count(tmp_path):
  path = shard_files.shard_path(str(tmp_path), 3, 12)
  assert path == os.path.join(str(tmp_path), 'pseudo-00003-of-00012.tfrecord')


def test_shard_without_stats_is_not_finished(tmp_path):
  out = str(tmp_path)
  shard_files.atomic_write_bytes(shard_files.shard_path(out, 0, 2), b'x')
  assert not shard_files.is_finished(out, 0, 2)


def test_shard_with_stats_is_finished(tmp_path):
  out = str(tmp_path)
  shard_files.atomic_write_bytes(shard_files.shard_path(out, 0, 2), b'x')
  shard_files.atomic_write_bytes(shard_files.stats_path(out, 0, 2), b'{}')
  assert shard_files.is_finished(out, 0, 2)


def test_atomic_write_leaves_only_the_file(tmp_path):
  path = str(tmp_path / 'a.json')
  shard_files.atomic_write_bytes(path, b'first')
  shard_files.atomic_write_bytes(path, b'second')
  assert os.listdir(tmp_path) == ['a.json']
  assert (tmp_path / 'a.json').read_bytes() == b'second'


def test_stale_temporaries_of_this_host_are_removed(tmp_path):
  path = str(tmp_path / 'pseudo-00000-of-00001.tfrecord')
  here = socket.gethostname()
  (tmp_path / f'pseudo-00000-of-00001.tfrecord.tmp-{here}-123').write_bytes(
    b'x'
  )
  # Another host's may be a shard it is writing now.
  there = [
    f'pseudo-00000-of-00001.tfrecord.tmp-{here}x-9',
    f'pseudo-00000-of-00001.tfrecord.tmp-{here}-2-9',  # host `<here>-2`
  ]
  for name in there:
    (tmp_path / name).write_bytes(b'x')
  (tmp_path / 'other.tmp-123').write_bytes(b'x')
  shard_files.remove_stale_temps(path)
  assert sorted(os.listdir(tmp_path)) == sorted(['other.tmp-123'] + there)
