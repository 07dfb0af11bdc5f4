"""Pseudo-label export: schema, resumption, skipped images, clear errors."""

import json
import logging
import os
import re
import subprocess
import sys

from helpers import REPO
from helpers import TINY_SPEC
from helpers import run_tool
from helpers import sigkill_when
from helpers import write_with_corrupt_image
import numpy as np
from official.vision.dataloaders import tf_example_decoder
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from official_selftrain.data import embedded
from official_selftrain.data import pools
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import manifest as manifest_lib
from official_selftrain.pseudo_labels import shard_files
from official_selftrain.tools import visualize

TOOL = os.path.join(REPO, 'tools', 'export_pseudo_labels.py')


def _files(output_dir):
  return sorted(tf.io.gfile.glob(os.path.join(output_dir, 'pseudo-*.tfrecord')))


def _ids(output_dir):
  decoder = tf_example_decoder.TfExampleDecoder()
  return [
    decoder.decode(r)['source_id'].numpy().decode()
    for r in tf.data.TFRecordDataset(_files(output_dir))
  ]


@pytest.fixture(scope='module')
def exported(teacher_dir, pool, tmp_path_factory):
  """The pool labelled into 3 shards with every box kept: (dir, manifest)."""
  out = str(tmp_path_factory.mktemp('exported') / 'pseudo')
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pool,
    output_dir=out,
    num_shards=3,
    export_floor=0.0,
    batch_size=8,
  )
  return out, manifest


def test_every_pool_image_is_exported_once(exported):
  out, _ = exported
  assert sorted(_ids(out), key=int) == [str(i) for i in range(1, 21)]


def test_model_garden_decoder_reads_pseudo_labels(exported):
  out, _ = exported
  decoder = tf_example_decoder.TfExampleDecoder()
  for record in tf.data.TFRecordDataset(_files(out)).take(4):
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


def test_manifest_counts_every_image(exported):
  _, manifest = exported
  assert manifest['complete'] and manifest['images_written'] == 20
  assert manifest['images_read'] == 20 and manifest['images_skipped'] == 0


def test_manifest_names_the_teacher_and_its_nms(exported):
  _, manifest = exported
  assert manifest['teacher_step'] == 6
  assert manifest['teacher_checkpoint'].endswith('ckpt-6')
  assert manifest['nms']['nms_iou_threshold'] == 0.5


def test_manifest_measures_quality_against_held_aside_labels(exported):
  _, manifest = exported
  quality = manifest['quality_at_read_threshold']
  assert quality['available'] and quality['true_objects_per_image'] > 1


def test_a_flipping_detector_writes_fused_boxes_and_says_so(
  teacher_dir, pool, tmp_path
):
  out = str(tmp_path / 'flipped')
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pool,
    output_dir=out,
    num_shards=1,
    export_floor=0.02,
    max_detections=10,
    flip=True,
    batch_size=8,
  )
  assert manifest['flip'] is True and manifest['images_written'] == 20
  for record in tf.data.TFRecordDataset(_files(out)):
    example = tf.train.Example.FromString(record.numpy())
    scores = np.array(
      example.features.feature['image/object/score'].float_list.value
    )
    assert len(scores) <= 10 and (scores >= 0.02).all()
    assert (np.diff(scores) <= 1e-6).all()


def test_manifest_is_written_to_the_output_dir(exported):
  out, _ = exported
  with open(os.path.join(out, manifest_lib.MANIFEST)) as f:
    assert json.load(f)['images_written'] == 20


def test_export_logs_images_done_rate_and_eta(
  teacher_dir, pool, tmp_path, caplog
):
  caplog.set_level(logging.INFO)
  export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pool,
    output_dir=str(tmp_path / 'out'),
    num_shards=2,
    batch_size=4,
    log_every_seconds=0,
  )
  lines = [m for m in caplog.messages if m.startswith('pseudo labels:')]
  # Overall count and rate, then the shard's count and ETA.
  assert re.fullmatch(
    r'pseudo labels: 20 images \| [\d.]+ images/s \| '
    r'shard 1: (\d+)/\1 images, shard ETA 0m00s',
    lines[-1],
  ), lines[-1]


def test_corrupt_image_is_skipped_and_listed(teacher_dir, tmp_path):
  path = str(tmp_path / 'pool.tfrecord')
  write_with_corrupt_image(path, 6, bad_index=2)
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pools.TFRecordPool(path),
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


