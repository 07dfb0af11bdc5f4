"""Fixtures of the pseudo-label tests: a tiny trained teacher and a pool."""

import os

from helpers import TINY_GIN
from helpers import TINY_SEG_GIN
from helpers import TINY_SPEC
from helpers import run_train
import pytest

from official_selftrain.data import embedded
from official_selftrain.data import pools
from official_selftrain.data import shapes


@pytest.fixture(scope='session')
def teacher_dir(data_dir, tmp_path_factory):
  """A tiny teacher, trained once for these tests."""
  model_dir = str(tmp_path_factory.mktemp('teacher'))
  result = run_train(
    [f'--gin_file={TINY_GIN}', f'--model_dir={model_dir}', '--mode=train'],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


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
def seg_teacher_dir(data_dir, tmp_path_factory):
  """A tiny segmentation teacher (128 px), trained once for these tests."""
  model_dir = str(tmp_path_factory.mktemp('seg_teacher'))
  result = run_train(
    [f'--gin_file={TINY_SEG_GIN}', f'--model_dir={model_dir}', '--mode=train'],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


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
