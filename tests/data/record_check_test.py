"""Records whose image does not decode are found by file and index."""

import os

from helpers import write_with_corrupt_image
import tensorflow as tf

from official_selftrain.data import record_check
from official_selftrain.tasks import detection


def test_finds_the_corrupt_record_and_caches(tmp_path):
  good = str(tmp_path / 'a.tfrecord')
  bad = str(tmp_path / 'b.tfrecord')
  write_with_corrupt_image(good, 3, bad_index=-1)
  write_with_corrupt_image(bad, 4, bad_index=2)
  cache = str(tmp_path / 'cache')
  found = record_check.find_undecodable_records(
    str(tmp_path / '*.tfrecord'), cache_dir=cache
  )
  assert [(r.path, r.index) for r in found] == [(bad, 2)]
  assert 'b.tfrecord record #2' in str(found[0])
  assert len(os.listdir(cache)) == 2
  again = record_check.find_undecodable_records(
    [str(tmp_path / '*.tfrecord')], cache_dir=cache
  )
  assert again == found


def test_skipping_dataset_fn_drops_exactly_the_bad_records(tmp_path):
  path = str(tmp_path / 'c.tfrecord')
  write_with_corrupt_image(path, 5, bad_index=1)
  bad = record_check.find_undecodable_records(path)
  dataset_fn = detection.skipping_dataset_fn(bad)
  for arg in (path, [path]):
    records = list(dataset_fn(arg))
    assert len(records) == 4
    ids = [
      tf.train.Example.FromString(r.numpy())
      .features.feature['image/source_id']
      .bytes_list.value[0]
      for r in records
    ]
    assert ids == [b'1', b'3', b'4', b'5']
