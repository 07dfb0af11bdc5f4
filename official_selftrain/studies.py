"""Studies over runs: learning curves and seeds (the library of the tools
`learning_curve` and `seed_study`, which train; this module only reads and
plots what they wrote).

A learning curve is the supervised model at several schedule lengths, each a
full schedule of its own, per label fraction and policy; its best point is
chosen on the selection (val) split. A seed study is a self-training pipeline
over seeds; a gain counts against the best supervised model of each seed.
"""

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from official_selftrain import pipeline as pipeline_lib

CURVES = 'curves.json'
STUDY = 'study.json'
CURVE_ARM = 'learning_curve_best'


def _pyplot():
  """matplotlib's pyplot on the file-only backend (imported when plotting)."""
  import matplotlib

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  return plt


@dataclasses.dataclass(frozen=True)
class Point:
  """One schedule of the sweep."""

  steps: int
  label_fraction: Optional[float] = None
  policy: Optional[str] = None
  init: Optional[str] = None

  @property
  def curve(self) -> str:
    """The folder of its curve: fraction, policy (and init, if swept)."""
    fraction = 'all' if self.label_fraction is None else self.label_fraction
    name = f'f{fraction}_{self.policy or "default"}'
    return f'{name}_{self.init}' if self.init else name

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
    if self.init is not None:
      params.append(f"detection_experiment.init = '{self.init}'")
    return params


def sweep(steps, label_fractions=None, policies=None, inits=None):
  """Every (fraction, policy, init, steps) Point, shortest schedules first."""
  return [
    Point(int(s), None if f is None else float(f), p, i)
    for f in (label_fractions or [None])
    for p in (policies or [None])
    for i in (inits or [None])
    for s in sorted(int(x) for x in steps)
  ]


def point_key(record: Dict[str, Any]):
  """What makes two records the same point: curve, steps and seed (not the
  folder, whose spelling changes with the machine's --model_dir)."""
  return record['curve'], record['steps'], record.get('seed')


def merge_points(earlier, new):
  """`earlier` points updated by `new` (same point: the new record wins),
  ordered by curve and steps."""
  merged = {point_key(p): p for p in earlier}
  merged.update({point_key(p): p for p in new})
  return sorted(
    merged.values(), key=lambda p: (p['curve'], p['steps'], p.get('seed') or 0)
  )


def _mean_metrics(splits: List[Optional[Dict[str, Any]]]):
  """Per metric, its mean over the seeds that have it (None: no split)."""
  splits = [s for s in splits if s]
  if not splits:
    return None
  keys = sorted({k for s in splits for k in s})
  return {k: statistics.mean(s[k] for s in splits if k in s) for k in keys}


