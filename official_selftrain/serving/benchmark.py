"""A SavedModel against the Keras model it was exported from: speed, size.

One process, the same images: the exported model loaded back
(`tf.saved_model.load`, its `serving_default` uint8 signature) and the
restored Keras model behind the same serving code, un-exported, in one
`tf.function` (so both run a traced graph; the ratio shows what export costs
or saves). Timed passes alternate (`timing.alternating_pairs`). Also the
bytes signature's images/s (PNG decoding included), the export's size on
disk (all, and its variables) against the model's float32 weights, and the largest difference between
the two models' outputs on the images. Run it with
`tools/benchmark.py --what=serving`.
"""

import os
import shutil
import statistics
import tempfile
from typing import Any
from typing import Dict

import numpy as np
import tensorflow as tf

from official_selftrain import timing
from official_selftrain.data import shapes
from official_selftrain.serving import export


def _images(num_images: int, size) -> np.ndarray:
  spec = shapes.SceneSpec(image_size=max(size))
  scenes = [shapes.det_scene(0, 'test', i, spec) for i in range(num_images)]
  return np.stack([s.image[: size[0], : size[1]] for s in scenes])


def _disk_bytes(path: str) -> int:
  return sum(
    os.path.getsize(os.path.join(root, name))
    for root, _, names in os.walk(path)
    for name in names
  )


def _max_difference(a: Dict[str, tf.Tensor], b: Dict[str, tf.Tensor]):
  """{output: largest absolute difference} over the float outputs."""
  return {
    k: float(np.abs(a[k].numpy() - b[k].numpy()).max())
    for k in a
    if a[k].dtype.is_floating
  }


def _runs(export_dir: str, config, checkpoint: str) -> Dict[str, Any]:
  """{name: fn(uint8 batch) -> outputs}: the loaded SavedModel's uint8 and
  bytes signatures, and the Keras model behind the same serving code."""
  served = tf.saved_model.load(export_dir)
  keras = export.serving_module(config, checkpoint)
  tensors = served.signatures['serving_default']
  from_bytes = served.signatures['serve_image_bytes']
  return {
    'saved_model': lambda batch: tensors(inputs=batch),
    'keras': tf.function(keras.serve),
    'saved_model_image_bytes': lambda encoded: from_bytes(inputs=encoded),
    'model': keras.model,
  }


def _timed(runs, batches, encoded, repeats: int) -> Dict[str, Any]:
  """Alternating SavedModel / Keras passes, then the bytes signature."""

  def run(name, inputs=batches):
    for batch in inputs:
      tf.nest.map_structure(lambda t: t.numpy(), runs[name](batch))

  for name in ('saved_model', 'keras'):  # traces, warms caches
    run(name)
  run('saved_model_image_bytes', encoded)
  wall, cpu = timing.alternating_pairs(run, 'saved_model', 'keras', repeats)
  bytes_seconds = timing.best_seconds(
    lambda: run('saved_model_image_bytes', encoded), repeats
  )
  return {'wall': wall, 'cpu': cpu, 'bytes_seconds': bytes_seconds}


def benchmark_serving(
  model_dir: str, num_images: int, batch_size: int, repeats: int
) -> Dict[str, Any]:
  """images/s of the SavedModel and the Keras model, and their ratio."""
  run_dir, checkpoint = export.resolve_checkpoint(model_dir)
  config = export.experiment_config(run_dir, None)
  work = tempfile.mkdtemp(prefix='benchmark_serving_')
  try:
    export_dir = os.path.join(work, 'saved_model')
    info = export.export_saved_model(config, checkpoint, export_dir)
    runs = _runs(export_dir, config, checkpoint)
    images = _images(num_images, info['input_size'])
    batches = [
      tf.constant(images[i : i + batch_size])
      for i in range(0, num_images, batch_size)
    ]
    encoded = [tf.map_fn(tf.io.encode_png, b, tf.string) for b in batches]
    times = _timed(runs, batches, encoded, repeats)
    wall = times['wall']
    weights = sum(int(np.prod(v.shape)) for v in runs['model'].variables)
    return {
      'what': 'serving',
      'model_dir': model_dir,
      'checkpoint': checkpoint,
      'task': info['task'],
      'input_size': info['input_size'],
      'num_images': num_images,
      'batch_size': batch_size,
      'repeats': repeats,
      'images_per_second': {
        'saved_model': num_images / statistics.median(wall['ours']),
        'keras': num_images / statistics.median(wall['model_garden']),
        'saved_model_image_bytes': num_images / times['bytes_seconds'],
      },
      'saved_model_over_keras': statistics.median(timing.ratios(wall)),
      'saved_model_over_keras_cpu_time': statistics.median(
        timing.ratios(times['cpu'])
      ),
      'export_bytes_on_disk': _disk_bytes(export_dir),
      'variables_bytes_on_disk': _disk_bytes(
        os.path.join(export_dir, 'variables')
      ),
      'float32_weight_bytes': 4 * weights,
      'max_abs_output_difference': _max_difference(
        runs['saved_model'](batches[0]), runs['keras'](batches[0])
      ),
      'cpu_count': os.cpu_count(),
    }
  finally:
    shutil.rmtree(work, ignore_errors=True)
