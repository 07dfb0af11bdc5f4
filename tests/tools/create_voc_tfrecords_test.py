"""tools/create_voc_tfrecords.py: a VOC 2012 + SBD tree into Model Garden's
segmentation schema, checked before it writes."""

import os

from helpers import run_tool
import numpy as np
from official.vision.dataloaders import segmentation_input
from PIL import Image
import pytest
from scipy import io as scipy_io
import tensorflow as tf

pytestmark = pytest.mark.e2e

# Palette PNGs, as VOC's SegmentationClass (index = class id, 255 = void).
PALETTE = [c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)]


def _label(seed, size=(24, 32), void=True):
  rng = np.random.default_rng(seed)
  label = rng.integers(0, 21, size=size, dtype=np.uint8)
  if void:
    label[0, :] = 255
  return label


def _jpeg(path, size=(24, 32)):
  Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path, 'JPEG')


def _voc_tree(root, train=('a', 'b'), val=('c',)):
  voc = root / 'VOC2012'
  for sub in ('ImageSets/Segmentation', 'JPEGImages', 'SegmentationClass'):
    (voc / sub).mkdir(parents=True)
  for split, ids in (('train', train), ('val', val)):
    (voc / 'ImageSets/Segmentation' / f'{split}.txt').write_text(
      '\n'.join(ids) + '\n'
    )
  for k, i in enumerate((*train, *val)):
    _jpeg(voc / 'JPEGImages' / f'{i}.jpg')
    png = Image.fromarray(_label(k), mode='P')
    png.putpalette(PALETTE)
    png.save(voc / 'SegmentationClass' / f'{i}.png')
  return voc


def _sbd_tree(root, voc, train=('b', 'd'), val=('c', 'e')):
  sbd = root / 'sbd'
  (sbd / 'cls').mkdir(parents=True)
  (sbd / 'img').mkdir()
  (sbd / 'train.txt').write_text('\n'.join(train) + '\n')
  (sbd / 'val.txt').write_text('\n'.join(val) + '\n')
  for k, i in enumerate((*train, *val)):
    if not (voc / 'JPEGImages' / f'{i}.jpg').exists():
      _jpeg(sbd / 'img' / f'{i}.jpg')
    segmentation = _label(100 + k, void=False)
    scipy_io.savemat(
      str(sbd / 'cls' / f'{i}.mat'), {'GTcls': {'Segmentation': segmentation}}
    )
  return sbd


def _records(pattern):
  decoder = segmentation_input.Decoder()
  out = {}
  for path in sorted(tf.io.gfile.glob(pattern)):
    for record in tf.data.TFRecordDataset(path):
      data = decoder.decode(record)
      label = tf.io.decode_png(data['image/segmentation/class/encoded'])
      example = tf.train.Example.FromString(record.numpy())
      source_id = example.features.feature['image/source_id'].bytes_list
      out[source_id.value[0].decode()] = (
        data['image/height'].numpy(),
        label.numpy()[..., 0],
      )
  return out


def _run(*args):
  return run_tool('create_voc_tfrecords.py', *args, '--train_shards=2')


def test_train_aug_is_voc_train_and_sbd_less_voc_val(tmp_path):
  voc = _voc_tree(tmp_path)
  sbd = _sbd_tree(tmp_path, voc)
  out = tmp_path / 'out'
  result = _run(f'--voc_dir={voc}', f'--sbd_dir={sbd}', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  train = _records(str(out / 'train_aug-*'))
  assert sorted(train) == ['a', 'b', 'd', 'e']  # 'c' is VOC val
  assert len(tf.io.gfile.glob(str(out / 'train_aug-*'))) == 2
  assert sorted(_records(str(out / 'val-*'))) == ['c']
  # 'b' is in both: VOC's label (with its void row) wins over SBD's.
  np.testing.assert_array_equal(train['b'][1], _label(1))
  np.testing.assert_array_equal(train['d'][1], _label(101, void=False))
  assert train['a'][0] == 24
  assert not [p for p in os.listdir(out) if p.startswith('.')]


def test_without_sbd_the_train_split_is_voc_train(tmp_path):
  voc = _voc_tree(tmp_path)
  out = tmp_path / 'out'
  result = _run(f'--voc_dir={voc}', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(_records(str(out / 'train-*'))) == ['a', 'b']


def test_a_missing_label_is_named_and_nothing_is_written(tmp_path):
  voc = _voc_tree(tmp_path)
  os.remove(voc / 'SegmentationClass' / 'b.png')
  out = tmp_path / 'out'
  result = _run(f'--voc_dir={voc}', f'--output_dir={out}')
  assert result.returncode != 0
  assert 'b.png' in result.stderr and 'missing' in result.stderr
  assert not out.exists()


def test_a_bad_image_keeps_the_earlier_shards(tmp_path):
  voc = _voc_tree(tmp_path)
  out = tmp_path / 'out'
  assert _run(f'--voc_dir={voc}', f'--output_dir={out}').returncode == 0
  before = sorted(os.listdir(out))
  (voc / 'JPEGImages' / 'b.jpg').write_bytes(b'not a jpeg')
  result = _run(f'--voc_dir={voc}', f'--output_dir={out}')
  assert result.returncode != 0
  assert 'b.jpg does not decode' in result.stderr
  assert sorted(p for p in os.listdir(out) if not p.startswith('.')) == before
  assert sorted(_records(str(out / 'train-*'))) == ['a', 'b']


def test_a_missing_list_is_named(tmp_path):
  result = _run(f'--voc_dir={tmp_path}', f'--output_dir={tmp_path / "o"}')
  assert result.returncode != 0
  assert os.path.join('ImageSets', 'Segmentation', 'val.txt') in result.stderr