def seed_means(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """One record per (curve, steps): its seeds' mean val and test metrics,
  with `seeds` (the seeds averaged) and `test_AP_spread` (`spread` of the
  seeds' test AP). A schedule is then chosen on the seeds' mean val AP,
  never on one lucky seed; one seed's record comes back as it was."""
  groups: Dict[Any, List[Dict[str, Any]]] = {}
  for r in records:
    groups.setdefault((r['curve'], r['steps']), []).append(r)
  means = []
  for key in sorted(groups):
    group = groups[key]
    if len(group) == 1:
      means.append(group[0])
      continue
    mean = dict(group[0])
    mean.pop('dir', None)
    mean['seed'] = None
    mean['seeds'] = sorted(r.get('seed') for r in group)
    mean['val'] = _mean_metrics([r['val'] for r in group])
    mean['test'] = _mean_metrics([r.get('test') for r in group])
    mean['test_AP_spread'] = spread(
      [(r.get('test') or {}).get('AP') for r in group]
    )
    means.append(mean)
  return means


def best_points(records: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """Per curve, the point with the best val AP (the selection split); over
  seeds, the schedule with the best mean val AP (`seed_means`)."""
  best = {}
  for record in seed_means(records):
    ap = record['val'].get('AP', float('-inf'))
    current = best.get(record['curve'])
    if current is None or ap > current['val'].get('AP', float('-inf')):
      best[record['curve']] = record
  return {
    curve: {
      'steps': r['steps'],
      'val': r['val'],
      'test': r['test'],
      **{k: r[k] for k in ('seeds', 'test_AP_spread') if k in r},
    }
    for curve, r in best.items()
  }


def init_checkpoint(point_dir: str) -> Optional[Dict[str, Any]]:
  """Path and fingerprint of the checkpoint a point started from (None: a
  random init), and its skip pattern with the count it kept at their init
  where one was bound. A pre-training rerun makes another `imagenet` at the
  same path; the fingerprint tells the record which weights it started from."""
  from official_selftrain.tasks import init_restore  # pylint: disable=g-import-not-at-top

  report = os.path.join(point_dir, init_restore.REPORT_FILE)
  if not os.path.exists(report):
    return None
  with open(report) as f:
    restored = json.load(f)
  found = {k: restored.get(k) for k in ('checkpoint', 'fingerprint')}
  if restored.get('skip_pattern'):
    found['skip_pattern'] = restored['skip_pattern']
    found['skipped'] = len(restored.get('skipped', []))
  return found


def steps_to_reach(
  records: List[Dict[str, Any]], reference: str = 'rand_init'
) -> Dict[str, Dict[str, Any]]:
  """How many steps each init needs to reach the `reference` init's best.

  Per label fraction and policy (keyed as a curve without its init): the
  reference's best val AP over its measured schedules, and for every other
  init the shortest measured schedule whose val AP reaches it (`steps` None
  when none does), with that schedule's val AP, or its best when none
  reaches. The paper's "how many fewer steps a pre-trained init needs"; on
  the selection split, so the test split stays for the APs reported. Over
  seeds, on their mean (`seed_means`).
  """
  groups: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
  for r in seed_means(records):
    init = r.get('init') or reference
    group = Point(r['steps'], r['label_fraction'], r['policy']).curve
    groups.setdefault(group, {}).setdefault(init, []).append(r)
  result = {}
  for group, by_init in sorted(groups.items()):
    if reference not in by_init:
      continue
    ref = max(by_init[reference], key=lambda r: r['val'].get('AP', -1.0))
    target = ref['val'].get('AP', float('nan'))
    row = {reference: {'steps': ref['steps'], 'val_AP': target}}
    for init, points in sorted(by_init.items()):
      if init == reference:
        continue
      points = sorted(points, key=lambda r: r['steps'])
      reached = [r for r in points if r['val'].get('AP', -1.0) >= target]
      shown = (
        reached[0]
        if reached
        else max(points, key=lambda r: r['val'].get('AP', -1.0))
      )
      row[init] = {
        'steps': reached[0]['steps'] if reached else None,
        'val_AP': shown['val'].get('AP'),
        'measured_steps': [r['steps'] for r in points],
      }
    result[group] = row
  return result


def format_inits_table(records: List[Dict[str, Any]]) -> str:
  """Figure 1 as a Markdown table: per label fraction and policy, each
  init's test AP (val AP) at its best schedule on val, and that schedule."""
  inits, cells = _inits_cells(records)

  def cell(point):
    if point is None:
      return '-'
    test = (point['test'] or {}).get('AP', float('nan'))
    val = point['val'].get('AP', float('nan'))
    if 'test_AP_spread' in point:  # over seeds: mean +- std, then n
      std = 100 * point['test_AP_spread']['std']
      n = len(point['seeds'])
      return (
        f'{100 * test:.1f} +- {std:.1f} ({100 * val:.1f}), '
        f'{point["steps"]:,}, {n} seeds'
      )
    return f'{100 * test:.1f} ({100 * val:.1f}), {point["steps"]:,}'

  lines = [
    '| labels | policy | ' + ' | '.join(inits) + ' |',
    '|---|---|' + '---|' * len(inits),
  ]
  for fraction, policy in sorted({(f, p) for f, p, _ in cells}):
    lines.append(
      f'| {fraction:.0%} | {policy} | '
      + ' | '.join(cell(cells.get((fraction, policy, i))) for i in inits)
      + ' |'
    )
  return '\n'.join(lines)


def _test_ap_by_seed(records, reference):
  """The seeded records' test AP as {(fraction, policy): {init: {steps:
  {seed: AP}}}}, and each (fraction, policy, init)'s curve name."""
  table: Dict[Any, Dict[str, Dict[int, Dict[Any, float]]]] = {}
  curves = {}
  for r in records:
    ap = (r.get('test') or {}).get('AP')
    if ap is None or r.get('seed') is None:
      continue
    cell = (r['label_fraction'] or 1.0, r['policy'] or 'default')
    init = r.get('init') or reference
    by_steps = table.setdefault(cell, {}).setdefault(init, {})
    by_steps.setdefault(r['steps'], {})[r['seed']] = ap
    curves[cell + (init,)] = r['curve']
  return table, curves


def init_gains(
  records: List[Dict[str, Any]], reference: str = 'rand_init'
) -> List[Dict[str, Any]]:
  """Each init's test-AP gain over `reference`, paired by seed.

  Per label fraction, policy, schedule and init measured under two or more
  seeds that the reference has at the same schedule: the gain of each seed
  (same seed, same steps, same data), its `spread`, and both inits' test-AP
  spreads. Where the two inits' best schedules (on the seeds' mean val AP,
  `best_points`) differ, one more row pairs each seed's run at the
  reference's best schedule (`reference_steps`) with its run at the init's
  (`steps`): the paper's "each at its best step count". A gain counts only
  where it stands outside its seed spread.
  """
  table, curves = _test_ap_by_seed(records, reference)
  best = {c: r['steps'] for c, r in best_points(records).items()}
  rows = []
  for (fraction, policy), by_init in sorted(table.items()):
    ref = by_init.get(reference, {})
    best_ref = best.get(curves.get((fraction, policy, reference)))
    for init in sorted(set(by_init) - {reference}, key=_init_rank):
      mine = by_init[init]
      pairs = [(s, s) for s in sorted(set(ref) & set(mine))]
      best_mine = best.get(curves[(fraction, policy, init)])
      if best_ref != best_mine and best_ref in ref and best_mine in mine:
        pairs.append((best_ref, best_mine))
      for ref_steps, steps in pairs:
        seeds = sorted(set(ref[ref_steps]) & set(mine[steps]))
        if len(seeds) < 2:
          continue
        rows.append(
          {
            'label_fraction': fraction,
            'policy': policy,
            'steps': steps,
            'reference_steps': ref_steps,
            'init': init,
            'seeds': seeds,
            reference: spread([ref[ref_steps][s] for s in seeds]),
            'init_test_AP': spread([mine[steps][s] for s in seeds]),
            'gain': spread([mine[steps][s] - ref[ref_steps][s] for s in seeds]),
          }
        )
  return rows


def format_init_gains(rows, reference: str = 'rand_init') -> str:
  """`init_gains` as a Markdown table (test AP, mean +- std over seeds)."""

  def stat(s):
    return f'{100 * s["mean"]:.1f} +- {100 * s["std"]:.1f}'

  lines = [
    f'| labels | policy | steps | init | seeds | {reference} | init | gain '
    '(min .. max) |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    gain = r['gain']
    steps = f'{r["steps"]:,}'
    if r.get('reference_steps', r['steps']) != r['steps']:
      steps = f'{r["reference_steps"]:,} / {steps} (each best)'
    lines.append(
      f'| {r["label_fraction"]:.0%} | {r["policy"]} | {steps} | '
      f'{r["init"]} | {len(r["seeds"])} | {stat(r[reference])} | '
      f'{stat(r["init_test_AP"])} | {stat(gain)} '
      f'({100 * gain["min"]:+.1f} .. {100 * gain["max"]:+.1f}) |'
    )
  return '\n'.join(lines)


def format_steps_to_reach(table: Dict[str, Dict[str, Any]]) -> str:
  """One line per fraction, policy and init: the steps to reach the
  reference's best val AP, or 'not within' the longest schedule measured."""
  lines = []
  for group, row in table.items():
    (reference, ref), *others = row.items()
    for init, entry in others:
      if entry['steps'] is None:
        reach = f'not within {max(entry["measured_steps"])} steps'
      else:
        reach = f'{entry["steps"]} steps'
      lines.append(
        f"{group}: {init} reaches {reference}'s best val AP "
        f'({100 * ref["val_AP"]:.1f} at {ref["steps"]} steps): {reach} '
        f'(val AP {100 * entry["val_AP"]:.1f})'
      )
  return '\n'.join(lines)


def plot_curves(records: List[Dict[str, Any]], path: str) -> None:
  """Val AP against steps: one panel per policy, one line per fraction."""
  plt = _pyplot()
  records = seed_means(records)
  policies = sorted({r['policy'] or 'default' for r in records})
  fig, axes = plt.subplots(
    1, len(policies), figsize=(4.5 * len(policies), 3.6), squeeze=False
  )
  for ax, policy in zip(axes[0], policies):
    mine = [r for r in records if (r['policy'] or 'default') == policy]
    keys = sorted(
      {(r['label_fraction'] or 1.0, r.get('init') or '') for r in mine}
    )
    for fraction, init in keys:
      line = sorted(
        (r['steps'], 100 * r['val'].get('AP', float('nan')))
        for r in mine
        if (r['label_fraction'] or 1.0, r.get('init') or '') == (fraction, init)
      )
      label = f'{fraction:.0%} labels' + (f', {init}' if init else '')
      ax.plot(*zip(*line), marker='o', label=label)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('steps (each a full schedule)')
    ax.set_ylabel('AP on the selection split')
    ax.set_title(f'Augment-{policy}' if policy != 'default' else 'supervised')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# The paper's inits in its order (PAPER.md, Initialisation checkpoints).
INIT_ORDER = ('rand_init', 'imagenet', 'imagenet_plus_plus', 'simclr')


def _inits_cells(records: List[Dict[str, Any]]):
  """Figure 1's cells: the inits in the paper's order, and each (label
  fraction, policy, init)'s best point on val (`best_points`)."""
  by_curve = {r['curve']: r for r in records}
  cells = {}
  for curve, point in best_points(records).items():
    r = by_curve[curve]
    key = (r['label_fraction'] or 1.0, r['policy'] or 'default')
    cells[key + (r.get('init') or 'rand_init',)] = point
  inits = sorted({init for _, _, init in cells}, key=_init_rank)
  return inits, cells


def _init_rank(init: str):
  """The paper's order of inits first, then any other by name."""
  if init in INIT_ORDER:
    return INIT_ORDER.index(init), init
  return len(INIT_ORDER), init


def _inits_bar(point):
  """(test AP, seed std, bar label) of a cell's point; (nan, 0, '') where
  not measured. The label names the schedule too: cells compare fairly only
  where each stands at its best; over seeds, their number."""
  if point is None:
    return float('nan'), 0.0, ''
  ap = 100 * (point['test'] or point['val']).get('AP', float('nan'))
  label = f'{ap:.1f}\n{point["steps"] / 1000:g}k'
  if 'test_AP_spread' not in point:
    return ap, 0.0, label
  std = 100 * point['test_AP_spread']['std']
  return ap, std, f'{label}, {len(point["seeds"])}s'


def plot_inits(records: List[Dict[str, Any]], path: str) -> None:
  """The paper's Figure 1 in miniature: per policy, the best AP (test split,
  point chosen on val) of each init at each label fraction, each bar labelled
  with its AP and its schedule (steps, in thousands)."""
  plt = _pyplot()
  inits, cells = _inits_cells(records)
  policies = sorted({p for _, p, _ in cells})
  fig, axes = plt.subplots(
    1, len(policies), figsize=(4.5 * len(policies), 3.6), squeeze=False
  )
  for ax, policy in zip(axes[0], policies):
    fractions = sorted({f for f, p, _ in cells if p == policy})
    width = 0.8 / len(inits)
    for k, init in enumerate(inits):
      heights, stds, labels = zip(
        *(_inits_bar(cells.get((f, policy, init))) for f in fractions)
      )
      xs = [
        i + (k - (len(inits) - 1) / 2) * width for i in range(len(fractions))
      ]
      # The error bar is the seed-to-seed std (none for one seed).
      yerr = stds if any(stds) else None
      bars = ax.bar(xs, heights, width, yerr=yerr, capsize=2, label=init)
      ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(fractions)), [f'{f:.0%}' for f in fractions])
    ax.set_xlabel('labelled fraction')
    ax.set_ylabel('AP (test; steps chosen on val)')
    ax.set_title(f'Augment-{policy}' if policy != 'default' else 'supervised')
    ax.grid(alpha=0.3, axis='y')
    ax.margins(y=0.12)
    ax.legend(fontsize=8, loc='lower center', ncols=len(inits))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def format_table(records: List[Dict[str, Any]]) -> str:
  """One line per point: curve, steps, val and test AP."""
  lines = ['curve                      | steps  | val AP | test AP']
  for r in records:
    test = (r['test'] or {}).get('AP')
    lines.append(
      f'{r["curve"]:26s} | {r["steps"]:6d} | '
      f'{100 * r["val"].get("AP", float("nan")):6.1f} | '
      + ('     -' if test is None else f'{100 * test:7.1f}')
    )
  return '\n'.join(lines)


def curve_best(curves: Dict[str, Any], curve: str, max_steps: int):
  """The point of `curve` with the best val AP within `max_steps`."""
  points = [
    p
    for p in curves['points']
    if p['curve'] == curve and p['steps'] <= max_steps
  ]
  if not points:
    return None
  return max(points, key=lambda p: p['val'].get('AP', float('-inf')))


def arm_metrics(summary, split: str) -> Dict[str, Optional[float]]:
  """Per arm, its AP (mIoU for segmentation) on `split` ('test' or 'val')."""
  metric = pipeline_lib.primary_metric(summary.get('student'))
  arms = {}
  for arm, _ in pipeline_lib.ARMS:
    results = summary.get(arm) or {}
    if split == 'test':
      results = results.get('test') or {}
    arms[arm] = results.get(metric)
  return arms


def stage_times(summary) -> Dict[str, Dict[str, Any]]:
  """Per stage of a summary (warm starts, teacher, the last round's arms and
  labelling) that recorded its time: minutes, and the steps trained by the
  run that completed it (fewer than the stage's steps if it was resumed)."""
  times = {}
  for name, metrics in summary.items():
    stage_time = isinstance(metrics, dict) and metrics.get('stage_time')
    if stage_time:
      times[name] = {
        'minutes': round(stage_time['wall_seconds'] / 60, 1),
        'steps_trained': stage_time['steps_trained'],
      }
  labelling = (summary.get('pseudo_labels') or {}).get('wall_seconds')
  if labelling is not None:
    times['pseudo_labels'] = {'minutes': round(labelling / 60, 1)}
  return times


def seed_record(summary, curves=None, curve=None) -> Dict[str, Any]:
  """Test AP (mIoU for segmentation) per arm and the student's gain over the
  best baseline."""
  metric = pipeline_lib.primary_metric(summary.get('student'))
  arms = arm_metrics(summary, 'test')
  if curves is not None:
    best = curve_best(curves, curve, summary['total_steps'])
    arms[CURVE_ARM] = None if best is None else (best['test'] or {}).get('AP')
  baselines = {
    k: v for k, v in arms.items() if k != 'student' and v is not None
  }
  record = {
    'metric': metric,
    'test': arms,
    'total_steps': summary['total_steps'],
  }
  times = stage_times(summary)
  if times:
    record['stage_minutes'] = times
  if baselines and arms['student'] is not None:
    best_arm = max(baselines, key=baselines.get)
    record['best_baseline'] = best_arm
    record['gain'] = arms['student'] - baselines[best_arm]
  return record


def seed_record_path(records_dir: str, seed: int) -> str:
  return os.path.join(records_dir, f'seed{seed}.json')


def read_seed_record(records_dir: Optional[str], seed: int):
  """The seed's record in `records_dir`; None without one."""
  if not records_dir:
    return None
  path = seed_record_path(records_dir, seed)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except ValueError as e:
    raise ValueError(f'{path}: not a seed record ({e})') from e
  if not isinstance(record, dict) or 'test' not in record:
    raise ValueError(f'{path}: not a seed record (no "test" per arm)')
  return record


def write_seed_record(records_dir: str, seed: int, record) -> None:
  """Writes the record whole (temporary file, then renamed)."""
  os.makedirs(records_dir, exist_ok=True)
  path = seed_record_path(records_dir, seed)
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(path + '.tmp', path)


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def provenance(**fields) -> Dict[str, Any]:
  """When, where and from which commit a record was measured."""
  try:
    commit = subprocess.run(
      ['git', 'rev-parse', 'HEAD'],
      cwd=os.path.dirname(os.path.abspath(__file__)),
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = None
  return {
    'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds'
    ),
    'commit': commit,
    'processor': _cpu_model(),
    'cpu_count': os.cpu_count(),
    **fields,
  }


def spread(values: List[float]) -> Optional[Dict[str, float]]:
  """Mean, standard deviation (n-1), min and max; None without values."""
  values = [v for v in values if v is not None]
  if not values:
    return None
  return {
    'mean': statistics.mean(values),
    'std': statistics.stdev(values) if len(values) > 1 else 0.0,
    'min': min(values),
    'max': max(values),
    'n': len(values),
  }


def aggregate(records: Dict[int, Dict[str, Any]]) -> Dict[str, Any]:
  """The study: per arm and for the gain, spread over seeds."""
  arms = sorted({a for r in records.values() for a in r['test']})
  metrics = {r.get('metric', 'AP') for r in records.values()}
  if len(metrics) > 1:
    raise ValueError(f'seeds measured in different metrics: {sorted(metrics)}')
  gains = [r.get('gain') for r in records.values()]
  return {
    'metric': metrics.pop() if metrics else 'AP',
    'seeds': {str(s): r for s, r in records.items()},
    'test': {
      arm: spread([r['test'].get(arm) for r in records.values()])
      for arm in arms
    },
    'gain': spread(gains),
    'every_seed_gains': bool(gains)
    and all(g is not None and g > 0 for g in gains),
  }


def plot_study(study: Dict[str, Any], path: str) -> None:
  """Test metric per arm: mean bar, seed-to-seed spread, one dot per seed."""
  plt = _pyplot()
  metric = study.get('metric', 'AP')
  arms = [a for a, s in study['test'].items() if s is not None]
  fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.6))
  for i, arm in enumerate(arms):
    stats = study['test'][arm]
    ax.bar(
      i, 100 * stats['mean'], yerr=100 * stats['std'], capsize=4, alpha=0.6
    )
    dots = [r['test'].get(arm) for r in study['seeds'].values()]
    dots = [100 * d for d in dots if d is not None]
    ax.plot([i] * len(dots), dots, 'k.', markersize=6)
  ax.set_xticks(
    range(len(arms)), [a.replace('_', '\n') for a in arms], fontsize=8
  )
  ax.set_ylabel(f'test {metric} (mean, std, seeds)')
  gain = study['gain']
  if gain:
    ax.set_title(
      f'student - best supervised: {100 * gain["mean"]:+.1f} '
      f'(std {100 * gain["std"]:.1f}, min {100 * gain["min"]:+.1f}) {metric}',
      fontsize=9,
    )
  low = min(100 * study['test'][a]['min'] for a in arms)
  ax.set_ylim(max(0.0, low - 5), None)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _backbone_row(name: str, model, images) -> Dict[str, Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top

  features = model.backbone(images, training=False)
  levels = {}
  for level in sorted(features, key=int):
    f = features[level].numpy()
    levels[f'C{level}'] = {
      'mean': float(f.mean()),
      'never_fire': float((f.max(axis=(0, 1, 2)) <= 0).mean()),
    }
  squares = [
    float(np.sum(v.numpy() ** 2))
    for v in model.backbone.trainable_variables
    if 'kernel' in v.name
  ]
  return {
    'checkpoint': name,
    'levels': levels,
    'kernel_norm': float(np.sqrt(sum(squares))),
  }


def backbone_stats(experiment, sources, seed: int) -> List[Dict[str, Any]]:
  """Per (label, checkpoint or None, modules): activations per level and
  kernel norm on one validation batch (see the tool `inspect_backbone`)."""
  from official.core import task_factory  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  from official_selftrain.tasks import init_restore  # pylint: disable=g-import-not-at-top

  experiment.prepare()
  config = experiment.config
  task = task_factory.get_task(config.task)
  images = next(iter(task.build_inputs(config.task.validation_data)))[0]
  rows = []
  for label, path, modules in sources:
    tf_keras.utils.set_random_seed(seed)
    model = task.build_model()
    if path:
      init_restore.restore(
        init_restore.module_items(model, modules), path, modules
      )
    rows.append(_backbone_row(label, model, images))
  return rows


def format_backbone_stats(row: Dict[str, Any]) -> str:
  levels = ' | '.join(
    f'{k}: mean {v["mean"]:.3f}, never fire {v["never_fire"]:.2f}'
    for k, v in row['levels'].items()
  )
  return f'{row["checkpoint"]}: {levels} | kernel norm {row["kernel_norm"]:.1f}'
