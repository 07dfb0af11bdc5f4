"""The learning-curve tool: full schedules per point, resumable, plotted."""

import json
import os
import shutil

from helpers import TINY_GIN
from helpers import run_tool
from PIL import Image
import pytest

from official_selftrain import studies


def test_sweep_is_every_fraction_policy_and_length_shortest_first():
  points = studies.sweep(['4', '2'], ['0.5', '1.0'], ['S1', 'S4'])
  assert len(points) == 8
  assert [p.steps for p in points[:2]] == [2, 4]
  assert points[0].curve == 'f0.5_S1'
  bindings = points[1].bindings(seed=3)
  assert 'detection_experiment.train_steps = 4' in bindings
  assert 'detection_experiment.validation_interval = 4' in bindings
  assert 'shapes_det.label_fraction = 0.5' in bindings
  assert "detection_experiment.policy = 'S1'" in bindings
  assert 'detection_experiment.seed = 3' in bindings
  # Nothing given, nothing bound beyond the schedule.
  (plain,) = studies.sweep(['7'])
  assert plain.bindings(None) == [
    'detection_experiment.train_steps = 7',
    'detection_experiment.validation_interval = 7',
  ]


def test_inits_are_swept_as_curves_of_their_own():
  points = studies.sweep(['2'], ['0.1'], ['S4'], ['rand_init', 'imagenet'])
  assert [p.curve for p in points] == ['f0.1_S4_rand_init', 'f0.1_S4_imagenet']
  assert "detection_experiment.init = 'imagenet'" in points[1].bindings(None)


def test_inits_plot_shows_each_inits_best_point(tmp_path):
  records = []
  for init, aps in (('rand_init', (0.1, 0.3)), ('imagenet', (0.4, 0.2))):
    for policy in ('S1', 'S4'):
      for steps, ap in zip((2, 4), aps):
        point = studies.Point(steps, 0.1, policy, init)
        records.append(
          {
            'curve': point.curve,
            'steps': steps,
            'label_fraction': 0.1,
            'policy': policy,
            'init': init,
            'val': {'AP': ap},
            'test': {'AP': ap + 0.01},
          }
        )
  best = studies.best_points(records)
  assert best['f0.1_S1_imagenet']['steps'] == 2
  assert best['f0.1_S1_rand_init']['steps'] == 4
  path = str(tmp_path / 'inits.png')
  studies.plot_inits(records, path)
  assert Image.open(path).size[0] > 600  # two panels


def test_sweeps_into_one_folder_add_up():
  old = [
    {'dir': 'a/s2', 'curve': 'a', 'steps': 2, 'val': {'AP': 0.1}},
    {'dir': 'a/s4', 'curve': 'a', 'steps': 4, 'val': {'AP': 0.2}},
  ]
  new = [
    {'dir': 'a/s4', 'curve': 'a', 'steps': 4, 'val': {'AP': 0.3}},
    {'dir': 'b/s1', 'curve': 'b', 'steps': 1, 'val': {'AP': 0.4}},
  ]
  merged = studies.merge_points(old, new)
  assert [(p['dir'], p['val']['AP']) for p in merged] == [
    ('a/s2', 0.1),
    ('a/s4', 0.3),
    ('b/s1', 0.4),
  ]


def test_points_of_other_seeds_or_folders_are_told_apart():
  """A point is its curve, steps and seed: the same point under another
  --model_dir spelling is one point, another seed's is another."""
  old = [{'dir': 'runs/x/a/s4', 'curve': 'a', 'steps': 4, 'seed': 1, 'v': 0}]
  new = [
    {'dir': '/abs/runs/x/a/s4', 'curve': 'a', 'steps': 4, 'seed': 1, 'v': 1},
    {'dir': 'runs/x/a/s4', 'curve': 'a', 'steps': 4, 'seed': 2, 'v': 2},
  ]
  merged = studies.merge_points(old, new)
  assert [(p['seed'], p['v']) for p in merged] == [(1, 1), (2, 2)]


def test_best_point_is_chosen_on_the_selection_split():
  records = [
    {'curve': 'c', 'steps': s, 'val': {'AP': v}, 'test': {'AP': t}}
    for s, v, t in ((1, 0.1, 0.9), (2, 0.3, 0.2), (4, 0.2, 0.5))
  ]
  best = studies.best_points(records)
  # Step 2 has the best val AP; the better test AP of the others is not looked at.
  assert best['c']['steps'] == 2 and best['c']['test'] == {'AP': 0.2}


