"""Datasets by name, as gin configurables: the embedded Shapes-Det and COCO.

Each returns a `DetectionData` that says where the TFRecords are. Nothing is
read or generated until `prepare()` is called, so `--print_config` is instant and
a missing dataset is reported before any model is built.
"""

import dataclasses
import os
from typing import Callable
from typing import Dict
from typing import Optional

import gin
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import pools
from official_selftrain.data import shapes


class MissingDatasetError(FileNotFoundError):
  """A dataset's files are not where the configuration says."""


# The paper's initialisation checkpoints (PAPER.md, Tables 2-4); each dataset
# says where its own live. 'rand_init' needs none.
INIT_NAMES = ('rand_init', 'imagenet', 'imagenet_plus_plus', 'simclr')


@dataclasses.dataclass(frozen=True)
class NamedInit:
  """Where a named init checkpoint of a dataset's backbone is.

  Attributes:
    path: checkpoint file prefix, or a directory holding one.
    make: how to make or get it (said when it is missing).
    converter: maps its variable names to Model Garden's ('' = same names).
  """

  path: str
  make: str
  converter: str = ''


class _Prepares:
  """`prepare()` for a dataset whose `prepare_fn` makes its files exist."""

  prepare_fn: Optional[Callable[[], None]]

  def prepare(self) -> None:
    if self.prepare_fn is not None:
      self.prepare_fn()


@dataclasses.dataclass
class DetectionData(_Prepares):
  """Where a detection dataset lives.

  Attributes:
    name: short name, for logs.
    train_pattern: glob of training TFRecords.
    val_pattern: glob of validation TFRecords.
    annotation_file: COCO-format JSON of the val split (None: taken from the
      val TFRecords by Model Garden's evaluator).
    num_classes: number of classes including background (label 0).
    num_train: training images, when known.
    num_val: validation images, when known.
    class_names: names of labels 1..num_classes-1.
    prepare_fn: makes sure the files exist (generates or checks).
    test_pattern: glob of a test split's TFRecords, apart from val: val
      selects settings, test reports (None: no test split).
    test_annotation_file: COCO-format JSON of the test split.
    num_test: test images, when known.
    inits: the init checkpoints this dataset's configs name (see
      `INIT_NAMES`).
  """

  name: str
  train_pattern: str
  val_pattern: str
  annotation_file: Optional[str]
  num_classes: int
  num_train: Optional[int] = None
  num_val: Optional[int] = None
  class_names: tuple = ()
  prepare_fn: Optional[Callable[[], None]] = None
  test_pattern: Optional[str] = None
  test_annotation_file: Optional[str] = None
  num_test: Optional[int] = None
  inits: Dict[str, NamedInit] = dataclasses.field(default_factory=dict)


