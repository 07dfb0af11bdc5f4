"""The self-training pipeline end to end: stages, fair control, resumption.

One pipeline is killed once its pseudo labels are written, then resumed (the
module fixture); each test checks one thing about that run, or reruns a copy.
"""

import json
import os
import re
import shutil
import sys

from helpers import REPO
from helpers import TINY_SEG_SELFTRAIN_GIN
from helpers import run_train
from helpers import sigkill_when
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TINY_PIPELINE = os.path.join(REPO, 'tests', 'testdata', 'tiny_selftrain.gin')


def _args(model_dir):
  return [f'--gin_file={TINY_PIPELINE}', f'--model_dir={model_dir}']


@pytest.fixture(scope='module')
def resumed(data_dir, tmp_path_factory):
  """(model_dir, result): a pipeline SIGKILLed after its export, rerun."""
  model_dir = str(tmp_path_factory.mktemp('pipeline') / 'st')
  env = dict(os.environ, SELFTRAIN_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL='2')
  manifest = os.path.join(model_dir, 'round1', 'pseudo_labels', 'manifest.json')
  sigkill_when(
    [sys.executable, '-m', 'official_selftrain.train', *_args(model_dir)],
    lambda: os.path.exists(manifest),
    env,
    'pipeline',
  )
  assert not os.path.exists(os.path.join(model_dir, 'summary.json'))
  result = run_train(_args(model_dir), data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir, result


def _summary(model_dir):
  with open(os.path.join(model_dir, 'summary.json')) as f:
    return json.load(f)


def test_killed_pipeline_resumes_the_unfinished_stages(resumed):
  _, result = resumed
  assert '[pipeline] teacher: complete' in result.stderr
  assert '[pipeline] pseudo labels: complete' in result.stderr
  assert 'round 1 student: training 4 steps' in result.stderr
  assert 'control (teacher + same steps, human labels): training 4' in (
    result.stderr
  )
  assert 'supervised from scratch, 10 steps: training 10 steps' in (
    result.stderr
  )
  assert 'student - best supervised' in result.stdout


def test_summary_reports_every_arm(resumed):
  summary = _summary(resumed[0])
  arms = ('teacher', 'supervised_same_steps', 'supervised_total_steps')
  for arm in arms + ('student',):
    assert set(summary[arm]) >= {'AP', 'AP50', 'step'}, arm
  assert summary['teacher']['step'] == 6
  # From scratch in one schedule of the teacher's and the student's steps.
  assert summary['supervised_total_steps']['step'] == 6 + 4
  assert summary['total_steps'] == 6 + 4
  assert (
    summary['student']['step'] == summary['supervised_same_steps']['step'] == 4
  )
  assert summary['pseudo_labels']['images_written'] == 24
  assert summary['pseudo_labels']['read_threshold'] == 0.5
  # Each trained stage records the time and steps of the run that
  # completed it (the teacher's in the first, killed run).
  for arm in arms + ('student',):
    stage_time = summary[arm]['stage_time']
    assert stage_time['wall_seconds'] > 0, arm
    assert 0 < stage_time['steps_trained'] <= summary[arm]['step'], arm


def test_every_arm_is_also_scored_on_the_test_split(resumed):
  """Val selects, test reports: each arm's final checkpoint is evaluated
  once on the test split, and the student's gain is taken there."""
  model_dir = resumed[0]
  summary = _summary(model_dir)
  for arm, folder in (
    ('teacher', 'teacher'),
    ('supervised_same_steps', 'round1/supervised_same_steps'),
    ('supervised_total_steps', 'round1/supervised_total_steps'),
    ('student', 'round1/student'),
  ):
    assert set(summary[arm]['test']) >= {'AP', 'AP50', 'step'}, arm
    with open(os.path.join(model_dir, folder, 'test_results.json')) as f:
      assert [r['step'] for r in json.load(f)] == [summary[arm]['step']]
  gain = summary['gain']
  assert gain['split'] == 'test'
  best = max(
    summary[a]['test']['AP']
    for a in ('teacher', 'supervised_same_steps', 'supervised_total_steps')
  )
  assert gain['student_minus_best_AP'] == pytest.approx(
    summary['student']['test']['AP'] - best
  )
  assert 'AP (test; best: ' in resumed[1].stdout


def test_control_is_the_student_run_without_pseudo_labels(resumed):
  model_dir = resumed[0]
  path = os.path.join(model_dir, 'round1', 'supervised_same_steps')
  with open(os.path.join(path, 'params.yaml')) as f:
    task = yaml.safe_load(f)['task']
  student_only = {
    'pseudo_score_threshold',
    'pseudo_ignore_floor',
    'pseudo_soft_floor',
    'pseudo_background_weight',
    'pseudo_box_weight',
    'alpha',
    'ema_decay',
    'loss_normalization',
  }
  assert not student_only & set(task)
  assert 'pseudo_label_data' not in task['train_data']
  assert task['train_data']['global_batch_size'] == 8
  assert task['init_checkpoint'] == f'{model_dir}/teacher'


def test_student_progress_line_shows_rates_and_eta(resumed):
  """After its first loop, each student log line has steps/s, images/s and
  an ETA, as the teacher's has."""
  lines = [
    line
    for line in resumed[1].stderr.splitlines()
    if re.search(r'student: \d+/4 steps', line)
  ]
  assert len(lines) == 2, lines
  assert re.search(r'steps/s \| [\d.]+ images/s \|.*\| ETA ', lines[-1])


def test_finished_pipeline_redoes_nothing(resumed, data_dir):
  again = run_train(_args(resumed[0]), data_dir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count(': complete in ') == 5


def test_changed_export_settings_do_not_reuse_the_labels(resumed, data_dir):
  """The score floor and NMS are baked into detection shards: a rerun that
  asks for others stops, naming them, and loses nothing; the same settings
  (the teacher's own NMS spelled out) are reused. (In the run's own dir: the
  manifest names its teacher's path, so a copy would relabel.)"""
  model_dir = resumed[0]
  before = _summary(model_dir)
  floor = '--gin_param=self_training_pipeline.export_kwargs = ' + (
    "{'num_shards': 2, 'batch_size': 8, 'export_floor': 0.2}"
  )
  rerun = run_train(_args(model_dir) + [floor], data_dir)
  assert rerun.returncode != 0
  assert "'export_floor': 0.2" in rerun.stderr
  assert 'self_training_pipeline.export_kwargs' in rerun.stderr
  assert _summary(model_dir) == before
  same = '--gin_param=self_training_pipeline.export_kwargs = ' + (
    "{'num_shards': 2, 'export_floor': 0.0, 'nms_iou_threshold': 0.5}"
  )
  again = run_train(_args(model_dir) + [same], data_dir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert '[pipeline] pseudo labels: complete' in again.stderr


def test_stage_killed_before_final_eval_is_evaluated(
  resumed, data_dir, tmp_path
):
  """Killed after its last checkpoint but before its final evaluation: the
  stage is evaluated, not retrained, and the summary is complete again."""
  model_dir = str(tmp_path / 'copy')
  shutil.copytree(resumed[0], model_dir)
  os.remove(os.path.join(model_dir, 'round1', 'student', 'eval_results.json'))
  evaluated = run_train(_args(model_dir), data_dir)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert 'round 1 student: trained, evaluating' in evaluated.stderr
  assert _summary(model_dir)['student']['step'] == 4


def test_two_rounds_the_student_teaches_the_next_round(data_dir, tmp_path):
  model_dir = str(tmp_path / 'st2')
  result = run_train(
    _args(model_dir)
    + [
      '--gin_param=self_training_pipeline.rounds = 2',
      '--gin_param=self_training_pipeline.control = False',
      '--gin_param=self_training_experiment.pseudo_score_threshold = 0.3',
    ],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  summary = _summary(model_dir)
  assert len(summary['rounds']) == 2
  second = summary['rounds'][1]
  assert second['supervised_same_steps'] is None
  # Round 2's teacher is round 1's student, and it labelled round 2's pool.
  assert second['teacher'] == summary['rounds'][0]['student']
  with open(
    os.path.join(model_dir, 'round2', 'pseudo_labels', 'manifest.json')
  ) as f:
    manifest = json.load(f)
  assert manifest['teacher_dir'] == os.path.join(model_dir, 'round1', 'student')
  assert manifest['teacher_step'] == 4
  # The all-steps baseline grows with the rounds: 6 + 4, then 6 + 4 + 4.
  assert summary['rounds'][0]['supervised_total_steps']['step'] == 10
  assert second['supervised_total_steps']['step'] == 14
  # Pseudo-label statistics at the threshold the student reads them with.
  for done in summary['rounds']:
    assert done['pseudo_labels']['read_threshold'] == 0.3


def test_segmentation_runs_through_the_same_pipeline(data_dir, tmp_path):
  model_dir = str(tmp_path / 'seg')
  result = run_train(
    [f'--gin_file={TINY_SEG_SELFTRAIN_GIN}', f'--model_dir={model_dir}'],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  summary = _summary(model_dir)
  for arm in ('teacher', 'student', 'supervised_same_steps'):
    assert set(summary[arm]) >= {'mIoU', 'step'}, arm
    assert 0.0 <= summary[arm]['test']['mIoU'] <= 1.0, arm
  gain = summary['gain']
  assert gain['split'] == 'test'
  best = max(
    summary[a]['test']['mIoU'] for a in ('teacher', 'supervised_same_steps')
  )
  assert gain['student_minus_best_mIoU'] == pytest.approx(
    summary['student']['test']['mIoU'] - best
  )
  labels = summary['pseudo_labels']
  assert labels['images_written'] == 12 and labels['scales'] == [0.75, 1.0]
  assert 0.0 <= labels['ignored_pixel_fraction'] <= 1.0
  assert 0.0 <= labels['pixel_accuracy'] <= 1.0
  assert 0.0 <= labels['pixel_miou'] <= 1.0
  assert 0.0 <= labels['foreground_labelled_fraction'] <= 1.0
  assert 'test mIoU' in result.stdout
  # The threshold is baked into the maps: asking for another one does not
  # silently reuse them, and nothing written is lost.
  rerun = run_train(
    [
      f'--gin_file={TINY_SEG_SELFTRAIN_GIN}',
      f'--model_dir={model_dir}',
      '--gin_param=self_training_experiment.pseudo_score_threshold=0.3',
    ],
    data_dir,
  )
  assert rerun.returncode != 0
  assert 'pseudo_score_threshold' in rerun.stderr
  assert "'pixel_threshold': 0.3" in rerun.stderr
  assert _summary(model_dir) == summary
  with open(os.path.join(model_dir, 'round1', 'student', 'params.yaml')) as f:
    task = yaml.safe_load(f)['task']
  assert task['train_data']['pseudo_label_data']['input_path'].endswith(
    'pseudo-*.tfrecord'
  )


def _task_params(stage_dir):
  with open(os.path.join(stage_dir, 'params.yaml')) as f:
    return yaml.safe_load(f)['task']


def test_teacher_warm_start_stages_start_the_teacher(data_dir, tmp_path):
  """A three-stage teacher: the warm start stages train in turn, each and
  the teacher restoring all of the previous one's weights, and their steps
  count in the all-steps arm's."""
  model_dir = str(tmp_path / 'warm')
  result = run_train(
    _args(model_dir)
    + [
      '--gin_param=self_training_pipeline.teacher_warm_start = '
      '[@warm_start/detection_experiment(), @warm_start2/detection_experiment()]',
      '--gin_param=warm_start/detection_experiment.train_steps = 4',
      "--gin_param=warm_start/detection_experiment.policy = 'S1'",
      '--gin_param=warm_start2/detection_experiment.train_steps = 2',
      "--gin_param=detection_experiment.policy = 'S4'",
    ],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  summary = _summary(model_dir)
  assert summary['teacher_warm_start']['step'] == 4
  assert summary['teacher_warm_start_2']['step'] == 2
  warm_dirs = [
    os.path.join(model_dir, name)
    for name in ('teacher_warm_start', 'teacher_warm_start_2')
  ]
  warm_task = _task_params(warm_dirs[0])
  assert not warm_task['init_checkpoint']
  assert warm_task['train_data']['parser']['aug_type'] is None  # S1
  teacher_dir = os.path.join(model_dir, 'teacher')
  for stage_dir, previous in ((warm_dirs[1], 0), (teacher_dir, 1)):
    task = _task_params(stage_dir)
    assert task['init_checkpoint'] == warm_dirs[previous]
    assert task['init_checkpoint_modules'] == 'all'
    assert task['train_data']['parser']['aug_type']['type'] == 'randaug'  # S4
    with open(os.path.join(stage_dir, 'init_restore.json')) as f:
      report = json.load(f)
    step = (4, 2)[previous]
    assert report['checkpoint'].startswith(
      os.path.join(warm_dirs[previous], f'ckpt-{step}')
    )
    assert report['counts']['restored'] > 0
    assert report['left_at_init'] == []
  # warm starts 4 + 2, teacher 6, student 4.
  assert summary['supervised_total_steps']['step'] == 16
