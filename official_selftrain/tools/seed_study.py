r"""A self-training pipeline over seeds: mean, spread and the gain per seed.

  python -m official_selftrain.tools.seed_study --gin_file=shapes_selftrain_s4.gin \
      --seeds=1,2,3 --model_dir=runs/gain_study \
      --learning_curves=runs/learning_curves/curves.json --curve=f0.25_S4 \
      --plot=docs/selftrain_gain.png

Runs the pipeline once per seed (`--seed`: every experiment kind's `seed`
binding), in `model_dir/seed{N}`; complete stages are skipped, so a stopped study
resumes), then reads each `summary.json` and writes `study.json` and a PNG:

- per arm (teacher, control, supervised for all the steps, student), the test
  AP (mIoU for a segmentation pipeline) of every seed, its mean, standard deviation, min and max;
- per seed, the student's gain over the best supervised model of that seed:
  the best of teacher, control and the all-steps arm, and, with
  `--learning_curves`, the learning-curve point of `--curve` with the best val
  AP among those within the student's total steps (teacher + student; one
  curve for all seeds, so it is the same number in each);
- the verdict the project asks of a gain: its mean over seeds, and whether
  every seed's gain is above 0.
"""

import json
import os
from typing import Any
from typing import Dict

from absl import flags

from official_selftrain import cli
from official_selftrain import pipeline as pipeline_lib
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import studies

flags.DEFINE_list('seeds', ['1', '2', '3'], 'Seeds, one pipeline run each.')
flags.DEFINE_string('model_dir', None, 'Root: model_dir/seed{N}, study.json.')
flags.DEFINE_string(
  'learning_curves', None, 'curves.json of tools/learning_curve.py.'
)
flags.DEFINE_string('curve', None, 'Its curve to compare with, e.g. f0.25_S4.')
flags.DEFINE_string('plot', None, 'PNG (default: model_dir/study.png).')

FLAGS = flags.FLAGS


def run_seed(seed: int, model_dir: str, run_fn) -> Dict[str, Any]:
  """One pipeline run with `seed`; its summary."""
  job = cli.rebuild_job(cli.seed_bindings(seed))
  if not isinstance(job, pipeline_lib.Pipeline):
    raise cli.UserError(f'{FLAGS.gin_file} binds no self-training pipeline.')
  summary = job.run(
    'train_and_eval', os.path.join(model_dir, f'seed{seed}'), run_fn
  )
  steps = [
    (summary.get('teacher_warm_start') or {}).get('step', 0),
    summary['teacher'].get('step', 0),
  ] + [r['student'].get('step', 0) for r in summary['rounds']]
  summary['total_steps'] = sum(steps)
  return summary


def main(argv):
  del argv
  if not FLAGS.model_dir:
    raise cli.UserError('--model_dir is required.')
  curves = None
  if FLAGS.learning_curves:
    if not FLAGS.curve:
      raise cli.UserError('--learning_curves needs --curve (e.g. f0.25_S4).')
    with open(FLAGS.learning_curves) as f:
      curves = json.load(f)
  run_fn = cli.default_run_fn()
  records = {}
  for seed in (int(s) for s in FLAGS.seeds):
    records[seed] = studies.seed_record(
      run_seed(seed, FLAGS.model_dir, run_fn), curves, FLAGS.curve
    )
  study = studies.aggregate(records)
  with open(os.path.join(FLAGS.model_dir, studies.STUDY), 'w') as f:
    json.dump(study, f, indent=1)
  studies.plot_study(
    study, FLAGS.plot or os.path.join(FLAGS.model_dir, 'study.png')
  )
  print(json.dumps({k: study[k] for k in ('gain', 'every_seed_gains')}))


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