@gin.configurable
def shapes_det(
  data_dir: Optional[str] = None,
  num_train: int = 2000,
  num_val: int = 500,
  num_test: int = 1000,
  label_fraction: float = 1.0,
  seed: int = 0,
  image_size: int = 128,
  max_objects: int = 7,
  min_object_size: float = 0.07,
  max_object_size: float = 0.38,
  pretrained_dir: Optional[str] = None,
) -> DetectionData:
  """Shapes-Det, the embedded COCO, generated on first use and cached.

  Args:
    data_dir: cache root (default $SELFTRAIN_DATA_DIR or ~/.cache/...).
    num_train: size of the full labelled train split.
    num_val: size of the val split (COCO-format JSON is written beside it),
      the selection split: steps, thresholds and alpha are chosen on it.
    num_test: size of the test split, which reports (0: none).
    label_fraction: fraction of the train split with human labels (the paper's
      20/50/100% of COCO, Table 3); a prefix of the full split.
    seed: generator seed.
    image_size: side of the square images.
    max_objects: most objects drawn per scene.
    min_object_size: smallest object extent, as a fraction of the image side.
    max_object_size: largest object extent, as a fraction of the image side.
    pretrained_dir: where the Shapes-Cls pre-trained backbones are (default
      <data_dir>/pretrained), see `shapes_inits`.

  Returns:
    DetectionData.
  """
  if not 0 < label_fraction <= 1:
    raise ValueError(
      f'shapes_det.label_fraction={label_fraction} must be in (0, 1].'
    )
  data_dir = data_dir or embedded.default_data_dir()
  spec = shapes.SceneSpec(
    image_size=image_size,
    max_objects=max_objects,
    min_object_size=min_object_size,
    max_object_size=max_object_size,
  )
  labelled = max(1, int(round(num_train * label_fraction)))
  train_dir = embedded.shapes_det_split_dir(
    data_dir, 'train', labelled, seed, spec
  )
  val_dir = embedded.shapes_det_split_dir(data_dir, 'val', num_val, seed, spec)
  test_dir = embedded.shapes_det_split_dir(
    data_dir, 'test', num_test, seed, spec
  )

  def prepare():
    embedded.shapes_det_split(data_dir, 'train', labelled, seed, spec)
    embedded.shapes_det_split(data_dir, 'val', num_val, seed, spec)
    if num_test:
      embedded.shapes_det_split(data_dir, 'test', num_test, seed, spec)

  return DetectionData(
    name='shapes_det',
    train_pattern=embedded.split_records(train_dir),
    val_pattern=embedded.split_records(val_dir),
    annotation_file=os.path.join(val_dir, 'annotations.json'),
    num_classes=len(spec.classes) + 1,
    num_train=labelled,
    num_val=num_val,
    class_names=spec.classes,
    prepare_fn=prepare,
    test_pattern=embedded.split_records(test_dir) if num_test else None,
    test_annotation_file=(
      os.path.join(test_dir, 'annotations.json') if num_test else None
    ),
    num_test=num_test or None,
    inits=shapes_inits(pretrained_dir or os.path.join(data_dir, 'pretrained')),
  )


# Each named Shapes init: (the gin file that pre-trains it, where in that
# run's model dir the checkpoint is ('' = the dir itself), its recipe version).
# The version is part of the cached folder's name from 2 on: bump it when the
# gin file's recipe changes, so that a cache made by the old recipe is never
# restored under a name that now means the new one. imagenet_plus_plus 2: the
# student without model noise (README, Noisy Student).
SHAPES_INITS = {
  'imagenet': ('shapes_cls_pretrain.gin', '', 1),
  'imagenet_plus_plus': ('shapes_cls_noisy_student.gin', 'student', 2),
}


def shapes_inits(pretrained_dir: str) -> Dict[str, NamedInit]:
  """Shapes-Det's ImageNet and ImageNet++: backbones pre-trained on Shapes-Cls.

  Made by the training command on the gin file of `SHAPES_INITS`; there is no
  SimCLR of the miniature.
  """
  inits = {}
  for name, (gin_file, subdir, recipe) in SHAPES_INITS.items():
    path = os.path.join(
      pretrained_dir,
      gin_file[: -len('.gin')] + (f'_r{recipe}' if recipe > 1 else ''),
    )
    inits[name] = NamedInit(
      path=os.path.join(path, subdir) if subdir else path,
      make=(
        f'Make it with:\n  python -m official_selftrain.train '
        f'--gin_file={gin_file} --model_dir={path}'
      ),
    )
  return inits


COCO_NUM_CLASSES = 91  # COCO's 80 classes keep their original ids 1..90.
COCO_TRAIN_IMAGES = 118287
COCO_VAL_IMAGES = 5000


