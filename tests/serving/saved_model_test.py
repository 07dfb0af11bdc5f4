"""SavedModels for serving: signatures, a fresh process that never imports
this package against the Keras model, mixed sizes, bad bytes."""

import io
import json
import os
import subprocess
import sys

from helpers import run_tool
from helpers import unmatched_detections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import benchmark as serving_benchmark
from official_selftrain.serving import export

pytestmark = pytest.mark.slow

# Runs in a fresh process: loads the SavedModel with TensorFlow alone and
# calls each signature; never imports official_selftrain (checked at its end).
_SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf

export_dir, inputs, output = sys.argv[1:4]
data = np.load(inputs)
model = tf.saved_model.load(export_dir)
out = {}
def call(name, signature, **kwargs):
  for key, value in model.signatures[signature](**kwargs).items():
    out[f'{name}/{key}'] = value.numpy()
call('tensor', 'serving_default', inputs=tf.constant(data['same_size']))
encoded = [data[f'encoded{i}'].tobytes() for i in range(int(data['count']))]
call('bytes', 'serve_image_bytes', inputs=tf.constant(encoded))
for i, one in enumerate(encoded):
  call(f'single{i}', 'serve_image_bytes', inputs=tf.constant([one]))
examples = [
  tf.train.Example(features=tf.train.Features(feature={
    'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[e]))
  })).SerializeToString() for e in encoded]
call('examples', 'serve_examples', inputs=tf.constant(examples))
try:
  model.signatures['serve_image_bytes'](inputs=tf.constant([b'not an image']))
  out['bad_bytes_error'] = np.array('none')
except tf.errors.InvalidArgumentError as e:
  out['bad_bytes_error'] = np.array('InvalidArgumentError')
call('after_bad', 'serve_image_bytes', inputs=tf.constant([encoded[0]]))
out['imported_package'] = np.array(
  any(m.startswith('official_selftrain') for m in sys.modules))
np.savez(output, **out)
"""

# (height, width) of the request images: mixed sizes and aspect ratios.
_SIZES = [(64, 64), (96, 80), (48, 72)]


def _image(index, height, width):
  scene = shapes.det_scene(0, 'test', index, shapes.SceneSpec(image_size=128))
  return np.asarray(Image.fromarray(scene.image).resize((width, height)))


def _png(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


@pytest.fixture(scope='module')
def images():
  return [_image(i, h, w) for i, (h, w) in enumerate(_SIZES)]


def _serve_fresh(export_dir, images, tmp_path):
  """Every signature's outputs from a fresh process (`_SERVE`)."""
  tmp_path = tmp_path.mktemp('serve')
  inputs, output = tmp_path / 'inputs.npz', tmp_path / 'out.npz'
  encoded = {
    f'encoded{i}': np.frombuffer(_png(image), np.uint8)
    for i, image in enumerate(images)
  }
  np.savez(
    inputs,
    same_size=np.stack([images[0], images[0]]),
    count=len(images),
    **encoded,
  )
  script = tmp_path / 'serve.py'
  script.write_text(_SERVE)
  result = subprocess.run(
    [sys.executable, str(script), export_dir, str(inputs), str(output)],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=str(tmp_path),  # not the repository: nothing of it on the path
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=''),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  served = dict(np.load(output, allow_pickle=True))
  assert not served.pop('imported_package')
  return served


# The tiny detector trains a few steps: its scores stay near the focal
# loss's prior (0.01), under the config's NMS floor.
SCORE_THRESHOLD = 0.005


