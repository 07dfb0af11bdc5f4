r"""Exports a trained detector or segmenter as a SavedModel for serving.

  python -m official_selftrain.tools.export_saved_model \
      --checkpoint=runs/shapes_selftrain --stage=student --export_dir=exports/student
  python -m official_selftrain.tools.export_saved_model --gin_file=coco_s4.gin \
      --checkpoint=/ckpts/retinanet/ckpt-90000 --export_dir=exports/coco_s4

--checkpoint is a checkpoint, a training run's model_dir (its latest), or with
--stage a pipeline's model_dir (teacher, student, ...: the last round's). The
model is the run's params.yaml, or the gin file's for a checkpoint without one
(given both, they must agree). Signatures, as Model Garden's serving modules:
`serving_default` (uint8 images [B, H, W, 3]), `serve_image_bytes` (JPEG / PNG
bytes [B], sizes may differ) and `serve_examples` (serialized tf.Examples with
`image/encoded`). A detector returns `detection_boxes` (ymin, xmin, ymax, xmax
in the input's pixels), `detection_classes`, `detection_scores`,
`num_detections`; a segmenter `class_map` and `probabilities` at the input's
size, and `image_size`.
"""

import json

from absl import flags

from official_selftrain import cli
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import stage_names
from official_selftrain.serving import export
from official_selftrain.serving import modules

flags.DEFINE_string(
  'checkpoint', None, 'A checkpoint, a model_dir, or a pipeline dir.'
)
flags.DEFINE_string(
  'stage',
  None,
  f'The pipeline stage to export: one of {stage_names.CHOICES}'
  ' (checked against the pipeline dir).',
)
flags.DEFINE_string('export_dir', None, 'Where the SavedModel goes.')
flags.DEFINE_list(
  'input_types', list(modules.SIGNATURES), 'The signatures to export.'
)
flags.DEFINE_integer('batch_size', None, 'A fixed batch size (default any).')
flags.DEFINE_float(
  'score_threshold',
  None,
  "A detector's lowest score served (default: the config's NMS floor).",
)
flags.DEFINE_bool('overwrite', False, 'Replace an existing --export_dir.')

FLAGS = flags.FLAGS


def _gin_config():
  """The gin file's supervised experiment's config, if a gin file is given."""
  if not FLAGS.gin_file:
    return None
  cli.parse_gin_flags()
  return cli.supervised_experiment(cli.build_job()).config


def main(argv):
  del argv
  if not FLAGS.checkpoint or not FLAGS.export_dir:
    raise cli.UserError('--checkpoint and --export_dir are required.')
  try:
    run_dir, checkpoint = export.resolve_checkpoint(
      FLAGS.checkpoint, FLAGS.stage
    )
    config = export.experiment_config(run_dir, _gin_config())
    info = export.export_saved_model(
      config,
      checkpoint,
      FLAGS.export_dir,
      input_types=FLAGS.input_types,
      batch_size=FLAGS.batch_size,
      overwrite=FLAGS.overwrite,
      score_threshold=FLAGS.score_threshold,
    )
  except export.ExportError as e:
    raise cli.UserError(str(e)) from e
  print(json.dumps({'export_dir': FLAGS.export_dir, **info}, indent=1))


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
