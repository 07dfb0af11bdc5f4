r"""Converts PASCAL VOC 2012 segmentation (and SBD) to Model Garden's schema.

  python -m official_selftrain.tools.create_voc_tfrecords \
      --voc_dir=/data/VOCdevkit/VOC2012 \
      --sbd_dir=/data/benchmark_RELEASE/dataset --output_dir=/data/pascal

writes `val-*.tfrecord` (VOC 2012 val, 1,449 images) and
`train_aug-*.tfrecord` (VOC 2012 train + SBD train and val, less VOC 2012 val:
10,582 images, the paper's training set); without `--sbd_dir`, `train-*`
(VOC 2012 train, 1,464 images; bind `pascal_voc.train_pattern='train-*'`).
Each record: `image/encoded` (the JPEG as is), `image/height`, `image/width`,
`image/source_id`, `image/segmentation/class/encoded` (PNG of class ids 0-20,
255 for VOC's void borders), as Model Garden's `segmentation_input.Decoder`
reads them. An image in both sets takes VOC's label (it marks the borders).

Lists and files are checked before anything is written (each missing one
named); an image that does not decode or a label of another size stops the
run, naming the file. A split is written under a temporary name and moved into
place only when complete, so a failed or killed run never leaves shards that
look finished, nor replaces an earlier run's. Shards are written by Model
Garden's `tfrecord_lib`.
"""

import io
import os
import shutil
import sys
from typing import Dict
from typing import List
from typing import Tuple

from absl import app
from absl import flags
import numpy as np
from official.vision.data import tf_example_builder
from official.vision.data import tfrecord_lib
from PIL import Image
import tensorflow as tf

flags.DEFINE_string('voc_dir', None, 'VOCdevkit/VOC2012 (the unpacked tar).')
flags.DEFINE_string(
  'sbd_dir', None, 'SBD benchmark_RELEASE/dataset (optional: train_aug).'
)
flags.DEFINE_string('output_dir', None, 'Where the TFRecords go.')
flags.DEFINE_integer('train_shards', 32, 'Shards of the train split.')
flags.DEFINE_integer('val_shards', 8, 'Shards of the val split.')
flags.DEFINE_integer(
  'num_processes', 0, 'Parallel encoders (0: this process only).'
)

FLAGS = flags.FLAGS

VOC_LISTS = os.path.join('ImageSets', 'Segmentation')
# (image id) -> (image path, label path)
Items = Dict[str, Tuple[str, str]]


class VocInputError(ValueError):
  """The VOC or SBD tree lacks or holds something bad; says what."""


def _read_list(path: str) -> List[str]:
  if not os.path.isfile(path):
    raise VocInputError(f'image list {path}: not found.')
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def voc_items(voc_dir: str, split: str) -> Items:
  """VOC 2012's segmentation `split` ('train' / 'val'): id -> files."""
  ids = _read_list(os.path.join(voc_dir, VOC_LISTS, f'{split}.txt'))
  return {
    i: (
      os.path.join(voc_dir, 'JPEGImages', f'{i}.jpg'),
      os.path.join(voc_dir, 'SegmentationClass', f'{i}.png'),
    )
    for i in ids
  }


def sbd_items(sbd_dir: str, voc_dir: str) -> Items:
  """SBD's train + val (id -> image, `cls/{id}.mat`); images from VOC's
  JPEGImages where present, else SBD's own `img/`."""
  ids = _read_list(os.path.join(sbd_dir, 'train.txt'))
  ids += _read_list(os.path.join(sbd_dir, 'val.txt'))
  items = {}
  for i in ids:
    image = os.path.join(voc_dir, 'JPEGImages', f'{i}.jpg')
    if not os.path.isfile(image):
      image = os.path.join(sbd_dir, 'img', f'{i}.jpg')
    items[i] = (image, os.path.join(sbd_dir, 'cls', f'{i}.mat'))
  return items


