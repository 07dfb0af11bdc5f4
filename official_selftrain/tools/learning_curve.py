r"""Learning curves: the supervised model at several full schedule lengths.

  python -m official_selftrain.tools.learning_curve --gin_file=shapes_s1.gin \
      --label_fractions=0.1,0.25,1.0 --policies=S1,S4 --steps=500,1000,2000,4000 \
      --model_dir=runs/learning_curves --plot=docs/learning_curves.png

Each point is a schedule of its own (warm-up and cosine decay to zero at its
last step, as the paper's supervised models, "trained to convergence on a
held-out validation set", App. H), not a checkpoint of one long run. Each
trains in `--model_dir/f{fraction}_{policy}/steps{N}`, is evaluated on the
selection (val) split at its end and once on the test split, and is skipped
when complete, so an interrupted sweep resumes point by point. The sweep
ends with `curves.json` (every point, val and test metrics, per fraction
and policy the best step count on val, and with `--inits` the steps each init
needs to reach rand_init's best val AP) and a PNG: val AP against steps, one
panel per policy, one line per label fraction. A run directory lives as long
as its machine; with `--records` (a curves.json in the repo) a sweep spans
machines: each finished point is written there at once, and a point
recorded there (same curve, steps and seed) is read from it, not rerun.

Over seeds, one sweep per `--seed`, each in a `--model_dir` of its own (a
point's folder does not name its seed) and all into one `--records`: the
best schedule is then chosen on the seeds' mean val AP, and each init's
test-AP gain over rand_init is paired by seed (`init_gains` in the records,
a table in the log).

A gin file that binds a self-training pipeline sweeps its teacher. The label
fraction binds `shapes_det.label_fraction` (the embedded data); leave
`--label_fractions` unset for any other dataset.
"""

import dataclasses
import json
import os
from typing import Any
from typing import Dict
from typing import List

from absl import flags

from official_selftrain import cli
from official_selftrain import pipeline as pipeline_lib
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import studies

flags.DEFINE_string('model_dir', None, 'Root of every point, and curves.json.')
flags.DEFINE_list('steps', ['500', '1000', '2000', '4000'], 'Schedule lengths.')
flags.DEFINE_list(
  'label_fractions', None, 'shapes_det.label_fraction values (embedded data).'
)
flags.DEFINE_list(
  'policies', None, "Augmentation policies (default: the gin file's)."
)
flags.DEFINE_list(
  'inits',
  None,
  'detection_experiment.init values (rand_init, imagenet, ...); with them, '
  'model_dir/inits.png compares their best points (Figure 1 of the paper).',
)
flags.DEFINE_integer('seed', None, 'detection_experiment.seed of every point.')
flags.DEFINE_string(
  'plot', None, 'PNG of val AP against steps (default: model_dir/curves.png).'
)
flags.DEFINE_string(
  'records',
  None,
  'A curves.json kept in the repo (e.g. docs/inits_figure1.json): a point '
  'recorded there is read, not rerun, and each finished point is added to '
  'it at once, so a sweep spans sessions and machines.',
)

FLAGS = flags.FLAGS


def run_point(
  point: studies.Point, model_dir: str, seed, run_fn
) -> Dict[str, Any]:
  """Trains and evaluates one point unless complete; its record."""
  experiment = cli.supervised_experiment(cli.rebuild_job(point.bindings(seed)))
  point_dir = os.path.join(model_dir, point.curve, f'steps{point.steps}')
  metrics = pipeline_lib.run_stage(
    f'{point.curve} {point.steps} steps', experiment, point_dir, run_fn
  )
  record = {
    **dataclasses.asdict(point),
    'seed': seed,
    'curve': point.curve,
    'dir': point_dir,
    'val': {
      k: v for k, v in metrics.items() if k not in ('test', 'stage_time')
    },
    'test': metrics.get('test'),
    'stage_time': metrics.get('stage_time'),
  }
  init = studies.init_checkpoint(point_dir)
  if init:
    record['init_checkpoint'] = init
  return record


def _earlier_points(path: str) -> List[Dict[str, Any]]:
  """The points of a curves.json written before (none if it is missing):
  kept, so sweeps of other fractions or policies into one folder add up to
  one plot."""
  if not path or not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)['points']


def _write_curves(path: str, records: List[Dict[str, Any]]) -> None:
  curves = {'points': records, 'best': studies.best_points(records)}
  if any(r.get('init') for r in records):
    curves['steps_to_reach'] = studies.steps_to_reach(records)
    gains = studies.init_gains(records)
    if gains:
      curves['init_gains'] = gains
  with open(path + '.tmp', 'w') as f:
    json.dump(curves, f, indent=1)
  os.replace(path + '.tmp', path)


def main(argv):
  del argv
  if not FLAGS.model_dir:
    raise cli.UserError('--model_dir is required.')
  points = studies.sweep(
    FLAGS.steps, FLAGS.label_fractions, FLAGS.policies, FLAGS.inits
  )
  kept = {studies.point_key(p): p for p in _earlier_points(FLAGS.records)}
  if FLAGS.records:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.records)), exist_ok=True)
  run_fn = cli.default_run_fn()
  records = []

  def save_records():
    if FLAGS.records:
      _write_curves(
        FLAGS.records, studies.merge_points(list(kept.values()), records)
      )

  for point in points:
    key = (point.curve, point.steps, FLAGS.seed)
    if key in kept:
      records.append(kept[key])
      continue
    records.append(run_point(point, FLAGS.model_dir, FLAGS.seed, run_fn))
    save_records()  # each new point at once: a killed sweep keeps it
  save_records()  # and its summaries (best, gains) as this code reads them
  records = studies.merge_points(
    _earlier_points(os.path.join(FLAGS.model_dir, studies.CURVES))
    + list(kept.values()),
    records,
  )
  os.makedirs(FLAGS.model_dir, exist_ok=True)
  _write_curves(os.path.join(FLAGS.model_dir, studies.CURVES), records)
  studies.plot_curves(
    records, FLAGS.plot or os.path.join(FLAGS.model_dir, 'curves.png')
  )
  if any(r.get('init') for r in records):
    studies.plot_inits(records, os.path.join(FLAGS.model_dir, 'inits.png'))
  print(studies.format_table(records))
  if any(r.get('init') for r in records):
    print(studies.format_inits_table(records))
    print(studies.format_steps_to_reach(studies.steps_to_reach(records)))
    gains = studies.init_gains(records)
    if gains:
      print(studies.format_init_gains(gains))


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
