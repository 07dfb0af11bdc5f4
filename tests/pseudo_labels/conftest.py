"""Fixtures of the pseudo-label tests: pools (the teachers are in
tests/conftest.py)."""

import os

from helpers import TINY_SPEC
import pytest

from official_selftrain.data import embedded
from official_selftrain.data import pools
from official_selftrain.data import shapes


@pytest.fixture
def dir_without_checkpoint(teacher_dir, tmp_path):
  """A model_dir with the teacher's params.yaml and no checkpoint."""
  path = tmp_path / 'no_ckpt'
  path.mkdir()
  with open(os.path.join(teacher_dir, 'params.yaml')) as f:
    (path / 'params.yaml').write_text(f.read())
  return str(path)


@pytest.fixture(scope='session')
def pool(tmp_path_factory):
  """20 Shapes-Det images in 3 files, their labels held aside."""
  out = embedded.shapes_det_split(
    str(tmp_path_factory.mktemp('pool')),
    'unlabeled',
    20,
    spec=TINY_SPEC,
    num_shards=3,
  )
  return pools.TFRecordPool(os.path.join(out, 'data-*.tfrecord'))


@pytest.fixture(scope='session')
def seg_pool(tmp_path_factory):
  """12 Shapes-Det images of the segmenter's size, their maps held aside."""
  out = embedded.shapes_det_split(
    str(tmp_path_factory.mktemp('seg_pool')),
    'unlabeled',
    12,
    spec=shapes.SceneSpec(image_size=128, max_objects=5),
    num_shards=2,
  )
  return pools.TFRecordPool(os.path.join(out, 'data-*.tfrecord'))