@gin.configurable
def coco(
  data_dir: str = '/data/coco',
  train_pattern: str = 'train-*',
  val_pattern: str = 'val-*',
  annotation_file: str = 'instances_val2017.json',
  pretrained_dir: str = '/data/pretrained',
) -> DetectionData:
  """COCO 2017 as TFRecords made by tools/create_coco_tfrecords.py.

  Args:
    data_dir: directory holding the TFRecords and the val annotation JSON.
    train_pattern: glob of train shards, relative to data_dir.
    val_pattern: glob of val shards, relative to data_dir.
    annotation_file: val annotations, relative to data_dir (or absolute).
    pretrained_dir: where the public init checkpoints were unpacked (see
      `COCO_INITS`).

  Returns:
    DetectionData.
  """
  train = os.path.join(data_dir, train_pattern)
  val = os.path.join(data_dir, val_pattern)
  annotations = os.path.join(data_dir, annotation_file)

  def prepare():
    for what, path in (('train TFRecords', train), ('val TFRecords', val)):
      if not tf.io.gfile.glob(path):
        raise MissingDatasetError(
          f'No COCO {what} match {path!r} (gin binding coco.data_dir='
          f'{data_dir!r}). Make them with:\n  python '
          '-m official_selftrain.tools.create_coco_tfrecords '
          '--image_dir=<coco>/train2017 '
          '--object_annotations_file=<coco>/annotations/'
          'instances_train2017.json '
          f'--output_file_prefix={data_dir}/train --num_shards=256\n'
          '(and the same with val2017, instances_val2017.json, '
          f'--output_file_prefix={data_dir}/val --num_shards=32), '
          'or bind coco.data_dir to where they are.'
        )
    if not tf.io.gfile.exists(annotations):
      raise MissingDatasetError(
        f'COCO val annotations {annotations!r} not found (gin binding '
        'coco.annotation_file); copy instances_val2017.json there.'
      )

  return DetectionData(
    name='coco',
    train_pattern=train,
    val_pattern=val,
    annotation_file=annotations,
    num_classes=COCO_NUM_CLASSES,
    num_train=COCO_TRAIN_IMAGES,
    num_val=COCO_VAL_IMAGES,
    prepare_fn=prepare,
    inits=public_inits(pretrained_dir, 'coco.pretrained_dir'),
  )


def public_inits(pretrained_dir: str, binding: str) -> Dict[str, NamedInit]:
  """The paper's public backbones (`COCO_INITS`), unpacked under
  `pretrained_dir` (the gin `binding` that sets it is named when missing)."""
  return {
    name: NamedInit(
      os.path.join(pretrained_dir, folder),
      f'Download and unpack {url} into {pretrained_dir} (gin binding '
      f'{binding}).',
      converter,
    )
    for name, (folder, url, converter) in COCO_INITS.items()
  }


VOC_NUM_CLASSES = 21  # background + 20 classes; 255 marks void pixels.
VOC_TRAIN_AUG_IMAGES = 10582  # VOC 2012 train + SBD, without VOC 2012 val.
VOC_VAL_IMAGES = 1449


@gin.configurable
def pascal_voc(
  data_dir: str = '/data/pascal',
  train_pattern: str = 'train_aug-*',
  val_pattern: str = 'val-*',
  pretrained_dir: str = '/data/pretrained',
) -> DetectionData:
  """PASCAL VOC 2012 segmentation (train_aug / val) as TFRecords in Model
  Garden's segmentation schema, made by tools/create_voc_tfrecords.py.

  Args:
    data_dir: directory holding the TFRecords.
    train_pattern: glob of train shards, relative to data_dir.
    val_pattern: glob of val shards, relative to data_dir.
    pretrained_dir: where the public init checkpoints were unpacked.

  Returns:
    DetectionData (the fields a segmentation experiment reads).
  """
  train = os.path.join(data_dir, train_pattern)
  val = os.path.join(data_dir, val_pattern)

  def prepare():
    for what, path in (('train_aug', train), ('val', val)):
      if not tf.io.gfile.glob(path):
        raise MissingDatasetError(
          f'No PASCAL VOC {what} TFRecords match {path!r} (gin binding '
          f'pascal_voc.data_dir={data_dir!r}). Make them with:\n  python '
          '-m official_selftrain.tools.create_voc_tfrecords '
          '--voc_dir=<VOCdevkit>/VOC2012 --sbd_dir=<benchmark_RELEASE>/dataset '
          f'--output_dir={data_dir}\nor bind pascal_voc.data_dir to where '
          'they are.'
        )

  return DetectionData(
    name='pascal_voc',
    train_pattern=train,
    val_pattern=val,
    annotation_file=None,
    num_classes=VOC_NUM_CLASSES,
    num_train=VOC_TRAIN_AUG_IMAGES,
    num_val=VOC_VAL_IMAGES,
    prepare_fn=prepare,
    inits=public_inits(pretrained_dir, 'pascal_voc.pretrained_dir'),
  )