def test_a_point_records_which_checkpoint_it_started_from(tmp_path):
  from official_selftrain.tasks import init_restore

  assert studies.init_checkpoint(str(tmp_path)) is None  # rand_init
  with open(tmp_path / init_restore.REPORT_FILE, 'w') as f:
    json.dump({'checkpoint': 'pre/ckpt-6', 'fingerprint': 'ab12', 'x': 1}, f)
  assert studies.init_checkpoint(str(tmp_path)) == {
    'checkpoint': 'pre/ckpt-6',
    'fingerprint': 'ab12',
  }
  with open(tmp_path / init_restore.REPORT_FILE, 'w') as f:
    json.dump(
      {
        'checkpoint': 'pre/ckpt-6',
        'fingerprint': 'ab12',
        'skip_pattern': 'backbone/late/',
        'skipped': ['backbone/late/a', 'backbone/late/b'],
      },
      f,
    )
  assert studies.init_checkpoint(str(tmp_path)) == {
    'checkpoint': 'pre/ckpt-6',
    'fingerprint': 'ab12',
    'skip_pattern': 'backbone/late/',
    'skipped': 2,
  }


def test_steps_to_reach_the_random_inits_best_on_the_selection_split():
  def record(init, steps, val, test, policy='S4'):
    point = studies.Point(steps, 0.1, policy, init)
    return {
      'curve': point.curve,
      'steps': steps,
      'label_fraction': 0.1,
      'policy': policy,
      'init': init,
      'val': {'AP': val},
      'test': {'AP': test},
    }

  records = [
    record('rand_init', 2, 0.20, 0.90),
    record('rand_init', 8, 0.40, 0.10),  # the best on val, whatever its test
    record('imagenet', 1, 0.30, 0.99),
    record('imagenet', 4, 0.41, 0.0),
    record('imagenet', 8, 0.45, 0.0),
    record('imagenet_plus_plus', 8, 0.39, 0.99),
    record('imagenet', 2, 0.9, 0.9, policy='S1'),  # no rand_init: no row
  ]
  table = studies.steps_to_reach(records)
  assert list(table) == ['f0.1_S4']
  row = table['f0.1_S4']
  assert row['rand_init'] == {'steps': 8, 'val_AP': 0.40}
  # The shortest schedule that reaches 0.40 on val: 4 steps, not 8.
  assert row['imagenet']['steps'] == 4
  assert row['imagenet']['val_AP'] == 0.41
  # Never reached within the schedules measured: None, with its best.
  assert row['imagenet_plus_plus']['steps'] is None
  assert row['imagenet_plus_plus']['val_AP'] == 0.39
  # Figure 1's table: each init at its best schedule on val, test AP shown.
  lines = studies.format_inits_table(records).splitlines()
  assert (
    lines[0]
    == '| labels | policy | rand_init | imagenet | imagenet_plus_plus |'
  )
  assert (
    '| 10% | S4 | 10.0 (40.0), 8 | 0.0 (45.0), 8 | 99.0 (39.0), 8 |' in lines
  )
  assert '| 10% | S1 | - | 90.0 (90.0), 2 | - |' in lines
  text = studies.format_steps_to_reach(table)
  assert 'imagenet reaches rand_init' in text and '4 steps' in text
  assert 'imagenet_plus_plus' in text and 'not within 8 steps' in text


def _seeded(init, steps, seed, val, test):
  point = studies.Point(steps, 0.1, 'S1', init)
  return {
    'curve': point.curve,
    'steps': steps,
    'label_fraction': 0.1,
    'policy': 'S1',
    'init': init,
    'seed': seed,
    'val': {'AP': val},
    'test': {'AP': test},
  }


def test_over_seeds_the_schedule_is_chosen_on_the_mean_val_ap(tmp_path):
  records = [
    # 2 steps: one lucky seed (0.5) but a mean of 0.3.
    _seeded('rand_init', 2, 1, 0.5, 0.5),
    _seeded('rand_init', 2, 2, 0.1, 0.1),
    # 4 steps: a mean of 0.35 on val, so the best schedule.
    _seeded('rand_init', 4, 1, 0.3, 0.2),
    _seeded('rand_init', 4, 2, 0.4, 0.4),
  ]
  best = studies.best_points(records)['f0.1_S1_rand_init']
  assert best['steps'] == 4 and best['seeds'] == [1, 2]
  assert best['val']['AP'] == pytest.approx(0.35)
  assert best['test']['AP'] == pytest.approx(0.3)
  assert best['test_AP_spread']['std'] == pytest.approx(0.1414, abs=1e-4)
  table = studies.format_inits_table(records)
  assert '| 10% | S1 | 30.0 +- 14.1 (35.0), 4, 2 seeds |' in table
  reach = studies.steps_to_reach(
    records + [_seeded('imagenet', 2, 1, 0.36, 0.0)]
  )
  assert reach['f0.1_S1']['rand_init'] == {'steps': 4, 'val_AP': 0.35}
  assert reach['f0.1_S1']['imagenet']['steps'] == 2
  # The plot draws the seeds' spread as an error bar.
  path = str(tmp_path / 'inits.png')
  studies.plot_inits(records, path)
  assert Image.open(path).size[0] > 300


