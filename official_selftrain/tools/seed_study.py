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

A run directory lives as long as its machine; with `--records_dir` (a folder in
the repo, e.g. docs/seg_gain_study) a study spans machines: each finished
seed's record (test per arm, val per arm, gain, steps, the minutes of each
stage the run trained, and where and when it was measured) is written there
as `seed{N}.json`, and a seed whose record is there is read from it, not
rerun (delete the file to measure it again).
"""

import json
import os
from typing import Any
from typing import Dict

from absl import flags
from absl import logging

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
flags.DEFINE_string(
  'records_dir',
  None,
  'Folder of per-seed records (seed{N}.json): written for each finished '
  'seed, and read instead of rerunning a seed recorded there.',
)

FLAGS = flags.FLAGS


def run_seed(seed: int, model_dir: str, run_fn) -> Dict[str, Any]:
  """One pipeline run with `seed`; its summary."""
  job = cli.rebuild_job(cli.seed_bindings(seed))
  if not isinstance(job, pipeline_lib.Pipeline):
    raise cli.UserError(f'{FLAGS.gin_file} binds no self-training pipeline.')
  return job.run(
    'train_and_eval', os.path.join(model_dir, f'seed{seed}'), run_fn
  )


def _record(seed: int, curves) -> Dict[str, Any]:
  """The seed's record: from --records_dir if there, else run (and write it)."""
  try:
    kept = studies.read_seed_record(FLAGS.records_dir, seed)
  except ValueError as e:
    raise cli.UserError(str(e)) from e
  if kept is not None:
    logging.info(
      'seed %d: recorded %s (%s), not rerun',
      seed,
      kept.get('measured', {}).get('date', '?'),
      studies.seed_record_path(FLAGS.records_dir, seed),
    )
    return kept
  summary = run_seed(seed, FLAGS.model_dir, cli.default_run_fn())
  record = studies.seed_record(summary, curves, FLAGS.curve)
  if FLAGS.records_dir:
    record['val'] = studies.arm_metrics(summary, 'val')
    record['measured'] = studies.provenance(
      gin_files=FLAGS.gin_file, gin_params=FLAGS.gin_param, seed=seed
    )
    studies.write_seed_record(FLAGS.records_dir, seed, record)
  return record


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
  records = {}
  for seed in (int(s) for s in FLAGS.seeds):
    records[seed] = _record(seed, curves)
  study = studies.aggregate(records)
  os.makedirs(FLAGS.model_dir, exist_ok=True)
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