def splits(voc_dir: str, sbd_dir: str = None) -> Dict[str, Items]:
  """{'val': VOC val, 'train_aug' (with SBD) or 'train': the training set}."""
  val = voc_items(voc_dir, 'val')
  train = voc_items(voc_dir, 'train')
  if not sbd_dir:
    return {'train': train, 'val': val}
  aug = {i: v for i, v in sbd_items(sbd_dir, voc_dir).items() if i not in val}
  aug.update(train)  # VOC's label (with void borders) wins
  return {'train_aug': dict(sorted(aug.items())), 'val': val}


def read_label(path: str) -> np.ndarray:
  """Class ids [H, W] uint8 from a VOC palette PNG or an SBD `.mat`."""
  if path.endswith('.mat'):
    from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top

    mat = scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)
    return np.asarray(mat['GTcls'].Segmentation, np.uint8)
  with Image.open(path) as image:
    if image.mode not in ('P', 'L'):
      raise VocInputError(
        f'label {path}: mode {image.mode}, expected a palette (P) or '
        'grey (L) PNG of class ids.'
      )
    return np.asarray(image, np.uint8)


def to_example(image_id: str, image_path: str, label_path: str):
  """One record (and 0 skipped annotations, as `tfrecord_lib` expects)."""
  with open(image_path, 'rb') as f:
    encoded = f.read()
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      image.load()
      width, height = image.size
      image_format = image.format
  except (OSError, SyntaxError) as e:
    raise VocInputError(f'image {image_path} does not decode: {e}') from e
  label = read_label(label_path)
  if label.shape != (height, width):
    raise VocInputError(
      f'label {label_path} is {label.shape[1]}x{label.shape[0]}, its image '
      f'{image_path} {width}x{height}.'
    )
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
    encoded, image_format, height, width, 3, image_id.encode()
  )
  builder.add_semantic_mask_matrix_feature(label[..., None])
  return builder.example, 0


def check_files(name: str, items: Items) -> None:
  """Every listed image and label exists (else the first few are named)."""
  missing = [
    p for pair in items.values() for p in pair if not os.path.isfile(p)
  ]
  if missing:
    shown = '\n  '.join(missing[:10])
    more = f'\n  ... and {len(missing) - 10} more' if len(missing) > 10 else ''
    raise VocInputError(
      f'{name}: {len(missing)} listed file(s) missing:\n  {shown}{more}'
    )


def write_split(name: str, items: Items, output_dir: str, shards: int) -> int:
  """Writes `name-*.tfrecord` whole, or nothing; returns the record count."""
  tmp = os.path.join(output_dir, f'.{name}.incomplete')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  tfrecord_lib.write_tf_record_dataset(
    os.path.join(tmp, name),
    [(i, *paths) for i, paths in items.items()],
    to_example,
    shards,
    multiple_processes=FLAGS.num_processes,
  )
  for old in tf.io.gfile.glob(os.path.join(output_dir, f'{name}-*.tfrecord')):
    os.remove(old)
  for shard in sorted(os.listdir(tmp)):
    os.replace(os.path.join(tmp, shard), os.path.join(output_dir, shard))
  os.rmdir(tmp)
  return len(items)


def main(argv):
  del argv
  if not FLAGS.voc_dir or not FLAGS.output_dir:
    sys.exit('create_voc_tfrecords: --voc_dir and --output_dir are required.')
  try:
    sets = splits(FLAGS.voc_dir, FLAGS.sbd_dir)
    for name, items in sets.items():
      check_files(name, items)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    for name, items in sets.items():
      shards = FLAGS.val_shards if name == 'val' else FLAGS.train_shards
      count = write_split(
        name, items, FLAGS.output_dir, min(shards, len(items))
      )
      print(f'{name}: {count} images -> {FLAGS.output_dir}/{name}-*.tfrecord')
  except VocInputError as e:
    sys.exit(f'create_voc_tfrecords: {e}')


def entry():
  app.run(main)


if __name__ == '__main__':
  entry()
