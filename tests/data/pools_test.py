"""Unlabelled pools split across hosts: every record in one part, each part
reading only its own files."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_selftrain.data import pools


def _write_files(directory, sizes):
  """TFRecord files of `sizes[i]` records each; record j of file i has source
  id `i-j` (every second one has none, to test the fallback id)."""
  paths = []
  for i, size in enumerate(sizes):
    path = os.path.join(directory, f'data-{i:02d}.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
      for j in range(size):
        source_id = f'{i}-{j}'.encode() if j % 2 == 0 else b''
        feature = {
          'image/source_id': tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[source_id])
          ),
          'image/encoded': tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b'x'])
          ),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writer.write(example.SerializeToString())
    paths.append(path)
  return paths


def _ids(dataset):
  return [e['source_id'].numpy().decode() for e in dataset]


def _expected_id(directory, i, j):
  path = os.path.join(directory, f'data-{i:02d}.tfrecord')
  return f'{i}-{j}' if j % 2 == 0 else f'{path}:{j}'


@pytest.mark.parametrize('num_files', [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize('num_parts', [1, 2, 3, 5, 8])
def test_file_part_puts_each_record_in_one_part(num_files, num_parts):
  sizes = [7 + f for f in range(num_files)]
  owner = {}
  for part in range(num_parts):
    files, stride, offset = pools.file_part(num_files, num_parts, part)
    # A part reads its share of the files, never the whole pool.
    assert len(files) <= max(1, -(-num_files // num_parts))
    for f in files:
      for j in range(offset, sizes[f], stride):
        assert (f, j) not in owner, (f, j, owner.get((f, j)), part)
        owner[(f, j)] = part
  assert len(owner) == sum(sizes)


def test_tfrecord_parts_read_only_their_files(tmp_path):
  paths = _write_files(str(tmp_path), [4, 3, 5, 2])
  pool = pools.TFRecordPool(str(tmp_path / 'data-*.tfrecord'))
  assert pool.partition(4) == 'files:4' and pool.partition(8) == 'records:4'
  whole = set(_ids(pool.dataset()))
  assert len(whole) == 14
  for path in paths[1:]:  # only file 0 is left readable
    with open(path, 'wb') as f:
      f.write(b'not a tfrecord')
  assert _ids(pool.dataset(4, 0)) == [
    _expected_id(str(tmp_path), 0, j) for j in range(4)
  ]
  # 8 parts of 4 files: parts 0 and 4 share file 0, by alternate records.
  assert _ids(pool.dataset(8, 0)) == [
    _expected_id(str(tmp_path), 0, j) for j in (0, 2)
  ]
  assert _ids(pool.dataset(8, 4)) == [
    _expected_id(str(tmp_path), 0, j) for j in (1, 3)
  ]
  with pytest.raises(tf.errors.DataLossError):
    _ids(pool.dataset(4, 1))


@pytest.mark.parametrize('num_parts', [3, 5])
def test_tfrecord_parts_cover_the_pool_once(tmp_path, num_parts):
  _write_files(str(tmp_path), [6, 1, 4])
  pool = pools.TFRecordPool(str(tmp_path / 'data-*.tfrecord'))
  parts = [_ids(pool.dataset(num_parts, k)) for k in range(num_parts)]
  every = [i for part in parts for i in part]
  assert sorted(every) == sorted(_ids(pool.dataset()))
  assert len(set(every)) == len(every) == 11
  # `index` counts within the part, from 0.
  indices = [int(e['index']) for e in pool.dataset(num_parts, 0)]
  assert indices == list(range(len(parts[0])))


def test_image_folder_with_fewer_files_than_parts(tmp_path):
  for name in ('a.png', 'b.png', 'c.png'):
    Image.fromarray(np.zeros([4, 4, 3], np.uint8)).save(tmp_path / name)
  pool = pools.ImageFolderPool(str(tmp_path))
  parts = [_ids(pool.dataset(8, k)) for k in range(8)]
  assert sorted(i for part in parts for i in part) == [
    'a.png',
    'b.png',
    'c.png',
  ]
  assert parts[5] == []  # an empty part is an empty dataset, not an error
  element = pool.dataset(8, 5).element_spec
  assert element['encoded'].dtype == tf.string


def test_part_out_of_range_is_an_error():
  with pytest.raises(ValueError, match=r'part 3 is not in \[0, 3\)'):
    pools.file_part(2, 3, 3)
