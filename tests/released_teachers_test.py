"""Released teachers: a pipeline's teacher written out, and a pipeline that
starts from it instead of training one (`make demo` does, from the bundled
release)."""

import json
import os
import shutil
import subprocess
import sys

import gin
from helpers import REPO
from helpers import run_train
import pytest
import tensorflow as tf

from official_selftrain import cli
from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain import released_teachers

TINY_PIPELINE = os.path.join(REPO, 'tests', 'testdata', 'tiny_selftrain.gin')
# The arms a released teacher does not change, left out for time.
ONLY_STUDENT = (
  'self_training_pipeline.control = False',
  'self_training_pipeline.supervised_total_steps = False',
)


def _args(model_dir, *params):
  return [
    f'--gin_file={TINY_PIPELINE}',
    f'--model_dir={model_dir}',
    *(f'--gin_param={p}' for p in ONLY_STUDENT + params),
  ]


@pytest.fixture(scope='module')
def release(data_dir, tmp_path_factory):
  """(pipeline dir, release dir): a tiny pipeline run, its teacher released."""
  root = tmp_path_factory.mktemp('released')
  model_dir, out = str(root / 'trained'), str(root / 'release')
  result = run_train(_args(model_dir), data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  tool = subprocess.run(
    [
      sys.executable,
      '-m',
      'official_selftrain.tools.release_teacher',
      *_args(model_dir),
      f'--out={out}',
    ],
    cwd=REPO,
    env=dict(os.environ, SELFTRAIN_DATA_DIR=data_dir),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert tool.returncode == 0, tool.stderr[-3000:]
  return model_dir, out


def _teacher(params=()):
  """(teacher experiment, teacher steps) of the tiny pipeline + `params`."""
  config_files.parse([TINY_PIPELINE], list(ONLY_STUDENT) + list(params))
  job = cli.build_job()
  *_, (_, teacher) = job.teacher_stages('<model_dir>')
  return teacher, job.teacher_steps()


@pytest.mark.slow
@pytest.mark.e2e
def test_a_pipeline_starts_from_the_released_teacher(
  release, data_dir, tmp_path
):
  trained_dir, out = release
  with open(os.path.join(out, released_teachers.RELEASE)) as f:
    record = json.load(f)
  assert record['step'] == record['teacher_steps'] == 6
  assert record['checkpoint'] == 'ckpt-6'
  assert record['released']['commit']
  assert record['stage_times']['teacher']['steps_trained'] == 6
  model_dir = str(tmp_path / 'from_release')
  result = run_train(
    _args(model_dir, f"self_training_pipeline.teacher_checkpoint = '{out}'"),
    data_dir,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'[pipeline] teacher: the release at {out}' in result.stderr
  # Not trained here: evaluated, on val and test, from the release.
  assert '[pipeline] teacher: trained, evaluating' in result.stderr
  teacher_dir = os.path.join(model_dir, 'teacher')
  assert not os.path.exists(os.path.join(teacher_dir, 'stage_time.json'))
  assert tf.train.latest_checkpoint(teacher_dir).endswith('ckpt-6')
  with open(os.path.join(model_dir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['released_teacher']['path'] == out
  assert 'model' not in summary['released_teacher']
  # The same weights, evaluated again: the losses it was released with
  # (the tiny teacher's AP is 0; its losses tell its weights apart).
  for split, results in (('val', 'eval'), ('test', 'test')):
    with open(os.path.join(teacher_dir, f'{results}_results.json')) as f:
      measured = json.load(f)[-1]
    assert measured['validation_loss'] == pytest.approx(
      record['metrics'][split]['validation_loss'], rel=1e-5
    ), split
  assert summary['student']['step'] == 4
  assert summary['gain'] is not None
  # Run again: every stage complete, the release not installed twice.
  again = run_train(
    _args(model_dir, f"self_training_pipeline.teacher_checkpoint = '{out}'"),
    data_dir,
  )
  assert again.returncode == 0, again.stderr[-3000:]
  assert '[pipeline] teacher: complete' in again.stderr
  # Without the binding, the same dir is refused before anything trains: a
  # teacher trained there would not be its students' teacher.
  unbound = run_train(_args(model_dir), data_dir)
  assert unbound.returncode == 1
  assert 'holds a released teacher' in unbound.stderr
  assert not os.path.exists(os.path.join(model_dir, 'teacher_warm_start'))


@pytest.mark.slow
@pytest.mark.parametrize(
  'param, problem',
  [
    ('detection_experiment.train_steps = 8', 'trained 6 steps, this one'),
    ('shapes_det.num_train = 32', 'it trained on shapes_det_v'),
    ('retinanet_model.head_filters = 8', 'its model differs in head'),
  ],
)
def test_a_release_that_does_not_fit_is_refused(
  release, clear_gin, tmp_path, param, problem
):
  teacher, steps = _teacher([param])
  with pytest.raises(released_teachers.ReleasedTeacherError, match=problem):
    released_teachers.install(release[1], teacher, str(tmp_path), steps)
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_a_teacher_dir_with_another_teacher_is_kept(
  release, clear_gin, tmp_path
):
  teacher, steps = _teacher()
  teacher_dir = str(tmp_path / 'teacher')
  shutil.copytree(os.path.join(release[0], 'teacher'), teacher_dir)
  before = sorted(os.listdir(teacher_dir))
  with pytest.raises(released_teachers.ReleasedTeacherError, match='already'):
    released_teachers.install(release[1], teacher, teacher_dir, steps)
  assert sorted(os.listdir(teacher_dir)) == before


@pytest.mark.slow
def test_a_run_is_released_only_with_its_own_gin_and_final_evaluation(
  release, clear_gin, tmp_path
):
  """The record describes the gin given: a gin other than the run's, or a
  run without its final evaluation, is refused and nothing is written."""
  teacher_dir = os.path.join(release[0], 'teacher')
  out = str(tmp_path / 'out')
  teacher, steps = _teacher(['retinanet_model.head_filters = 8'])
  with pytest.raises(released_teachers.ReleasedTeacherError, match='head'):
    released_teachers.release(teacher_dir, out, teacher, steps, {})
  assert not os.path.exists(out)
  gin.clear_config()
  unevaluated = str(tmp_path / 'teacher')
  shutil.copytree(teacher_dir, unevaluated)
  os.remove(os.path.join(unevaluated, 'test_results.json'))
  teacher, steps = _teacher()
  with pytest.raises(
    released_teachers.ReleasedTeacherError, match='no test evaluation at step 6'
  ):
    released_teachers.release(unevaluated, out, teacher, steps, {})
  assert not os.path.exists(out)


def test_a_folder_without_a_release_is_named(clear_gin, tmp_path):
  teacher, steps = _teacher()
  with pytest.raises(
    released_teachers.ReleasedTeacherError, match=f'{tmp_path}.*release.json'
  ):
    released_teachers.install(str(tmp_path), teacher, str(tmp_path), steps)


def test_the_bundled_release_fits_the_demo(clear_gin):
  """`make demo`'s teacher: its files are there, its step is the checkpoint's
  and it fits the demo's teacher (model, data, schedule)."""
  config_files.parse(['shapes_selftrain_demo.gin'], [])
  job = cli.build_job()
  path = released_teachers.resolve(job.teacher_checkpoint)
  record = released_teachers.read(path)
  *_, (_, teacher) = job.teacher_stages('<model_dir>')
  assert (
    released_teachers.mismatch(record, teacher, job.teacher_steps()) is None
  )
  reader = tf.train.load_checkpoint(os.path.join(path, record['checkpoint']))
  assert (
    reader.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE')
    == record['step']
    == 4000
  )
  assert record['teacher_steps'] == 12000
  assert record['metrics']['test']['AP'] > 0.4


def test_the_bundled_release_installs_into_a_relative_model_dir(
  clear_gin, tmp_path, monkeypatch
):
  """`make demo`'s model dir is relative (runs/...): the installed teacher's
  checkpoint state names its checkpoint relative to its folder, and the
  checkpoint reads from there."""
  config_files.parse(['shapes_selftrain_demo.gin'], [])
  job = cli.build_job()
  *_, (_, teacher) = job.teacher_stages('<model_dir>')
  monkeypatch.chdir(tmp_path)
  teacher_dir = os.path.join('runs', 'demo', 'teacher')
  record = released_teachers.install(
    job.teacher_checkpoint, teacher, teacher_dir, job.teacher_steps()
  )
  latest = tf.train.latest_checkpoint(teacher_dir)
  assert latest == os.path.join(teacher_dir, 'ckpt-4000')
  reader = tf.train.load_checkpoint(latest)
  assert reader.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE') == 4000
  assert os.path.exists(os.path.join(teacher_dir, 'params.yaml'))
  assert record['path'].endswith(
    os.path.join('released', 'shapes_demo_teacher')
  )
