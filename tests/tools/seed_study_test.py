"""The seed study: per-seed gains over the best supervised arm, spread."""

import json
import os

from helpers import REPO
from helpers import run_tool
from PIL import Image
import pytest

from official_selftrain import studies

TINY_SELFTRAIN = os.path.join(REPO, 'tests', 'testdata', 'tiny_selftrain.gin')


def _summary(teacher, control, total, student, steps=(6, 4), metric='AP'):
  arm = lambda ap, step: {metric: ap, 'step': step, 'test': {metric: ap}}  # noqa: E731
  rounds = [{'student': arm(student, steps[1])}]
  return {
    'teacher': arm(teacher, steps[0]),
    'supervised_same_steps': arm(control, steps[1]),
    'supervised_total_steps': arm(total, sum(steps)),
    'student': arm(student, steps[1]),
    'rounds': rounds,
    'total_steps': sum(steps),
  }


CURVES = {
  'points': [
    {
      'curve': 'f0.25_S4',
      'steps': 5,
      'val': {'AP': 0.30},
      'test': {'AP': 0.31},
    },
    {
      'curve': 'f0.25_S4',
      'steps': 10,
      'val': {'AP': 0.35},
      'test': {'AP': 0.36},
    },
    {
      'curve': 'f0.25_S4',
      'steps': 20,
      'val': {'AP': 0.50},
      'test': {'AP': 0.52},
    },
    {'curve': 'f1.0_S4', 'steps': 5, 'val': {'AP': 0.90}, 'test': {'AP': 0.90}},
  ]
}


def test_gain_is_over_the_best_baseline_including_the_curve():
  # The curve's best val point within 10 total steps is steps=10 (test 0.36);
  # the 20-step point is beyond the student's compute, the f1.0 curve is
  # another setting.
  record = studies.seed_record(
    _summary(0.30, 0.34, 0.33, 0.40), CURVES, 'f0.25_S4'
  )
  assert record['test']['learning_curve_best'] == 0.36
  assert record['best_baseline'] == 'learning_curve_best'
  assert record['gain'] == pytest.approx(0.04)
  # Without curves, the control is the best baseline.
  plain = studies.seed_record(_summary(0.30, 0.34, 0.33, 0.40))
  assert plain['best_baseline'] == 'supervised_same_steps'
  assert plain['gain'] == pytest.approx(0.06)


def test_record_gives_each_timed_stage_in_minutes():
  summary = _summary(0.30, 0.34, 0.33, 0.40)
  summary['teacher']['stage_time'] = {'wall_seconds': 600.0, 'steps_trained': 6}
  summary['student']['stage_time'] = {'wall_seconds': 90.0, 'steps_trained': 2}
  summary['pseudo_labels'] = {'wall_seconds': 30.0}
  record = studies.seed_record(summary)
  assert record['stage_minutes'] == {
    'teacher': {'minutes': 10.0, 'steps_trained': 6},
    'student': {'minutes': 1.5, 'steps_trained': 2},
    'pseudo_labels': {'minutes': 0.5},
  }
  # Stages run before times were recorded: no entry, not a zero.
  assert 'stage_minutes' not in studies.seed_record(
    _summary(0.3, 0.3, 0.3, 0.3)
  )


def test_aggregate_reports_spread_and_whether_every_seed_gains(tmp_path):
  records = {
    1: studies.seed_record(_summary(0.30, 0.34, 0.33, 0.40)),
    2: studies.seed_record(_summary(0.30, 0.36, 0.33, 0.35)),
    3: studies.seed_record(_summary(0.30, 0.34, 0.33, 0.37)),
  }
  study = studies.aggregate(records)
  gain = study['gain']
  assert gain['n'] == 3 and gain['min'] == pytest.approx(-0.01)
  assert gain['mean'] == pytest.approx((0.06 - 0.01 + 0.03) / 3)
  assert not study['every_seed_gains']
  assert study['test']['teacher']['std'] == 0.0
  records[2] = studies.seed_record(_summary(0.30, 0.34, 0.33, 0.38))
  assert studies.aggregate(records)['every_seed_gains']
  path = str(tmp_path / 'study.png')
  studies.plot_study(study, path)
  assert Image.open(path).size[0] > 300


