"""A SavedModel teacher labels a pool as the checkpoint it was exported from."""

import io
import os

from helpers import unmatched_detections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_selftrain.data import pools
from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import export
from official_selftrain.serving import export as serving_export

pytestmark = pytest.mark.slow

# The tiny detector's scores sit near the focal prior (~0.015): export and
# label below that, so records hold boxes to compare.
SERVED_FLOOR = 0.005
EXPORT_FLOOR = 0.01
SEGMENTATION_MAP = 'image/segmentation/class/encoded'


def _saved_model(model_dir, path, score_threshold=None):
  run_dir, checkpoint = serving_export.resolve_checkpoint(model_dir)
  serving_export.export_saved_model(
    serving_export.experiment_config(run_dir, None),
    checkpoint,
    path,
    score_threshold=score_threshold,
  )
  return path


@pytest.fixture(scope='module')
def detector_saved_model(teacher_dir, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('served') / 'detector')
  return _saved_model(teacher_dir, path, SERVED_FLOOR)


@pytest.fixture(scope='module')
def mixed_size_pool(tmp_path_factory):
  """An image folder of PNGs of three sizes."""
  folder = tmp_path_factory.mktemp('mixed_pool')
  spec = shapes.SceneSpec(image_size=96, max_objects=3)
  for i, (height, width) in enumerate([(64, 64), (96, 80), (48, 72)] * 2):
    image = shapes.det_scene(0, 'unlabeled', i, spec).image
    Image.fromarray(image).resize((width, height)).save(folder / f'{i}.png')
  return pools.ImageFolderPool(str(folder))


def _records(output_dir):
  """source id -> {feature: values} of every pseudo-label record."""
  pattern = os.path.join(output_dir, 'pseudo-*.tfrecord')
  records = {}
  for raw in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)):
    example = tf.train.Example.FromString(raw.numpy())
    features = {}
    for key, feature in example.features.feature.items():
      kind = feature.WhichOneof('kind')
      features[key] = list(getattr(feature, kind).value)
    records[features['image/source_id'][0]] = features
  return records


def _label(teacher, pool, output_dir, **options):
  export.export_pseudo_labels(
    teacher_dir=teacher, pool=pool, output_dir=output_dir, **options
  )
  return _records(output_dir)


_BOX_KEYS = [f'image/object/bbox/{k}' for k in ('ymin', 'xmin', 'ymax', 'xmax')]


def _detections(record):
  """[(class, score, box)] of a record."""
  boxes = np.stack([record[k] for k in _BOX_KEYS], axis=-1).reshape(-1, 4)
  return list(
    zip(
      record['image/object/class/label'],
      record['image/object/score'],
      boxes,
    )
  )


MAX_DETECTIONS = 100  # the exporter's default cap
SCORE_TIE = 1e-5


def _untied(detections):
  """`detections` less those whose order the float noise of two equal
  computations may decide: ties with the last box kept when the cap is full
  (a saturated teacher scores many boxes 1.0) and ties with the floor."""
  cut = min(d[1] for d in detections) if detections else 0.0
  full = len(detections) >= MAX_DETECTIONS
  return [
    d
    for d in detections
    if abs(d[1] - EXPORT_FLOOR) >= SCORE_TIE
    and not (full and d[1] - cut < SCORE_TIE)
  ]


def _assert_same_boxes(ours, theirs):
  assert ours.keys() == theirs.keys()
  total = compared = unmatched = 0
  for source_id, record in ours.items():
    other = theirs[source_id]
    for key in ('image/height', 'image/width', 'image/encoded'):
      assert record[key] == other[key], (source_id, key)
    mine, yours = _detections(record), _detections(other)
    assert abs(len(mine) - len(yours)) <= 1, source_id
    total += len(mine)
    mine = _untied(mine)
    compared += len(mine)
    unmatched += unmatched_detections(mine, yours, box_tolerance=1e-4)
  # The comparison saw boxes, most of them outside ties.
  assert compared > len(ours) and compared >= total // 2, (compared, total)
  # Beyond ties, only a suppression decided by float noise may differ.
  assert unmatched <= 0.02 * compared, (unmatched, compared)


@pytest.mark.parametrize('pool_name', ['pool', 'mixed_size_pool'])
def test_saved_model_detector_labels_as_its_checkpoint(
  pool_name, teacher_dir, detector_saved_model, tmp_path, request
):
  pool = request.getfixturevalue(pool_name)
  options = dict(export_floor=EXPORT_FLOOR, batch_size=4, num_shards=2)
  checkpoint = _label(teacher_dir, pool, str(tmp_path / 'ckpt'), **options)
  served = _label(
    detector_saved_model, pool, str(tmp_path / 'served'), **options
  )
  _assert_same_boxes(served, checkpoint)


def test_a_floor_below_the_served_one_names_the_export_flag(
  detector_saved_model, pool, tmp_path
):
  with pytest.raises(ValueError, match='--score_threshold=0.001'):
    export.export_pseudo_labels(
      teacher_dir=detector_saved_model,
      pool=pool,
      output_dir=str(tmp_path / 'out'),
      export_floor=0.001,
    )
  # A served detector labels one view: fused flips need the checkpoint.
  with pytest.raises(ValueError, match='--flip needs the checkpoint'):
    export.export_pseudo_labels(
      teacher_dir=detector_saved_model,
      pool=pool,
      output_dir=str(tmp_path / 'out'),
      flip=True,
    )
  assert not (tmp_path / 'out').exists()  # refused before writing anything


def _label_maps(records):
  return {
    source_id: np.asarray(Image.open(io.BytesIO(r[SEGMENTATION_MAP][0])))
    for source_id, r in records.items()
  }


def _straddling_threshold(teacher_dir, pool, tmp_path, options):
  """(threshold, the checkpoint's label maps at it): the first threshold that
  some but not all pixels fall below, so that comparing the served maps tests
  where it is applied. The tiny teacher's confidence varies from run to run
  (seen: 0.3% to 28% of its pixels below 0.8)."""
  ignored = {}
  for threshold in (0.8, 0.95, 0.99, 0.999, 0.5):
    maps = _label_maps(
      _label(
        teacher_dir,
        pool,
        str(tmp_path / f'ckpt_{threshold}'),
        read_threshold=threshold,
        **options,
      )
    )
    ignored[threshold] = np.mean([(m == 255).mean() for m in maps.values()])
    if 0 < ignored[threshold] < 1:
      return threshold, maps
  raise AssertionError(f'no threshold splits the pixels: {ignored}')


def test_saved_model_segmenter_labels_as_its_checkpoint(
  seg_teacher_dir, seg_pool, tmp_path
):
  saved = _saved_model(seg_teacher_dir, str(tmp_path / 'segmenter'))
  options = dict(scales=[1.0], flip=True, batch_size=4)
  options['read_threshold'], checkpoint = _straddling_threshold(
    seg_teacher_dir, seg_pool, tmp_path, options
  )
  served = _label_maps(
    _label(saved, seg_pool, str(tmp_path / 'srv'), **options)
  )
  assert served.keys() == checkpoint.keys()
  for source_id, labels in checkpoint.items():
    assert served[source_id].shape == labels.shape
    assert (served[source_id] == labels).mean() > 0.999, source_id
  with pytest.raises(ValueError, match='--scales=1'):
    export.export_pseudo_labels(
      teacher_dir=saved, pool=seg_pool, output_dir=str(tmp_path / 'ms')
    )
