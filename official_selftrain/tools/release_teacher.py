r"""Releases a pipeline's trained teacher for other runs to start from.

  python -m official_selftrain.tools.release_teacher \
      --gin_file=shapes_selftrain_demo_full.gin --model_dir=runs/demo_full \
      --out=official_selftrain/released/shapes_demo_teacher

Reads `model_dir/teacher` of a pipeline run of `--gin_file` (trained and
evaluated) and writes its last checkpoint, its configs and `release.json`
(step, teacher steps, model, training data, val/test AP, commit, date) to
`--out`. A pipeline binding `self_training_pipeline.teacher_checkpoint` to
that folder starts from this teacher instead of training it (`make demo` does,
from the bundled release); `released_teachers.py` says what it checks.
"""

import json
import os

from absl import flags

from official_selftrain import cli
from official_selftrain import pipeline as pipeline_lib
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import released_teachers
from official_selftrain import studies

flags.DEFINE_string(
  'model_dir', None, 'The pipeline run whose teacher to release.'
)
flags.DEFINE_string('out', None, 'The release folder to write.')

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.model_dir or not FLAGS.out:
    raise cli.UserError('--model_dir and --out are required.')
  job = cli.rebuild_job()
  if not isinstance(job, pipeline_lib.Pipeline):
    raise cli.UserError(f'{FLAGS.gin_file} binds no self-training pipeline.')
  if job.teacher_checkpoint:
    raise cli.UserError(
      f'{FLAGS.gin_file} starts from a released teacher '
      f'({job.teacher_checkpoint}): release the run that trained it.'
    )
  *_, (_, teacher) = job.teacher_stages(FLAGS.model_dir)
  record = released_teachers.release(
    os.path.join(FLAGS.model_dir, 'teacher'),
    FLAGS.out,
    teacher,
    job.teacher_steps(),
    studies.provenance(gin_files=FLAGS.gin_file, gin_params=FLAGS.gin_param),
  )
  print(json.dumps({k: record[k] for k in ('checkpoint', 'metrics')}))


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