class _DivergesAfter:
  """A teacher whose scores turn NaN after `good` batches."""

  def __init__(self, teacher, good):
    self._teacher, self._good = teacher, good

  def __getattr__(self, name):
    return getattr(self._teacher, name)

  def predict(self, images, image_info):
    out = self._teacher.predict(images, image_info)
    self._good -= 1
    if self._good < 0:
      out = dict(out, scores=out['scores'] * float('nan'))
    return out


def test_nan_teacher_outputs_stop_and_keep_finished_shards(
  teacher_dir, pool, tmp_path, monkeypatch
):
  first_shard = sum(1 for _ in pool.dataset(2, 0))
  restore = export.restore_teacher
  monkeypatch.setattr(
    export,
    'restore_teacher',
    lambda *args, **kw: _DivergesAfter(
      restore(*args, **kw), good=-(-first_shard // 5)
    ),
  )
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match=r'scores are not finite') as error:
    export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=pool,
      output_dir=out,
      num_shards=2,
      batch_size=5,
      export_floor=0.0,
    )
  assert re.search(r"images \['[^']+'", str(error.value)), error.value
  assert len(_files(out)) == 1  # shard 0 was finished before the NaN
  assert len(_ids(out)) == first_shard


def test_image_folder_pool(teacher_dir, tmp_path):
  split = embedded.shapes_det_split(
    str(tmp_path), 'val', 5, spec=TINY_SPEC, write_jpegs=True
  )
  manifest = export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pools.ImageFolderPool(split + '/images'),
    output_dir=str(tmp_path / 'out'),
    num_shards=2,
    batch_size=4,
  )
  assert manifest['images_written'] == 5
  assert sorted(_ids(str(tmp_path / 'out'))) == sorted(
    f'{i}.jpg' for i in range(1, 6)
  )
  assert not manifest['quality_at_read_threshold']['available']


