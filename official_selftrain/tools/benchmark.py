r"""Side-by-side speed measurements, written as JSON (ratios are what count).

  python -m official_selftrain.tools.benchmark --what=export --teacher_dir=runs/shapes_s1 \
      --num_images=2000 --output=benchmark_export.json
  python -m official_selftrain.tools.benchmark --what=augment --image_size=640 \
      --num_images=400 --output=docs/benchmark_augment.json
  python -m official_selftrain.tools.benchmark --what=export_hosts \
      --teacher_dir=runs/shapes_s1 --num_images=4000 --processes=2

`export_hosts`: the exporter tool as 1 and as --processes processes on one
  pool (`pseudo_labels.hosts_benchmark`): labelling and end-to-end images/s.

`augment`: the training input pipeline (Model Garden's decoder, then the
  parser, `tf.data` parallel map over all cores, batches of 8) under each of
  Augment-S1..S4, with our RetinaNet parser (`data.parsers`) and with Model
  Garden's `retinanet_input.Parser` given the same settings (flip, jitter,
  AutoAugment / RandAugment with the same constants; at 640 px images the
  reference-size scaling is 1), on the same generated Shapes-Det scenes.
  Timed passes alternate between the two (`--repeats` pairs, the order
  swapped every pair); reports the median images/s of each, the median of
  the per-pair ratios ours / Model Garden's (target >= 0.95), and the same
  ratio in process CPU time (steadier on a shared machine).

`train`: the training step of the gin file's detector (default
  `shapes_s1.gin`; a pipeline's teacher), three trainers in one process,
  each with its own model, optimizer and input pipeline: `ours` (this
  project's `DetectionTask`: our parser with the policy's joint augmentation,
  the globally normalised loss; float32), `model_garden` (Model Garden's own
  `RetinaNetTask` on the same config: its parser and loss) and
  `ours_bfloat16` (`ours` under the mixed_bfloat16 Keras policy). A timed
  pass is `--steps` steps, input pipeline included, as in training; passes
  alternate in pairs with `ours` (as `augment`'s, order swapped every pair). Reports steps/s
  (median pass) and the median per-pair ratios ours / Model Garden and
  bfloat16 / float32.

  python -m official_selftrain.tools.benchmark --what=train --gin_file=shapes_s1.gin \
      --steps=100 --repeats=4 --output=docs/benchmark_train.json

`export`: on the same images of a Shapes-Det pool, in one process,
  - forward: the teacher's backbone + FPN + heads, no post-processing;
  - inference: forward + box decoding + NMS (what labelling needs), no writing;
  - export: the pseudo-label exporter end to end (reads, labels, writes
    TFRecords and the manifest);
and reports images/s of each and export / inference (target >= 0.9).
Each timed pass follows an untimed warm-up pass over a few batches.

`seg_labeller`: a segmentation teacher (`--teacher_dir`) labels the pool of a
  segmentation self-training gin file (default `shapes_seg_selftrain.gin`,
  `--num_images` of it) through the exporter end to end, single-scale (1.0,
  no flip) and multi-scale (the paper's six scales or `--scales`, `--flip`
  to add flips, `--sliding_window` for input-size windows),
  in alternating passes; reports images/s of each, their ratio, and each
  one's pseudo-label quality from its manifest (pixel accuracy against the
  pool's held-aside maps over the pixels it labels, and the ignored fraction).

  python -m official_selftrain.tools.benchmark --what=seg_labeller \
      --teacher_dir=runs/seg_st/teacher --num_images=500 --repeats=2 \
      --output=docs/benchmark_seg_labeller.json

`serving`: a trained model (`--teacher_dir`: any run's model_dir) exported
  as a SavedModel and loaded back, against the restored Keras model behind
  the same serving code, on the same images in one process, alternating
  passes (`serving.benchmark`): images/s of each and their ratio, the bytes
  signature's images/s, the export's size on disk.

  python -m official_selftrain.tools.benchmark --what=serving \
      --teacher_dir=runs/shapes_selftrain/round1/student --num_images=512 \
      --batch_size=16 --repeats=4 --output=docs/benchmark_serving.json
"""

import json
import os
import shutil
import statistics
import tempfile
from typing import Callable
from typing import Dict

from absl import app
from absl import flags
from official.modeling import performance
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import tf_example_decoder
from official.vision.tasks import retinanet
import tensorflow as tf
import tf_keras

from official_selftrain import cli  # --gin_file / --gin_param (train)
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import timing
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import embedded
from official_selftrain.data import parsers
from official_selftrain.data import pools
from official_selftrain.data import shapes
from official_selftrain.ops import augment_policies
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import hosts_benchmark
from official_selftrain.pseudo_labels import labeller_benchmark
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import shard_writer
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import benchmark as serving_benchmark
from official_selftrain.tasks import detection