def test_init_gains_are_paired_by_seed():
  records = [
    _seeded('rand_init', 4, 1, 0, 0.10),
    _seeded('rand_init', 4, 2, 0, 0.20),
    _seeded('rand_init', 4, 3, 0, 0.30),
    _seeded('imagenet', 4, 1, 0, 0.13),
    _seeded('imagenet', 4, 2, 0, 0.21),
    _seeded('imagenet', 4, 4, 0, 0.99),  # no rand_init of seed 4: left out
    # One paired seed only: no row.
    _seeded('rand_init', 8, 1, 0, 0.1),
    _seeded('imagenet', 8, 1, 0, 0.2),
  ]
  (row,) = studies.init_gains(records)
  assert (row['steps'], row['init'], row['seeds']) == (4, 'imagenet', [1, 2])
  assert row['gain']['mean'] == pytest.approx(0.02)
  assert row['gain']['min'] == pytest.approx(0.01)
  assert row['gain']['max'] == pytest.approx(0.03)
  assert row['rand_init']['mean'] == pytest.approx(0.15)
  assert row['init_test_AP']['mean'] == pytest.approx(0.17)
  text = studies.format_init_gains([row])
  assert '| 10% | S1 | 4 | imagenet | 2 | 15.0 +- 7.1 | 17.0 +- 5.7 |' in text
  assert '2.0 +- 1.4 (+1.0 .. +3.0) |' in text


def test_init_gains_pair_each_inits_best_schedule():
  # rand_init is best at 8 steps (mean val), imagenet at 4: besides the
  # same-schedule row at 4, one row pairs rand_init's 8 with imagenet's 4.
  # (init, steps, seed, val AP, test AP); imagenet's 8-step run has one
  # seed, and its val AP keeps 4 imagenet's best.
  runs = [('rand_init', 4, s, 0.1, 0.1 + 0.02 * (s - 1)) for s in (1, 2)]
  runs += [('rand_init', 8, s, 0.3, 0.2 + 0.04 * (s - 1)) for s in (1, 2)]
  runs += [('imagenet', 4, s, 0.4, 0.25 - 0.02 * (s - 1)) for s in (1, 2)]
  records = [_seeded(*run) for run in runs + [('imagenet', 8, 1, 0.2, 0.9)]]
  same, best = studies.init_gains(records)
  assert (same['reference_steps'], same['steps']) == (4, 4)
  assert same['gain']['mean'] == pytest.approx(0.13)
  assert (best['reference_steps'], best['steps']) == (8, 4)
  assert best['seeds'] == [1, 2]
  assert best['gain']['min'] == pytest.approx(-0.01)
  assert best['gain']['max'] == pytest.approx(0.05)
  assert best['rand_init']['mean'] == pytest.approx(0.22)
  text = studies.format_init_gains([same, best])
  assert '| 10% | S1 | 8 / 4 (each best) | imagenet | 2 | 22.0 +- 2.8 |' in text


@pytest.mark.e2e
@pytest.mark.slow
def test_tool_trains_each_schedule_and_resumes(tmp_path, data_dir):
  model_dir = str(tmp_path / 'curves')
  plot = str(tmp_path / 'curves.png')
  records = str(tmp_path / 'records.json')
  args = (
    f'--gin_file={TINY_GIN}',
    '--steps=2,4',
    '--label_fractions=0.5',
    '--policies=S1',
    f'--model_dir={model_dir}',
    f'--plot={plot}',
  )
  del data_dir  # the session's data cache, through $SELFTRAIN_DATA_DIR
  first = run_tool('learning_curve.py', *args, f'--records={records}')
  assert first.returncode == 0, first.stderr[-3000:]
  with open(os.path.join(model_dir, studies.CURVES)) as f:
    curves = json.load(f)
  points = curves['points']
  assert [(p['steps'], p['val']['step']) for p in points] == [(2, 2), (4, 4)]
  for p in points:
    assert 0.0 <= p['val']['AP'] <= 1.0 and p['test']['step'] == p['steps']
    # Each its own schedule: its own folder, trained to its own last step.
    assert p['dir'].endswith(f'f0.5_S1/steps{p["steps"]}')
    assert not os.path.exists(os.path.join(p['dir'], 'ckpt-6.index'))
  assert curves['best']['f0.5_S1']['steps'] in (2, 4)
  assert Image.open(plot).size[0] > 300
  assert 'f0.5_S1' in first.stdout
  # Run again: every point is complete and skipped.
  again = run_tool('learning_curve.py', *args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count('skipped') >= 2
  # Each finished point went to --records at once; on a new machine (the
  # run dirs gone) the sweep reads them there and trains nothing.
  with open(records) as f:
    assert json.load(f)['points'] == points
  shutil.rmtree(model_dir)
  with open(records, 'w') as f:  # as an older version wrote it: no summaries
    json.dump({'points': points}, f)
  elsewhere = run_tool('learning_curve.py', *args, f'--records={records}')
  assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
  assert '[pipeline]' not in elsewhere.stderr
  with open(records) as f:  # rewritten with this version's summaries
    assert json.load(f)['best'] == curves['best']
  with open(os.path.join(model_dir, studies.CURVES)) as f:
    assert json.load(f)['points'] == points