def test_a_segmentation_study_compares_miou(tmp_path):
  records = {
    seed: studies.seed_record(
      _summary(0.50, 0.55, 0.54, 0.60 - 0.01 * seed, metric='mIoU')
    )
    for seed in (1, 2)
  }
  assert records[1]['metric'] == 'mIoU'
  assert records[1]['test']['student'] == pytest.approx(0.59)
  assert records[2]['gain'] == pytest.approx(0.03)
  study = studies.aggregate(records)
  assert study['metric'] == 'mIoU' and study['every_seed_gains']
  studies.plot_study(study, str(tmp_path / 'study.png'))
  # One study never mixes AP and mIoU.
  records[3] = studies.seed_record(_summary(0.3, 0.3, 0.3, 0.3))
  with pytest.raises(ValueError, match='different metrics'):
    studies.aggregate(records)


def test_seed_records_round_trip_and_a_bad_one_is_named(tmp_path):
  summary = _summary(0.30, 0.34, 0.33, 0.40)
  summary['student']['AP'] = 0.39  # val
  record = studies.seed_record(summary)
  assert studies.arm_metrics(summary, 'val')['student'] == 0.39
  assert studies.arm_metrics(summary, 'test')['student'] == 0.40
  record['measured'] = studies.provenance(seed=1)
  assert record['measured']['date'] and record['measured']['cpu_count']
  studies.write_seed_record(str(tmp_path), 1, record)
  assert studies.read_seed_record(str(tmp_path), 1) == record
  assert studies.read_seed_record(str(tmp_path), 2) is None
  assert studies.read_seed_record(None, 1) is None
  (tmp_path / 'seed2.json').write_text('{"teacher": ')
  with pytest.raises(ValueError, match='seed2.json'):
    studies.read_seed_record(str(tmp_path), 2)


@pytest.mark.e2e
def test_a_study_of_recorded_seeds_reruns_nothing(tmp_path):
  records = tmp_path / 'records'
  for seed, student in ((1, 0.40), (2, 0.38)):
    record = studies.seed_record(_summary(0.30, 0.34, 0.33, student))
    studies.write_seed_record(str(records), seed, record)
  model_dir = tmp_path / 'study'
  result = run_tool(
    'seed_study.py',
    f'--gin_file={TINY_SELFTRAIN}',
    '--seeds=1,2',
    f'--model_dir={model_dir}',
    f'--records_dir={records}',
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'seed 2: recorded' in result.stderr
  study = json.loads((model_dir / studies.STUDY).read_text())
  assert study['gain']['mean'] == pytest.approx(0.05)
  assert study['every_seed_gains']
  assert not (model_dir / 'seed1').exists()
  # A record that is not one is named, and nothing is run.
  (records / 'seed2.json').write_text('[]')
  result = run_tool(
    'seed_study.py',
    f'--gin_file={TINY_SELFTRAIN}',
    '--seeds=2',
    f'--model_dir={model_dir}',
    f'--records_dir={records}',
    timeout=300,
  )
  assert result.returncode == 1
  assert 'seed2.json: not a seed record' in result.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_study_runs_each_seed_and_writes_the_study(tmp_path, data_dir):
  del data_dir  # the session's data cache, through $SELFTRAIN_DATA_DIR
  model_dir = tmp_path / 'study'
  result = run_tool(
    'seed_study.py',
    f'--gin_file={TINY_SELFTRAIN}',
    '--gin_param=self_training_pipeline.supervised_total_steps=False',
    '--seeds=1,2',
    f'--model_dir={model_dir}',
    timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  study = json.loads((model_dir / studies.STUDY).read_text())
  assert set(study['seeds']) == {'1', '2'}
  for seed in ('1', '2'):
    params = (model_dir / f'seed{seed}' / 'teacher' / 'params.yaml').read_text()
    assert f'seed: {seed}' in params
    assert study['seeds'][seed]['total_steps'] == 6 + 4
  assert study['test']['student']['n'] == 2
  assert (model_dir / 'study.png').exists()