flags.DEFINE_enum(
  'what',
  'export',
  ['export', 'export_hosts', 'augment', 'train', 'seg_labeller', 'serving'],
  'What to measure.',
)
flags.DEFINE_bool(
  'flip', False, 'Multi-scale also flips (--what=seg_labeller).'
)
flags.DEFINE_list(
  'scales',
  None,
  "Multi-scale's scales (default the paper's six; --what=seg_labeller).",
)
flags.DEFINE_bool(
  'sliding_window',
  False,
  'Multi-scale sees canvases larger than the input through input-size'
  ' windows (--what=seg_labeller).',
)
flags.DEFINE_float(
  'pixel_threshold',
  0.5,
  'Top-probability threshold below which a pixel is ignored'
  ' (--what=seg_labeller).',
)
flags.DEFINE_integer(
  'processes', 2, 'Exporter processes against one (--what=export_hosts).'
)
flags.DEFINE_integer('steps', 50, 'Train steps per timed pass (--what=train).')
flags.DEFINE_integer('image_size', 640, 'Scene size for --what=augment.')
flags.DEFINE_list('policies', ['S1', 'S2', 'S3', 'S4'], 'For --what=augment.')
flags.DEFINE_string('teacher_dir', None, 'model_dir of a trained detector.')
flags.DEFINE_integer('num_images', 2000, 'Pool size.')
flags.DEFINE_integer('batch_size', 32, 'Images per teacher call.')
flags.DEFINE_integer('repeats', 2, 'Timed passes of each (the best counts).')
flags.DEFINE_string('output', None, 'JSON file for the results.')

FLAGS = flags.FLAGS


