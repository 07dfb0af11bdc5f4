r"""Side-by-side speed measurements, written as JSON (ratios are what count).

  python tools/benchmark.py --what=export --teacher_dir=runs/shapes_s1 \
      --num_images=2000 --output=benchmark_export.json

`export`: on the same images of a Shapes-Det pool, in one process,
  - forward: the teacher's backbone + FPN + heads, no post-processing;
  - inference: forward + box decoding + NMS (what labelling needs), no writing;
  - export: the pseudo-label exporter end to end (reads, labels, writes
    TFRecords and the manifest);
and reports images/s of each and export / inference (target >= 0.9).
Each timed pass follows an untimed warm-up pass over a few batches.
"""

import json
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import sources
from official_selftrain.pseudo_labels import teacher as teacher_lib

flags.DEFINE_enum('what', 'export', ['export'], 'What to measure.')
flags.DEFINE_string('teacher_dir', None, 'model_dir of a trained detector.')
flags.DEFINE_integer('num_images', 2000, 'Pool size.')
flags.DEFINE_integer('batch_size', 32, 'Images per teacher call.')
flags.DEFINE_integer('repeats', 2, 'Timed passes of each (the best counts).')
flags.DEFINE_string('output', None, 'JSON file for the results.')

FLAGS = flags.FLAGS


def _batches(teacher, pool, batch_size):
  data = pool.dataset(1, 0).map(
    lambda e: export._decoded(teacher, e),  # pylint: disable=protected-access
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return data.padded_batch(batch_size).prefetch(2)


def _time(fn, repeats):
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def benchmark_export(teacher_dir, num_images, batch_size, repeats):
  """images/s of forward, inference and export on the same pool."""
  spec = shapes.SceneSpec()
  work = tempfile.mkdtemp(prefix='benchmark_export_')
  try:
    split = embedded.shapes_det_split(work, 'unlabeled', num_images, spec=spec)
    pool = sources.TFRecordPool(os.path.join(split, 'data-*.tfrecord'))
    teacher = teacher_lib.Teacher(teacher_dir)
    model = teacher.model

    @tf.function
    def forward(images):
      features = model.backbone(images, training=False)
      features = model.decoder(features, training=False)
      return model.head(features)

    def run_forward():
      for batch in _batches(teacher, pool, batch_size):
        tf.nest.map_structure(lambda t: t.numpy(), forward(batch['image']))

    def run_inference():
      for batch in _batches(teacher, pool, batch_size):
        out = teacher.predict(batch['image'], batch['image_info'])
        tf.nest.map_structure(lambda t: t.numpy(), out)

    def run_export():
      out_dir = os.path.join(work, 'pseudo')
      shutil.rmtree(out_dir, ignore_errors=True)
      # The same restored teacher: setup (model build, restore, tracing)
      # is paid once per export run, not per image.
      export.export_pseudo_labels(
        teacher_dir=teacher_dir,
        pool=pool,
        output_dir=out_dir,
        num_shards=1,
        batch_size=batch_size,
        teacher=teacher,
      )

    for warm in (run_forward, run_inference, run_export):
      warm()  # traces functions, fills file caches
    seconds = {
      'forward': _time(run_forward, repeats),
      'inference': _time(run_inference, repeats),
      'export': _time(run_export, repeats),
    }
    rates = {k: num_images / v for k, v in seconds.items()}
    return {
      'what': 'export',
      'teacher_dir': teacher_dir,
      'num_images': num_images,
      'batch_size': batch_size,
      'image_size': spec.image_size,
      'nms': teacher.nms,
      'images_per_second': rates,
      'export_over_inference': rates['export'] / rates['inference'],
      'inference_over_forward': rates['inference'] / rates['forward'],
      'cpu_count': os.cpu_count(),
    }
  finally:
    shutil.rmtree(work, ignore_errors=True)


def main(argv):
  del argv
  result = benchmark_export(
    FLAGS.teacher_dir, FLAGS.num_images, FLAGS.batch_size, FLAGS.repeats
  )
  text = json.dumps(result, indent=1)
  print(text)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