# The paper's public checkpoints (PAPER.md, "Initialisation checkpoints"):
# name -> (folder they unpack to, where they are published, converter).
COCO_INITS = {
  'imagenet': (
    'efficientnet-b7',
    'https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/'
    'ckptsaug/efficientnet-b7.tar.gz',
    'efficientnet_tf1',
  ),
  'imagenet_plus_plus': (
    'noisy-student-efficientnet-b7',
    'https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/'
    'noisystudent/noisy_student_efficientnet-b7.tar.gz',
    'efficientnet_tf1',
  ),
  'simclr': (
    'r50_1x_sk0',
    'gs://simclr-checkpoints-tf2/simclrv2/pretrained/r50_1x_sk0',
    'simclr_tf2',
  ),
}


@gin.configurable
def detection_tfrecords(
  train_pattern: str = gin.REQUIRED,
  val_pattern: str = gin.REQUIRED,
  num_classes: int = gin.REQUIRED,
  annotation_file: Optional[str] = None,
  num_val: Optional[int] = None,
  test_pattern: Optional[str] = None,
  test_annotation_file: Optional[str] = None,
  num_test: Optional[int] = None,
) -> DetectionData:
  """Your own data: any TFRecords in Model Garden's detection schema.

  Args:
    train_pattern: glob of training TFRecords.
    val_pattern: glob of validation TFRecords.
    num_classes: including background (label 0).
    annotation_file: COCO-format val JSON; None lets Model Garden's evaluator
      build the ground truth from the val records.
    num_val: val images (None: evaluate until the val files end).
    test_pattern: glob of a test split apart from val (None: none); val
      selects, test reports.
    test_annotation_file: its COCO-format JSON.
    num_test: test images (None: until the files end).

  Returns:
    DetectionData.
  """

  def prepare():
    for binding, pattern in (
      ('train_pattern', train_pattern),
      ('val_pattern', val_pattern),
      ('test_pattern', test_pattern),
    ):
      if pattern is None:
        continue
      if not tf.io.gfile.glob(pattern):
        raise MissingDatasetError(
          f'detection_tfrecords.{binding}={pattern!r} matches no file.'
        )

  return DetectionData(
    name='detection_tfrecords',
    train_pattern=train_pattern,
    val_pattern=val_pattern,
    annotation_file=annotation_file,
    num_classes=num_classes,
    num_val=num_val,
    prepare_fn=prepare,
    test_pattern=test_pattern,
    test_annotation_file=test_annotation_file,
    num_test=num_test,
  )


