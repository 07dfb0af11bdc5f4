"""The self-training pipeline end to end: stages, fair control, resumption."""

import json
import os
import sys

from helpers import REPO
from helpers import run_train
from helpers import sigkill_when
import pytest

TINY_PIPELINE = os.path.join(REPO, 'tests', 'testdata', 'tiny_selftrain.gin')


@pytest.mark.slow
def test_killed_pipeline_resumes_and_writes_summary(data_dir, tmp_path):
  model_dir = str(tmp_path / 'st')
  args = [f'--gin_file={TINY_PIPELINE}', f'--model_dir={model_dir}']
  env = dict(os.environ, SELFTRAIN_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL='2')
  manifest = os.path.join(model_dir, 'round1', 'pseudo_labels', 'manifest.json')
  sigkill_when(
    [sys.executable, '-m', 'official_selftrain.train', *args],
    lambda: os.path.exists(manifest),
    env,
    'pipeline',
  )
  assert not os.path.exists(os.path.join(model_dir, 'summary.json'))

  resumed = run_train(args, data_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert '[pipeline] teacher: complete' in resumed.stderr
  assert '[pipeline] pseudo labels: complete' in resumed.stderr
  assert 'round 1 student: training 4 steps' in resumed.stderr
  assert 'control (teacher + same steps, human labels): training 4' in (
    resumed.stderr
  )
  assert 'student - max(teacher, control)' in resumed.stdout
  with open(os.path.join(model_dir, 'summary.json')) as f:
    summary = json.load(f)
  for arm in ('teacher', 'supervised_same_steps', 'student'):
    assert set(summary[arm]) >= {'AP', 'AP50', 'step'}, arm
  assert summary['teacher']['step'] == 6
  assert (
    summary['student']['step'] == summary['supervised_same_steps']['step'] == 4
  )
  assert summary['pseudo_labels']['images_written'] == 24
  # The control is the student's run minus the pseudo labels.
  with open(
    os.path.join(model_dir, 'round1', 'supervised_same_steps', 'params.yaml')
  ) as f:
    control = f.read()
  assert 'pseudo_label_data' not in control
  assert 'global_batch_size: 8' in control
  assert f'init_checkpoint: {model_dir}/teacher' in control

  again = run_train(args, data_dir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count(': complete in ') == 4  # nothing is redone

  # Killed after its last checkpoint but before its final evaluation: the
  # stage is evaluated, not retrained, and the summary is complete again.
  os.remove(os.path.join(model_dir, 'round1', 'student', 'eval_results.json'))
  evaluated = run_train(args, data_dir)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert 'round 1 student: trained, evaluating' in evaluated.stderr
  with open(os.path.join(model_dir, 'summary.json')) as f:
    assert json.load(f)['student']['step'] == 4


@pytest.mark.slow
def test_two_rounds_the_student_teaches_the_next_round(data_dir, tmp_path):
  model_dir = str(tmp_path / 'st2')
  result = run_train(
    [
      f'--gin_file={TINY_PIPELINE}',
      f'--model_dir={model_dir}',
      '--gin_param=self_training_pipeline.rounds = 2',
      '--gin_param=self_training_pipeline.control = False',
    ],
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(model_dir, 'summary.json')) as f:
    summary = json.load(f)
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