def _batches(teacher, pool, batch_size):
  data = pool.dataset(1, 0).map(
    lambda e: shard_writer.teacher_input(teacher, e),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return data.padded_batch(batch_size).prefetch(2)


def _export_runs(teacher, teacher_dir, pool, batch_size, out_dir):
  """{name: fn} running forward, inference or the exporter over the pool."""
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

  return {
    'forward': run_forward,
    'inference': run_inference,
    'export': run_export,
  }


def benchmark_export(teacher_dir, num_images, batch_size, repeats):
  """images/s of forward, inference and export on the same pool."""
  spec = shapes.SceneSpec()
  work = tempfile.mkdtemp(prefix='benchmark_export_')
  try:
    split = embedded.shapes_det_split(work, 'unlabeled', num_images, spec=spec)
    pool = pools.TFRecordPool(embedded.split_records(split))
    teacher = teacher_lib.Teacher(teacher_dir)
    out_dir = os.path.join(work, 'out')
    runs = _export_runs(teacher, teacher_dir, pool, batch_size, out_dir)
    for warm in runs.values():
      warm()  # traces functions, fills file caches
    rates = {
      k: num_images / timing.best_seconds(fn, repeats) for k, fn in runs.items()
    }
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


def _parsers(name, image_size):
  """(ours, Model Garden's) RetinaNet parsers with policy `name`."""
  policy = augment_policies.augment_policy(name)
  anchors = ([image_size, image_size], 3, 7, 3, [0.5, 1.0, 2.0], 4.0)
  return (
    parsers.RetinaNetParser(*anchors, **policy.parser_kwargs()),
    retinanet_input.Parser(*anchors, **policy.parser_kwargs(model_garden=True)),
  )


def _input_pipeline_run(records, num_images):
  """parser -> a function that runs `num_images` through decode + parse."""
  decode = tf_example_decoder.TfExampleDecoder().decode

  def run(parser):
    data = (
      tf.data.Dataset.from_tensor_slices(records)
      .repeat()
      .take(num_images)
      .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
      .map(parser.parse_fn(True), num_parallel_calls=tf.data.AUTOTUNE)
      .batch(8)
      .prefetch(2)
    )
    for _ in data:
      pass

  return run


def benchmark_augment(image_size, num_images, repeats, policies, scenes=64):
  """images/s of the input pipeline per policy, ours vs Model Garden's."""
  spec = shapes.SceneSpec(image_size=image_size)
  records = [
    embedded.scene_to_tf_example(
      shapes.det_scene(0, 'train', i, spec), str(i), with_masks=False
    ).SerializeToString()
    for i in range(scenes)
  ]
  run = _input_pipeline_run(records, num_images)
  results = {}
  for name in policies:
    ours, garden = _parsers(name, image_size)
    run(ours)  # warm-up: traces the parse functions
    run(garden)
    wall, cpu = timing.alternating_pairs(run, ours, garden, repeats)
    results[name] = {
      'ours': num_images / statistics.median(wall['ours']),
      'model_garden': num_images / statistics.median(wall['model_garden']),
      'ours_over_model_garden': statistics.median(timing.ratios(wall)),
      'ratio_per_pair': timing.ratios(wall),
      # CPU seconds of the whole process (all tf.data threads): on a shared
      # virtual machine, less disturbed by other tenants than wall time.
      'cpu_ours_over_model_garden': statistics.median(timing.ratios(cpu)),
      'cpu_ratio_per_pair': timing.ratios(cpu),
    }
    print(name, json.dumps(results[name]), flush=True)
  return {
    'what': 'augment',
    'image_size': image_size,
    'num_images': num_images,
    'scenes': scenes,
    'repeats': repeats,
    'images_per_second': results,
    'cpu_count': os.cpu_count(),
  }


def _trainer(task, config, policy: str) -> Callable[[int], None]:
  """A function that runs n train steps of `task` (model built under
  the Keras dtype `policy`)."""
  performance.set_mixed_precision_policy(policy)
  try:
    model = task.build_model()
    optimizer = task.create_optimizer(
      config.trainer.optimizer_config, config.runtime
    )
  finally:
    performance.set_mixed_precision_policy(tf.float32)
  metrics = task.build_metrics(training=True)
  iterator = iter(task.build_inputs(config.task.train_data))

  @tf.function
  def step(inputs):
    return task.train_step(inputs, model, optimizer, metrics)

  def run(n: int) -> None:
    for _ in range(n):
      logs = step(next(iterator))
    float(logs[task.loss])  # waits for the last step

  return run


def trainers(experiment: experiment_lib.Experiment) -> Dict[str, Callable]:
  """{'ours', 'model_garden', 'ours_bfloat16'}: n-step runners."""
  config = experiment.config
  experiment.prepare()
  tf_keras.utils.set_random_seed(0)
  return {
    'ours': _trainer(detection.DetectionTask(config.task), config, 'float32'),
    'model_garden': _trainer(
      retinanet.RetinaNetTask(config.task), config, 'float32'
    ),
    'ours_bfloat16': _trainer(
      detection.DetectionTask(config.task), config, 'bfloat16'
    ),
  }


def benchmark_train(
  experiment: experiment_lib.Experiment, steps: int, repeats: int
) -> Dict[str, object]:
  """Steps/s of each trainer and the per-pair ratios, as JSON-able dict."""
  runs = trainers(experiment)
  for run in runs.values():
    run(3)  # traces the step, fills the input pipeline
  result = {'steps_per_pass': steps, 'repeats': repeats, 'pairs': {}}
  seconds = {'ours': []}
  for other in ('model_garden', 'ours_bfloat16'):
    # Alternating passes of `ours` and `other` (in the `model_garden` slot).
    wall, _ = timing.alternating_pairs(
      lambda trainer: trainer(steps), runs['ours'], runs[other], repeats
    )
    seconds['ours'] += wall['ours']
    seconds[other] = wall['model_garden']
    ratios = timing.ratios(wall)  # speed of ours / other, per pair
    key = f'ours_over_{other}' if other == 'model_garden' else 'bf16_over_fp32'
    if other == 'ours_bfloat16':
      ratios = [1.0 / r for r in ratios]
    result['pairs'][key] = {
      'median': statistics.median(ratios),
      'per_pair': ratios,
    }
  result['steps_per_second'] = {
    k: steps / statistics.median(v) for k, v in seconds.items()
  }
  result['images_per_step'] = (
    experiment.config.task.train_data.global_batch_size
  )
  return result


def _seg_labeller():
  """--what=seg_labeller: the pool of the seg self-training config."""
  cli.parse_gin_flags(
    default_files=['shapes_seg_selftrain.gin'],
    extra_params=[f'shapes_det_pool.num_images = {FLAGS.num_images}'],
  )
  job = cli.build_job()
  job.prepare()
  return labeller_benchmark.benchmark_seg_labeller(
    FLAGS.teacher_dir,
    job.pool,
    FLAGS.batch_size,
    FLAGS.repeats,
    FLAGS.flip,
    FLAGS.pixel_threshold,
    scales=[float(x) for x in FLAGS.scales]
    if FLAGS.scales
    else segmentation_teacher.PAPER_SCALES,
    sliding_window=FLAGS.sliding_window,
  )


def main(argv):
  del argv
  if FLAGS.what == 'augment':
    result = benchmark_augment(
      FLAGS.image_size, FLAGS.num_images, FLAGS.repeats, FLAGS.policies
    )
  elif FLAGS.what == 'train':
    cli.parse_gin_flags(default_files=['shapes_s1.gin'])
    result = benchmark_train(
      cli.supervised_experiment(cli.build_job()), FLAGS.steps, FLAGS.repeats
    )
    result['gin_files'] = FLAGS.gin_file or ['shapes_s1.gin']
    result['gin_params'] = list(FLAGS.gin_param)
    result['cpu_count'] = os.cpu_count()
  elif FLAGS.what == 'export_hosts':
    result = hosts_benchmark.benchmark_export_hosts(
      FLAGS.teacher_dir,
      FLAGS.num_images,
      FLAGS.batch_size,
      FLAGS.repeats,
      FLAGS.processes,
    )
  elif FLAGS.what == 'serving':
    result = serving_benchmark.benchmark_serving(
      FLAGS.teacher_dir, FLAGS.num_images, FLAGS.batch_size, FLAGS.repeats
    )
  elif FLAGS.what == 'seg_labeller':
    result = _seg_labeller()
  else:
    result = benchmark_export(
      FLAGS.teacher_dir, FLAGS.num_images, FLAGS.batch_size, FLAGS.repeats
    )
  text = json.dumps(result, indent=1)
  print(text)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')


def entry():
  app.run(main)


if __name__ == '__main__':
  entry()