@gin.configurable
def shapes_det_pool(
  num_images: int = 4000,
  data_dir: Optional[str] = None,
  seed: int = 0,
  image_size: int = 128,
  max_objects: int = 7,
  min_object_size: float = 0.07,
  max_object_size: float = 0.38,
):
  """Non-iconic unlabelled pool (the paper's OpenImages): Shapes-Det scenes.

  Drawn from the 'unlabeled' split of the same generator, so no image is in
  the labelled train or val sets. Its labels are kept aside in the records:
  the exporter ignores them except to measure pseudo-label quality.

  Args:
    num_images: pool size.
    data_dir: cache root.
    seed: generator seed.
    image_size: image side.
    max_objects: most objects per scene.
    min_object_size: smallest object, fraction of the side.
    max_object_size: largest object, fraction of the side.

  Returns:
    A TFRecordPool with a `prepare` that generates it.
  """
  data_dir = data_dir or embedded.default_data_dir()
  spec = shapes.SceneSpec(
    image_size=image_size,
    max_objects=max_objects,
    min_object_size=min_object_size,
    max_object_size=max_object_size,
  )
  directory = embedded.shapes_det_split_dir(
    data_dir, 'unlabeled', num_images, seed, spec
  )
  return pools.TFRecordPool(
    embedded.split_records(directory),
    name='shapes_det_pool',
    prepare_fn=lambda: embedded.shapes_det_split(
      data_dir, 'unlabeled', num_images, seed, spec
    ),
  )


@dataclasses.dataclass
class ClassificationData(_Prepares):
  """Where an image classification dataset lives (Model Garden's schema:
  `image/encoded`, `image/class/label`).

  Attributes:
    name: short name, for logs.
    train_pattern: glob of training TFRecords.
    val_pattern: glob of the held-out split's TFRecords.
    num_classes: logits of the classifier (label ids are 0..num_classes-1).
    num_train: training images.
    num_val: held-out images.
    prepare_fn: makes sure the files exist.
  """

  name: str
  train_pattern: str
  val_pattern: str
  num_classes: int
  num_train: Optional[int] = None
  num_val: Optional[int] = None
  prepare_fn: Optional[Callable[[], None]] = None


@gin.configurable
def shapes_cls(
  data_dir: Optional[str] = None,
  num_train: int = 10000,
  num_val: int = 1000,
  seed: int = 0,
  image_size: int = 128,
) -> ClassificationData:
  """Shapes-Cls, the embedded ImageNet: iconic images of `CLS_CLASSES`.

  Its train split is apart from the unlabelled iconic pool (`shapes_cls_pool`,
  split 'unlabeled') and from the held-out split, which reports top-1.

  Args:
    data_dir: cache root.
    num_train: labelled training images.
    num_val: held-out images.
    seed: generator seed.
    image_size: image side.

  Returns:
    ClassificationData.
  """
  data_dir = data_dir or embedded.default_data_dir()
  dirs = {
    split: embedded.shapes_cls_split_dir(data_dir, split, n, seed, image_size)
    for split, n in (('train', num_train), ('val', num_val))
  }

  def prepare():
    embedded.shapes_cls_split(data_dir, 'train', num_train, seed, image_size)
    embedded.shapes_cls_split(data_dir, 'val', num_val, seed, image_size)

  return ClassificationData(
    name='shapes_cls',
    train_pattern=embedded.split_records(dirs['train']),
    val_pattern=embedded.split_records(dirs['val']),
    # Labels are 1..len(CLS_CLASSES), as Shapes-Det's; 0 is never used.
    num_classes=len(shapes.CLS_CLASSES) + 1,
    num_train=num_train,
    num_val=num_val,
    prepare_fn=prepare,
  )


@gin.configurable
def shapes_cls_pool(
  num_images: int = 4000,
  data_dir: Optional[str] = None,
  seed: int = 0,
  image_size: int = 128,
):
  """Iconic unlabelled pool (the paper's ImageNet): Shapes-Cls, labels unused.

  Args:
    num_images: pool size.
    data_dir: cache root.
    seed: generator seed.
    image_size: image side.

  Returns:
    A TFRecordPool with a `prepare` that generates it.
  """
  data_dir = data_dir or embedded.default_data_dir()
  directory = embedded.shapes_cls_split_dir(
    data_dir, 'unlabeled', num_images, seed, image_size
  )
  return pools.TFRecordPool(
    embedded.split_records(directory),
    name='shapes_cls_pool',
    prepare_fn=lambda: embedded.shapes_cls_split(
      data_dir, 'unlabeled', num_images, seed, image_size
    ),
  )