def _export(tmp_path_factory, model_dir, name, *flags):
  export_dir = str(tmp_path_factory.mktemp(name) / 'saved_model')
  result = run_tool(
    'export_saved_model.py',
    f'--checkpoint={model_dir}',
    f'--export_dir={export_dir}',
    *flags,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return export_dir


@pytest.fixture(scope='module')
def detector_export(teacher_dir, tmp_path_factory):
  return _export(
    tmp_path_factory,
    teacher_dir,
    'detector',
    f'--score_threshold={SCORE_THRESHOLD}',
  )


@pytest.fixture(scope='module')
def segmenter_export(seg_teacher_dir, tmp_path_factory):
  return _export(tmp_path_factory, seg_teacher_dir, 'segmenter')


@pytest.fixture(scope='module')
def detector_served(detector_export, images, tmp_path_factory):
  return _serve_fresh(detector_export, images, tmp_path_factory)


def test_saved_model_cli_lists_the_signatures(detector_export):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = subprocess.run(
    [cli, 'show', '--dir', detector_export, '--all'],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ('serving_default', 'serve_image_bytes', 'serve_examples'):
    assert f"signature_def['{name}']" in result.stdout
  for output in ('detection_boxes', 'detection_scores', 'num_detections'):
    assert output in result.stdout
  assert 'DT_UINT8' in result.stdout and 'DT_STRING' in result.stdout


def test_only_the_model_is_exported(teacher_dir, detector_export):
  names = [
    n
    for n, _ in tf.train.list_variables(
      os.path.join(detector_export, 'variables', 'variables')
    )
    if n.endswith('VARIABLE_VALUE')
  ]
  teacher = teacher_lib.Teacher(teacher_dir)
  assert len(names) == len(teacher.model.variables)
  assert not [n for n in names if 'OPTIMIZER' in n.upper()]
  info = export.read_info(detector_export)
  assert info['task'] == 'detection' and info['step'] == teacher.step


def _keras_detections(teacher_dir, image):
  """The restored Keras model's detections on one image, in its pixels, with
  the config's own NMS (as exported) at SCORE_THRESHOLD."""
  config = teacher_lib.load_experiment_config(teacher_dir)
  nms = config.task.model.detection_generator
  teacher = teacher_lib.Teacher(
    teacher_dir,
    score_floor=SCORE_THRESHOLD,
    nms_iou_threshold=nms.nms_iou_threshold,
    max_detections=nms.max_num_detections,
  )
  model_input, info = teacher.preprocess(tf.constant(image))
  out = teacher.predict(model_input[None], info[None])
  n = int(out['num_detections'][0])
  height, width = image.shape[:2]
  boxes = out['boxes'][0, :n].numpy() * [height, width, height, width]
  return boxes, out['scores'][0, :n].numpy(), out['classes'][0, :n].numpy()


def _served(served, name, i):
  n = int(served[f'{name}/num_detections'][i])
  return (
    served[f'{name}/detection_boxes'][i, :n],
    served[f'{name}/detection_scores'][i, :n],
    served[f'{name}/detection_classes'][i, :n],
  )


def _assert_same_detections(a, b):
  """(boxes, scores, classes) of one image: the same detections, as sets up
  to float-noise ties (`helpers.unmatched_detections`)."""
  assert abs(len(a[1]) - len(b[1])) <= 1 and len(b[1]) > 0
  mine, yours = list(zip(a[2], a[1], a[0])), list(zip(b[2], b[1], b[0]))
  missing = unmatched_detections(
    mine, yours, box_tolerance=0.05, score_tolerance=1e-4
  )  # box in pixels
  assert missing <= 0.02 * len(yours), (missing, len(yours))


def test_fresh_process_serves_the_keras_models_detections(
  teacher_dir, detector_served, images
):
  served = detector_served
  for i, image in enumerate(images):
    keras = _keras_detections(teacher_dir, image)
    # The bytes batch mixes sizes; each image as the Keras model sees it.
    _assert_same_detections(_served(served, 'bytes', i), keras)
    _assert_same_detections(_served(served, 'examples', i), keras)
    _assert_same_detections(_served(served, f'single{i}', 0), keras)
  tensor_keras = _keras_detections(teacher_dir, images[0])
  for i in range(2):
    _assert_same_detections(_served(served, 'tensor', i), tensor_keras)
  # Boxes are in the input image's pixels.
  height, width = _SIZES[1]
  boxes = _served(served, 'bytes', 1)[0]
  assert boxes[:, [0, 2]].max() <= height and boxes[:, [1, 3]].max() <= width
  assert boxes.max() > 1.0


def test_bad_bytes_fail_and_the_model_keeps_serving(detector_served):
  served = detector_served
  assert str(served['bad_bytes_error']) == 'InvalidArgumentError'
  np.testing.assert_array_equal(
    served['after_bad/detection_scores'], served['single0/detection_scores']
  )


def test_fresh_process_serves_the_segmenters_class_map(
  seg_teacher_dir, segmenter_export, images, tmp_path_factory
):
  served = _serve_fresh(segmenter_export, images, tmp_path_factory)
  teacher = segmentation_teacher.SegmentationTeacher(
    seg_teacher_dir, scales=[1.0], threshold=0.0
  )
  largest = np.max(_SIZES, axis=0)
  for i, image in enumerate(images):
    height, width = image.shape[:2]
    model_input, info = teacher.preprocess(tf.constant(image))
    canvas = teacher.predict(model_input[None], info[None])['probabilities']
    keras = teacher.label_map(canvas[0].numpy(), info.numpy(), height, width)
    single = served[f'single{i}/class_map'][0]
    np.testing.assert_array_equal(
      served[f'single{i}/image_size'][0], [height, width]
    )
    assert single.shape == (height, width)
    assert (single == keras).mean() > 0.999
    mixed = served['bytes/class_map'][i]
    assert mixed.shape == tuple(largest)
    np.testing.assert_array_equal(mixed[:height, :width], single)
    assert (mixed[height:] == 255).all() and (mixed[:, width:] == 255).all()
    np.testing.assert_array_equal(served['examples/class_map'][i], mixed)


def test_export_of_a_pipeline_stage_and_the_errors(teacher_dir, tmp_path):
  pipeline = tmp_path / 'pipeline'
  stages = ('teacher', 'teacher_warm_start_2', 'round2/student')
  for stage in ('round1/student', *stages):
    os.makedirs(pipeline / stage)
  for name in os.listdir(teacher_dir):
    if name.startswith(('ckpt-', 'checkpoint', 'params.yaml')):
      for stage in stages:
        with open(os.path.join(teacher_dir, name), 'rb') as f:
          (pipeline / stage / name).write_bytes(f.read())
  run_dir, checkpoint = export.resolve_checkpoint(str(pipeline), 'student')
  assert run_dir == str(pipeline / 'round2' / 'student')
  assert checkpoint.startswith(run_dir)
  # A second warm start stage of the teacher (`stage_names.warm_start_name`).
  run_dir, _ = export.resolve_checkpoint(str(pipeline), 'teacher_warm_start_2')
  assert run_dir == str(pipeline / 'teacher_warm_start_2')
  with pytest.raises(export.ExportError, match='teacher_warm_start_<k>'):
    export.resolve_checkpoint(str(pipeline), 'teacher_warm_start_x')
  with pytest.raises(export.ExportError, match='--stage'):
    export.resolve_checkpoint(str(pipeline))
  with pytest.raises(export.ExportError, match='supervised_same_steps'):
    export.resolve_checkpoint(str(pipeline), 'supervised_same_steps')
  existing = tmp_path / 'existing'
  existing.mkdir()
  result = run_tool(
    'export_saved_model.py',
    f'--checkpoint={pipeline}',
    '--stage=student',
    f'--export_dir={existing}',
  )
  assert result.returncode == 1 and '--overwrite' in result.stderr
  assert json.loads(json.dumps(os.listdir(existing))) == []


def test_a_gin_model_that_differs_from_the_runs_is_named(teacher_dir, tmp_path):
  from helpers import TINY_GIN

  result = run_tool(
    'export_saved_model.py',
    f'--gin_file={TINY_GIN}',
    '--gin_param=retinanet_model.fpn_filters = 24',
    f'--checkpoint={teacher_dir}',
    f'--export_dir={tmp_path / "out"}',
  )
  assert result.returncode == 1
  assert 'decoder.fpn.num_filters (24 vs 16)' in result.stderr, result.stderr
  assert not os.path.exists(tmp_path / 'out')


def test_serving_benchmark_compares_saved_model_and_keras(teacher_dir):
  report = serving_benchmark.benchmark_serving(
    teacher_dir, num_images=8, batch_size=4, repeats=2
  )
  rates = report['images_per_second']
  assert set(rates) == {'saved_model', 'keras', 'saved_model_image_bytes'}
  assert all(r > 0 for r in rates.values())
  assert report['saved_model_over_keras'] > 0
  # The exported variables are the model's weights (float32), no optimizer
  # slots; the rest is the graph of the three signatures.
  weights = report['float32_weight_bytes']
  assert weights < report['variables_bytes_on_disk'] < 1.05 * weights
  assert report['export_bytes_on_disk'] > report['variables_bytes_on_disk']
  assert max(report['max_abs_output_difference'].values()) < 1e-3
