"""Pseudo-label export: schema, resumption, skipped images, clear errors."""

import json
import os
import subprocess
import sys

from helpers import REPO
from helpers import TINY_GIN
from helpers import TINY_SPEC
from helpers import run_train
from helpers import sigkill_when
from helpers import write_with_corrupt_image
import numpy as np
from official.vision.dataloaders import tf_example_decoder
import pytest
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import sources
from official_selftrain.pseudo_labels import teacher as teacher_lib

TOOL = os.path.join(REPO, 'tools', 'export_pseudo_labels.py')


@pytest.fixture(scope='module')
def teacher_dir(data_dir, tmp_path_factory):
  """A tiny teacher, trained once for this module."""
  model_dir = str(tmp_path_factory.mktemp('teacher'))
  result = run_train(
    [f'--gin_file={TINY_GIN}', f'--model_dir={model_dir}', '--mode=train'],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
  out = embedded.shapes_det_split(
    str(tmp_path_factory.mktemp('pool')),
    'unlabeled',
    20,
    spec=TINY_SPEC,
    num_shards=3,
  )
  return sources.TFRecordPool(os.path.join(out, 'data-*.tfrecord'))


def _ids(output_dir):
  files = sorted(
    tf.io.gfile.glob(os.path.join(output_dir, 'pseudo-*.tfrecord'))
  )
  decoder = tf_example_decoder.TfExampleDecoder()
  return [
    decoder.decode(r)['source_id'].numpy().decode()
    for r in tf.data.TFRecordDataset(files)
  ]


def test_model_garden_decoder_reads_pseudo_labels(teacher_dir, pool, tmp_path):
  out = str(tmp_path / 'pseudo')
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pool,
    output_dir=out,
    num_shards=3,
    export_floor=0.0,
    batch_size=8,
  )
  assert sorted(_ids(out), key=int) == [str(i) for i in range(1, 21)]
  files = sorted(tf.io.gfile.glob(os.path.join(out, 'pseudo-*.tfrecord')))
  decoder = tf_example_decoder.TfExampleDecoder()
  for record in tf.data.TFRecordDataset(files).take(4):
    decoded = decoder.decode(record)
    boxes = decoded['groundtruth_boxes'].numpy()
    assert boxes.shape[0] > 0  # floor 0: the teacher's top boxes are kept
    assert (boxes >= 0).all() and (boxes <= 1).all()
    example = tf.train.Example.FromString(record.numpy())
    scores = np.array(
      example.features.feature['image/object/score'].float_list.value
    )
    assert len(scores) == boxes.shape[0]
    assert (np.diff(scores) <= 1e-6).all()  # sorted by score, as NMS returns
    # The original encoded image is written back unchanged.
    assert decoded['image'].shape == (64, 64, 3)
  assert manifest['complete'] and manifest['images_written'] == 20
  assert manifest['images_read'] == 20 and manifest['images_skipped'] == 0
  assert manifest['teacher_step'] == 6
  assert manifest['teacher_checkpoint'].endswith('ckpt-6')
  assert manifest['nms']['nms_iou_threshold'] == 0.5
  quality = manifest['quality_at_read_threshold']
  assert quality['available'] and quality['true_objects_per_image'] > 1
  with open(os.path.join(out, 'manifest.json')) as f:
    assert json.load(f)['images_written'] == 20


def test_corrupt_image_is_skipped_and_listed(teacher_dir, tmp_path):
  path = str(tmp_path / 'pool.tfrecord')
  write_with_corrupt_image(path, 6, bad_index=2)
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=sources.TFRecordPool(path),
    output_dir=str(tmp_path / 'out'),
    num_shards=1,
    batch_size=4,
  )
  assert manifest['images_written'] == 5 and manifest['images_skipped'] == 1
  assert manifest['skipped'][0]['source_id'] == '3'
  assert manifest['skipped'][0]['reason']
  assert sorted(_ids(str(tmp_path / 'out')), key=int) == [
    '1',
    '2',
    '4',
    '5',
    '6',
  ]