def test_tfds_pool(teacher_dir, tmp_path):
  # TFDS's mock data: the real loading code, examples generated offline.
  with tfds.testing.mock_data(
    num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    manifest = export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=pools.TFDSPool('beans', 'train'),
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


def _glob_matching_no_file(tmp_path):
  return pools.TFRecordPool(str(tmp_path / 'x*'))


def _folder_without_images(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  return pools.ImageFolderPool(str(empty))


def _files_without_records(tmp_path):
  empty = str(tmp_path / 'empty.tfrecord')
  with tf.io.TFRecordWriter(empty):
    pass
  return pools.TFRecordPool(empty)


@pytest.mark.parametrize(
  'make_pool, message, num_shards',
  [
    pytest.param(_glob_matching_no_file, 'matches no file', 1, id='no-file'),
    pytest.param(_folder_without_images, 'no image file', 1, id='no-image'),
    pytest.param(_files_without_records, 'has no image', 4, id='no-record'),
  ],
)
def test_empty_pool_is_an_error(
  teacher_dir, tmp_path, make_pool, message, num_shards
):
  with pytest.raises(pools.EmptyPoolError, match=message):
    export.export_pseudo_labels(
      teacher_dir=teacher_dir,
      pool=make_pool(tmp_path),
      output_dir=str(tmp_path / 'out'),
      num_shards=num_shards,
    )


@pytest.mark.e2e
def test_tool_names_a_teacher_dir_without_checkpoint(
  dir_without_checkpoint, tmp_path
):
  result = run_tool(
    'export_pseudo_labels.py',
    f'--teacher_dir={dir_without_checkpoint}',
    f'--pool={tmp_path}/x*',
    f'--output_dir={tmp_path}/o',
    timeout=120,
  )
  assert result.returncode != 0
  assert f'No checkpoint in teacher directory {dir_without_checkpoint!r}' in (
    result.stderr
  )


def _host_config(host):
  """TF_CONFIG of host 0 (chief), 1 and 2 (workers 0 and 1) of a cluster."""
  cluster = {'chief': ['localhost:1'], 'worker': ['localhost:2', 'localhost:3']}
  task = (
    {'type': 'chief', 'index': 0}
    if host == 0
    else {
      'type': 'worker',
      'index': host - 1,
    }
  )
  return json.dumps({'cluster': cluster, 'task': task})


@pytest.mark.slow
@pytest.mark.e2e
def test_three_hosts_export_one_pool_and_a_killed_host_reruns_alone(
  teacher_dir, tmp_path
):
  # 6 files, 6 shards, 3 hosts by TF_CONFIG: host h labels shards h and h + 3,
  # reading only their files.
  split = embedded.shapes_det_split(
    str(tmp_path), 'unlabeled', 90, spec=TINY_SPEC, num_shards=6
  )
  out = str(tmp_path / 'out')
  args = [
    sys.executable,
    TOOL,
    f'--teacher_dir={teacher_dir}',
    f'--pool={split}/data-*.tfrecord',
    f'--output_dir={out}',
    '--num_shards=6',
    '--batch_size=2',
  ]

  def env(host):
    return dict(
      os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_CONFIG=_host_config(host)
    )

  others = [
    subprocess.Popen(
      args, env=env(h), stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    for h in (0, 2)
  ]
  # Host 1 is killed once its first shard (1) is finished.
  sigkill_when(
    args,
    lambda: tf.io.gfile.exists(
      os.path.join(out, 'pseudo-00001-of-00006.tfrecord.json')
    ),
    env(1),
    'host 1',
    timeout=400,
  )
  logs = [p.communicate(timeout=600)[1] for p in others]
  assert [p.returncode for p in others] == [0, 0], (
    logs[0][-2000:] + logs[1][-2000:]
  )
  assert 'host 0 of 3 labels shards [0, 3] of 6' in logs[0]
  assert 'host 2 of 3 labels shards [2, 5] of 6' in logs[1]
  finished, _ = manifest_lib.read_finished_stats(out, 6)
  assert finished == [0, 1, 2, 3, 5]
  # Incomplete: no host wrote a manifest.
  assert not os.path.exists(os.path.join(out, manifest_lib.MANIFEST))

  rerun = subprocess.run(
    args, env=env(1), capture_output=True, text=True, timeout=600, cwd=REPO
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'Skipping 1 finished shard(s)' in rerun.stderr
  ids = _ids(out)
  assert sorted(ids, key=int) == [str(i) for i in range(1, 91)]
  assert not tf.io.gfile.glob(os.path.join(out, '*.tmp-*'))
  with open(os.path.join(out, manifest_lib.MANIFEST)) as f:
    manifest = json.load(f)
  assert manifest['complete'] and manifest['images_written'] == 90
  assert manifest['pool_partition'] == 'files:6'
  # Each shard holds the images of its own file of the pool.
  decoder = tf_example_decoder.TfExampleDecoder()
  files = sorted(tf.io.gfile.glob(f'{split}/data-*.tfrecord'))
  for k in range(6):
    file_ids = {
      decoder.decode(r)['source_id'].numpy().decode()
      for r in tf.data.TFRecordDataset(files[k])
    }
    shard = tf.data.TFRecordDataset(shard_files.shard_path(out, k, 6))
    assert {
      decoder.decode(r)['source_id'].numpy().decode() for r in shard
    } == file_ids

  # --merge rebuilds the manifest from the shards alone.
  os.remove(os.path.join(out, manifest_lib.MANIFEST))
  merged = subprocess.run(
    [sys.executable, TOOL, f'--output_dir={out}', '--merge'],
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
  )
  assert merged.returncode == 0, merged.stderr[-3000:]
  with open(os.path.join(out, manifest_lib.MANIFEST)) as f:
    remerged = json.load(f)
  assert remerged['complete'] and remerged['images_written'] == 90
  assert remerged['teacher_checkpoint'] == manifest['teacher_checkpoint']


@pytest.mark.e2e
def test_visualize_tool_draws_a_png_grid(exported, tmp_path):
  out, _ = exported
  png = str(tmp_path / 'grid.png')
  result = run_tool(
    'visualize.py',
    f'--pseudo_labels={out}',
    f'--output={png}',
    '--num_images=6',
    '--columns=3',
    '--scale=2',
    '--read_threshold=0.0',
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  picture = np.asarray(Image.open(png).convert('RGB'))
  assert picture.shape == (2 * 64 * 2, 3 * 64 * 2, 3)


def test_pseudo_boxes_are_drawn_in_their_class_colour(exported):
  out, _ = exported
  record = next(iter(tf.data.TFRecordDataset(_files(out)))).numpy()
  drawn = np.asarray(visualize.draw_pseudo_labels(record, 0.0, 2))
  example = tf.train.Example.FromString(record)
  image = tf.io.decode_image(
    example.features.feature['image/encoded'].bytes_list.value[0]
  ).numpy()
  plain = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
  # Boxes are drawn over the image, in the class colour.
  changed = (drawn != plain).any(axis=-1)
  assert changed.any()
  label = example.features.feature['image/object/class/label'].int64_list.value
  colours = {visualize.COLOURS[(c - 1) % len(visualize.COLOURS)] for c in label}
  assert {tuple(p) for p in drawn[changed]} & colours
