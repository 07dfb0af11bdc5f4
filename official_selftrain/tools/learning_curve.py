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
ends with `curves.json` (every point, val and test metrics, and per fraction
and policy the best step count on val) and a PNG: val AP against steps, one
panel per policy, one line per label fraction.

A gin file that binds a self-training pipeline sweeps its teacher. The label
fraction binds `shapes_det.label_fraction` (the embedded data); leave
`--label_fractions` unset for any other dataset.
"""

import dataclasses
import functools
import json
import os
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from absl import flags
import gin

from official_selftrain import cli
from official_selftrain import pipeline as pipeline_lib
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import train_lib
from official_selftrain.configs import experiment as experiment_lib

flags.DEFINE_string('model_dir', None, 'Root of every point, and curves.json.')
flags.DEFINE_list('steps', ['500', '1000', '2000', '4000'], 'Schedule lengths.')
flags.DEFINE_list(
  'label_fractions', None, 'shapes_det.label_fraction values (embedded data).'
)
flags.DEFINE_list(
  'policies', None, "Augmentation policies (default: the gin file's)."
)
flags.DEFINE_integer('seed', None, 'detection_experiment.seed of every point.')
flags.DEFINE_string(
  'plot', None, 'PNG of val AP against steps (default: model_dir/curves.png).'
)

FLAGS = flags.FLAGS
CURVES = 'curves.json'


@dataclasses.dataclass(frozen=True)
class Point:
  """One schedule of the sweep."""

  steps: int
  label_fraction: Optional[float] = None
  policy: Optional[str] = None

  @property
  def curve(self) -> str:
    """The folder of its curve: fraction and policy."""
    fraction = 'all' if self.label_fraction is None else self.label_fraction
    return f'f{fraction}_{self.policy or "default"}'

  def bindings(self, seed: Optional[int]) -> List[str]:
    """The gin bindings that make this point of the base config."""
    params = [
      f'detection_experiment.train_steps = {self.steps}',
      # One evaluation at the end of each schedule.
      f'detection_experiment.validation_interval = {self.steps}',
    ]
    if self.label_fraction is not None:
      params.append(f'shapes_det.label_fraction = {self.label_fraction}')
    if self.policy is not None:
      params.append(f"detection_experiment.policy = '{self.policy}'")
    if seed is not None:
      params.append(f'detection_experiment.seed = {seed}')
    return params


def sweep(steps, label_fractions=None, policies=None) -> List[Point]:
  """Every (fraction, policy, steps), shortest schedules first."""
  return [
    Point(int(s), None if f is None else float(f), p)
    for f in (label_fractions or [None])
    for p in (policies or [None])
    for s in sorted(int(x) for x in steps)
  ]


def supervised_experiment(params: List[str]) -> experiment_lib.Experiment:
  """The gin flags plus `params`, built; a pipeline gives its teacher."""
  gin.clear_config()
  cli.parse_gin_flags(extra_params=params)
  try:
    job = experiment_lib.build()
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    raise cli.UserError(f'configuration: {e}') from e
  job = getattr(job, 'teacher', job)
  if not isinstance(job, experiment_lib.Experiment):
    raise cli.UserError(f'{FLAGS.gin_file} binds no supervised experiment.')
  return job


def run_point(point: Point, model_dir: str, seed, run_fn) -> Dict[str, Any]:
  """Trains and evaluates one point unless complete; its record."""
  experiment = supervised_experiment(point.bindings(seed))
  point_dir = os.path.join(model_dir, point.curve, f'steps{point.steps}')
  metrics = pipeline_lib.run_stage(
    f'{point.curve} {point.steps} steps', experiment, point_dir, run_fn
  )
  return {
    **dataclasses.asdict(point),
    'curve': point.curve,
    'dir': point_dir,
    'val': {k: v for k, v in metrics.items() if k != 'test'},
    'test': metrics.get('test'),
  }


def best_points(records: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """Per curve, the point with the best val AP (the selection split)."""
  best = {}
  for record in records:
    ap = record['val'].get('AP', float('-inf'))
    current = best.get(record['curve'])
    if current is None or ap > current['val'].get('AP', float('-inf')):
      best[record['curve']] = record
  return {
    curve: {'steps': r['steps'], 'val': r['val'], 'test': r['test']}
    for curve, r in best.items()
  }


def plot_curves(records: List[Dict[str, Any]], path: str) -> None:
  """Val AP against steps: one panel per policy, one line per fraction."""
  import matplotlib

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  policies = sorted({r['policy'] or 'default' for r in records})
  fig, axes = plt.subplots(
    1, len(policies), figsize=(4.5 * len(policies), 3.6), squeeze=False
  )
  for ax, policy in zip(axes[0], policies):
    mine = [r for r in records if (r['policy'] or 'default') == policy]
    for fraction in sorted({r['label_fraction'] or 1.0 for r in mine}):
      line = sorted(
        (r['steps'], 100 * r['val'].get('AP', float('nan')))
        for r in mine
        if (r['label_fraction'] or 1.0) == fraction
      )
      ax.plot(*zip(*line), marker='o', label=f'{fraction:.0%} labels')
    ax.set_xscale('log', base=2)
    ax.set_xlabel('steps (each a full schedule)')
    ax.set_ylabel('AP on the selection split')
    ax.set_title(f'Augment-{policy}' if policy != 'default' else 'supervised')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def format_table(records: List[Dict[str, Any]]) -> str:
  """One line per point: curve, steps, val and test AP."""
  lines = ['curve            | steps  | val AP | test AP']
  for r in records:
    test = (r['test'] or {}).get('AP')
    lines.append(
      f'{r["curve"]:16s} | {r["steps"]:6d} | '
      f'{100 * r["val"].get("AP", float("nan")):6.1f} | '
      + ('     -' if test is None else f'{100 * test:7.1f}')
    )
  return '\n'.join(lines)


def main(argv):
  del argv
  if not FLAGS.model_dir:
    raise cli.UserError('--model_dir is required.')
  points = sweep(FLAGS.steps, FLAGS.label_fractions, FLAGS.policies)
  strategy = train_lib.build_strategy('one_device', None, None)
  run_fn = functools.partial(train_lib.run, strategy=strategy)
  records = [
    run_point(point, FLAGS.model_dir, FLAGS.seed, run_fn) for point in points
  ]
  curves = {'points': records, 'best': best_points(records)}
  with open(os.path.join(FLAGS.model_dir, CURVES), 'w') as f:
    json.dump(curves, f, indent=1)
  plot_curves(
    records, FLAGS.plot or os.path.join(FLAGS.model_dir, 'curves.png')
  )
  print(format_table(records))


def entry():
  cli.main_with_errors(main)


if __name__ == '__main__':
  entry()