def test_image_folder_pool(teacher_dir, tmp_path):
  split = embedded.shapes_det_split(
    str(tmp_path), 'val', 5, spec=TINY_SPEC, write_jpegs=True
  )
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=sources.ImageFolderPool(split + '/images'),
    output_dir=str(tmp_path / 'out'),
    num_shards=2,
    batch_size=4,
  )
  assert manifest['images_written'] == 5
  assert sorted(_ids(str(tmp_path / 'out'))) == sorted(
    f'{i}.jpg' for i in range(1, 6)
  )
  assert not manifest['quality_at_read_threshold']['available']


def test_clear_errors(teacher_dir, tmp_path):
  with pytest.raises(sources.EmptyPoolError, match='matches no file'):
    export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=sources.TFRecordPool(str(tmp_path / 'x*')),
      output_dir=str(tmp_path / 'out'),
      num_shards=1,
    )
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(sources.EmptyPoolError, match='no image file'):
    export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=sources.ImageFolderPool(str(empty)),
      output_dir=str(tmp_path / 'out'),
      num_shards=1,
    )
  no_ckpt = tmp_path / 'no_ckpt'
  no_ckpt.mkdir()
  (no_ckpt / 'params.yaml').write_text(
    open(os.path.join(teacher_dir, 'params.yaml')).read()
  )
  with pytest.raises(teacher_lib.NoCheckpointError, match='No checkpoint'):
    teacher_lib.latest_checkpoint(str(no_ckpt))
  result = subprocess.run(
    [
      sys.executable,
      TOOL,
      f'--teacher_dir={no_ckpt}',
      f'--pool={tmp_path}/x*',
      f'--output_dir={tmp_path}/o',
    ],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert f'No checkpoint in teacher directory {str(no_ckpt)!r}' in (
    result.stderr
  )


@pytest.mark.slow
def test_killed_export_resumes_with_every_image_once(teacher_dir, tmp_path):
  split = embedded.shapes_det_split(
    str(tmp_path), 'unlabeled', 120, spec=TINY_SPEC, num_shards=4
  )
  out = str(tmp_path / 'out')
  args = [
    sys.executable,
    TOOL,
    f'--teacher_dir={teacher_dir}',
    f'--pool={split}/data-*.tfrecord',
    f'--output_dir={out}',
    '--num_shards=12',
    '--batch_size=2',
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  sigkill_when(
    args,
    lambda: tf.io.gfile.glob(os.path.join(out, 'pseudo-*.tfrecord.json')),
    env,
    'export',
    timeout=300,
  )
  finished = len(tf.io.gfile.glob(os.path.join(out, '*.tfrecord.json')))
  assert 1 <= finished < 12
  result = subprocess.run(
    args, env=env, capture_output=True, text=True, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Skipping {finished} finished shard(s)' in result.stderr
  ids = _ids(out)
  assert sorted(ids, key=int) == [str(i) for i in range(1, 121)]
  assert not tf.io.gfile.glob(os.path.join(out, '*.tmp-*'))
  with open(os.path.join(out, 'manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['complete'] and manifest['images_written'] == 120


def test_teacher_restores_the_trained_weights(teacher_dir):
  teacher = teacher_lib.Teacher(teacher_dir)
  reader = tf.train.load_checkpoint(teacher.checkpoint)
  key = 'backbone/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE'
  np.testing.assert_array_equal(
    teacher.model.backbone.weights[0].numpy(), reader.get_tensor(key)
  )
  head_keys = [
    k
    for k in reader.get_variable_to_shape_map()
    if k.startswith('head/') and 'OPTIMIZER' not in k
  ]
  restored = [w.numpy() for w in teacher.model.head.weights]
  assert head_keys
  for k in head_keys:
    value = reader.get_tensor(k)
    assert any(
      r.shape == value.shape and np.array_equal(value, r) for r in restored
    ), k


def test_teacher_sees_what_model_garden_eval_sees(teacher_dir):
  """Teacher.predict == Model Garden's validation path, on the same images."""
  from official.core import task_factory  # pylint: disable=g-import-not-at-top

  teacher = teacher_lib.Teacher(teacher_dir, score_floor=0.05)
  config = teacher.config
  task = task_factory.get_task(config.task)
  features, labels = next(iter(task.build_inputs(config.task.validation_data)))
  outputs = teacher.model(
    features,
    anchor_boxes=labels['anchor_boxes'],
    image_shape=labels['image_info'][:, 1, :],
    training=False,
  )
  expected = {}
  for i, source_id in enumerate(labels['groundtruths']['source_id'].numpy()):
    expected[int(source_id)] = outputs['detection_scores'][i].numpy()
  pool = sources.TFRecordPool(config.task.validation_data.input_path)
  batch = next(
    iter(
      pool.dataset().map(lambda e: export._decoded(teacher, e)).padded_batch(64)
    )
  )  # pylint: disable=protected-access
  got = teacher.predict(batch['image'], batch['image_info'])['scores'].numpy()
  compared = 0
  for source_id, scores in zip(batch['source_id'].numpy(), got):
    if int(source_id) in expected:  # Model Garden's parser makes ids ints
      np.testing.assert_allclose(scores, expected[int(source_id)], atol=1e-5)
      compared += 1
  assert compared >= 8


def test_tfds_pool(teacher_dir, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # TFDS's mock data: the real loading code, examples generated offline.
  with tfds.testing.mock_data(
    num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    manifest = export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=sources.TFDSPool('beans', 'train'),
      output_dir=str(tmp_path / 'out'),
      num_shards=2,
      batch_size=4,
    )
  assert manifest['images_written'] == 6
  assert manifest['pool'] == {
    'kind': 'tfds',
    'dataset': 'beans',
    'split': 'train',
  }
  assert sorted(_ids(str(tmp_path / 'out'))) == [
    f'beans/train/{i}' for i in range(6)
  ]


def test_visualize_writes_a_png_grid(teacher_dir, pool, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  out = str(tmp_path / 'pseudo')
  export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pool,
    output_dir=out,
    num_shards=1,
    export_floor=0.0,
  )
  png = str(tmp_path / 'grid.png')
  result = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, 'tools', 'visualize.py'),
      f'--pseudo_labels={out}',
      f'--output={png}',
      '--num_images=6',
      '--columns=3',
      '--scale=2',
      '--read_threshold=0.0',
    ],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  picture = np.asarray(Image.open(png).convert('RGB'))
  assert picture.shape == (2 * 64 * 2, 3 * 64 * 2, 3)
  # Boxes are drawn over the image, in the class colour.
  sys.path.insert(0, os.path.join(REPO, 'tools'))
  import visualize  # pylint: disable=g-import-not-at-top

  record = next(
    iter(
      tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(out, 'pseudo-*.tfrecord'))
      )
    )
  ).numpy()
  drawn = np.asarray(visualize.draw_pseudo_labels(record, 0.0, 2))
  example = tf.train.Example.FromString(record)
  image = tf.io.decode_image(
    example.features.feature['image/encoded'].bytes_list.value[0]
  ).numpy()
  plain = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
  changed = (drawn != plain).any(axis=-1)
  assert changed.any()
  label = example.features.feature['image/object/class/label'].int64_list.value
  colours = {visualize.COLOURS[(c - 1) % len(visualize.COLOURS)] for c in label}
  assert {tuple(p) for p in drawn[changed]} & colours


def test_pool_of_empty_files_is_an_error(teacher_dir, tmp_path):
  empty = str(tmp_path / 'empty.tfrecord')
  with tf.io.TFRecordWriter(empty):
    pass
  with pytest.raises(sources.EmptyPoolError, match='has no image'):
    export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=sources.TFRecordPool(empty),
      output_dir=str(tmp_path / 'out'),
      num_shards=4,
    )
