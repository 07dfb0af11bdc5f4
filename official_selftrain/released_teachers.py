"""Released teachers: a trained teacher a self-training pipeline starts from.

The paper's authors released their checkpoints; a run of this library can
release its teacher the same way (`tools/release_teacher.py`), and a pipeline
can start from one (`self_training_pipeline.teacher_checkpoint`). Its warm
start and teacher stages are then not trained: the released checkpoint is
copied into `model_dir/teacher` (with this run's `params.yaml` and
`config.gin`), evaluated there like a teacher just trained
(val and test split, in this run), and every later stage (pseudo labels,
student, control) runs as usual from it.

A release is a folder: the teacher's last training checkpoint (weights,
optimizer slots, step), `params.yaml` and `config.gin` of the run that trained
it, and `release.json`: its step, the pipeline's teacher steps (warm start
stages included), the model config, the human-labelled data it trained on, its
AP and training time, and when, where and from which commit it was released. A
pipeline refuses a release whose model, data or schedule differs from the
teacher it binds, naming what differs: a student of a teacher trained on
other data would be compared with a control that is not its own.
"""

import json
import os
from typing import Any
from typing import Dict
from typing import Optional

import tensorflow as tf
import yaml

from official_selftrain import progress
from official_selftrain import train_lib
from official_selftrain.configs import experiment as experiment_lib

RELEASE = 'release.json'
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ReleasedTeacherError(Exception):
  """A released teacher that is missing or does not fit the pipeline."""


def resolve(path: str) -> str:
  """`path` as given if it exists, else relative to the package (where the
  bundled releases live, e.g. 'released/shapes_demo_teacher')."""
  if os.path.isabs(path) or tf.io.gfile.exists(path):
    return path
  bundled = os.path.join(_PACKAGE_DIR, path)
  return bundled if tf.io.gfile.exists(bundled) else path


def train_data_id(experiment: experiment_lib.Experiment) -> str:
  """The human-labelled training data, as the two folders above its file
  pattern (for Shapes-Det: generator version, seed, size and spec hash, then
  split and size): the same id means the same generated records."""
  return _data_id(experiment.config.task.train_data.input_path)


def _data_id(pattern: Any) -> str:
  """The two folders above a file pattern."""
  return '/'.join(os.path.dirname(str(pattern)).split('/')[-2:])


def _json_roundtrip(value: Any) -> Any:
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def model_config(experiment: experiment_lib.Experiment) -> Dict[str, Any]:
  return _json_roundtrip(experiment.config.task.model.as_dict())


def _checkpoint_files(checkpoint: str):
  """The files of one checkpoint prefix (its index and data shards)."""
  return sorted(tf.io.gfile.glob(checkpoint + '.*'))


def release(
  teacher_dir: str,
  out_dir: str,
  experiment: experiment_lib.Experiment,
  teacher_steps: int,
  released: Dict[str, Any],
) -> Dict[str, Any]:
  """Writes the teacher stage in `teacher_dir` as a release in `out_dir`.

  Args:
    teacher_dir: a pipeline's `model_dir/teacher`, trained and evaluated.
    out_dir: the release folder (created; files of an earlier release there
      are replaced).
    experiment: the teacher experiment as the pipeline binds it.
    teacher_steps: the pipeline's teacher steps, warm start stages included.
    released: when, where and from which commit it is released, with the
      gin files and bindings of its run (studies.provenance).

  Returns:
    The release record (also `out_dir/release.json`).
  """
  latest = tf.train.latest_checkpoint(teacher_dir)
  steps = experiment.config.trainer.train_steps
  if latest is None or int(latest.rsplit('-', 1)[1]) != steps:
    raise ReleasedTeacherError(
      f'{teacher_dir} holds no teacher trained to its {steps} steps '
      f'(latest checkpoint: {latest}); run the pipeline first.'
    )
  _check_trained_as_bound(teacher_dir, experiment)
  metrics = _released_metrics(teacher_dir, experiment, steps)
  tf.io.gfile.makedirs(out_dir)
  # The record goes first and comes back last: a release killed half way
  # has none, and no pipeline takes it.
  record_path = os.path.join(out_dir, RELEASE)
  if tf.io.gfile.exists(record_path):
    tf.io.gfile.remove(record_path)
  for stale in tf.io.gfile.glob(os.path.join(out_dir, 'ckpt-*')):
    tf.io.gfile.remove(stale)
  for path in _checkpoint_files(latest) + [
    os.path.join(teacher_dir, name) for name in ('params.yaml', 'config.gin')
  ]:
    target = os.path.join(out_dir, os.path.basename(path))
    tf.io.gfile.copy(path, target, overwrite=True)
  record = {
    'checkpoint': os.path.basename(latest),
    'step': steps,
    'teacher_steps': teacher_steps,
    'train_data': train_data_id(experiment),
    'model': model_config(experiment),
    'metrics': metrics,
    'released': released,
    'trained_in': teacher_dir,
    'stage_times': _stage_times(os.path.dirname(teacher_dir)),
  }
  with tf.io.gfile.GFile(record_path + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  tf.io.gfile.rename(record_path + '.tmp', record_path, overwrite=True)
  return record


def _check_trained_as_bound(teacher_dir: str, experiment) -> None:
  """The run in `teacher_dir` trained the model on the data that the gin
  binds (its own params.yaml says so): the release's record describes the
  gin, so a release made with another gin would vouch for what it is not."""
  path = os.path.join(teacher_dir, 'params.yaml')
  if not tf.io.gfile.exists(path):
    raise ReleasedTeacherError(
      f'{path} not found: {teacher_dir} was not trained by this library.'
    )
  with tf.io.gfile.GFile(path) as f:
    task = yaml.safe_load(f)['task']
  trained_data = _data_id(task['train_data']['input_path'])
  differing = _differing_keys(
    _json_roundtrip(task['model']), model_config(experiment)
  )
  if differing or trained_data != train_data_id(experiment):
    raise ReleasedTeacherError(
      f'{teacher_dir} was trained on {trained_data} with a model that '
      f'differs in {differing or "nothing"} from the gin given (data '
      f'{train_data_id(experiment)}): release it with the gin files and '
      'bindings of its run.'
    )


def _differing_keys(a: Dict[str, Any], b: Dict[str, Any]):
  return sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))


def _stage_times(model_dir: str) -> Dict[str, Any]:
  """{stage dir: its stage_time.json} of the pipeline run's teacher stages
  (warm starts and teacher): what training it took."""
  times = {}
  for path in sorted(
    tf.io.gfile.glob(os.path.join(model_dir, '*', 'stage_time.json'))
  ):
    with tf.io.gfile.GFile(path) as f:
      times[os.path.basename(os.path.dirname(path))] = json.load(f)
  return times


def _released_metrics(teacher_dir, experiment, steps) -> Dict[str, Any]:
  """The teacher's val (and test) evaluation at its final step."""
  files = {'val': progress.EVAL_RESULTS}
  if experiment.test_split is not None:
    files['test'] = experiment.on_test_split().results_file
  metrics = {}
  for split, filename in files.items():
    metrics[split] = progress.ResultsWriter(
      teacher_dir, filename=filename
    ).last_recorded()
    if metrics[split].get('step') != steps:
      raise ReleasedTeacherError(
        f'{teacher_dir}: no {split} evaluation at step {steps} in '
        f'{filename}; run the pipeline again to finish its teacher stage.'
      )
  return _json_roundtrip(metrics)


def read(path: str) -> Dict[str, Any]:
  """The release record of the release folder `path`."""
  record_path = os.path.join(path, RELEASE)
  if not tf.io.gfile.exists(record_path):
    raise ReleasedTeacherError(
      f'self_training_pipeline.teacher_checkpoint = {path!r}: no {RELEASE} '
      'there; a release is written by tools/release_teacher.py.'
    )
  with tf.io.gfile.GFile(record_path) as f:
    return json.load(f)


def mismatch(record, experiment, teacher_steps) -> Optional[str]:
  """What differs between the release and the teacher the pipeline binds."""
  if record['step'] != experiment.config.trainer.train_steps:
    return (
      f'its teacher stage trained {record["step"]} steps, this one '
      f'trains {experiment.config.trainer.train_steps}'
    )
  if record['teacher_steps'] != teacher_steps:
    return (
      f'its teacher trained {record["teacher_steps"]} steps in all (warm '
      f'start stages included), this one {teacher_steps}'
    )
  if record['train_data'] != train_data_id(experiment):
    return (
      f'it trained on {record["train_data"]}, this teacher trains on '
      f'{train_data_id(experiment)}'
    )
  differing = _differing_keys(record['model'], model_config(experiment))
  if differing:
    return f'its model differs in {", ".join(differing)}'
  return None


def install(
  path: str,
  experiment: experiment_lib.Experiment,
  teacher_dir: str,
  teacher_steps: int,
) -> Dict[str, Any]:
  """Makes the release at `path` the trained teacher in `teacher_dir`.

  Args:
    path: the release folder (see `resolve`).
    experiment: the teacher experiment the pipeline binds.
    teacher_dir: the pipeline's `model_dir/teacher`.
    teacher_steps: the pipeline's teacher steps, warm start stages included.

  Returns:
    The release record, with `path` added.

  Raises:
    ReleasedTeacherError: no release there, one that does not fit the
      teacher, or a teacher dir that already holds another teacher.
  """
  path = resolve(path)
  record = read(path)
  problem = mismatch(record, experiment, teacher_steps)
  if problem:
    raise ReleasedTeacherError(
      f'self_training_pipeline.teacher_checkpoint = {path!r} does not fit '
      f'this pipeline: {problem}.'
    )
  installed = os.path.join(teacher_dir, RELEASE)
  same = False
  if tf.io.gfile.exists(installed):
    with tf.io.gfile.GFile(installed) as f:
      same = json.load(f) == record
  if tf.train.latest_checkpoint(teacher_dir):
    if same:
      return {**record, 'path': path}
    raise ReleasedTeacherError(
      f'{teacher_dir} already holds a teacher that is not the release at '
      f'{path}; use another --model_dir.'
    )
  # The record first, the checkpoint state file last: a copy killed half
  # way is redone on the next run.
  tf.io.gfile.makedirs(teacher_dir)
  tf.io.gfile.copy(os.path.join(path, RELEASE), installed, overwrite=True)
  # This run's configs (its data paths), as a trained teacher's dir has:
  # the labeller builds the teacher from them.
  train_lib.write_configs(experiment.config, teacher_dir)
  _copy_checkpoint(path, record['checkpoint'], teacher_dir)
  return {**record, 'path': path}


def _copy_checkpoint(path: str, checkpoint: str, teacher_dir: str) -> None:
  files = _checkpoint_files(os.path.join(path, checkpoint))
  if not any(name.endswith('.index') for name in files):
    raise ReleasedTeacherError(
      f'{path}: {RELEASE} names {checkpoint}, whose files are not there.'
    )
  tf.io.gfile.makedirs(teacher_dir)
  for name in files:
    target = os.path.join(teacher_dir, os.path.basename(name))
    tf.io.gfile.copy(name, target, overwrite=True)
  # The checkpoint state file Orbit's CheckpointManager reads, with the path
  # relative to its folder, as the manager writes it (a run dir stays
  # movable). TF's writer of this file is deprecated and resolves a relative
  # path against the working directory.
  with tf.io.gfile.GFile(os.path.join(teacher_dir, 'checkpoint'), 'w') as f:
    f.write(
      f'model_checkpoint_path: "{checkpoint}"\n'
      f'all_model_checkpoint_paths: "{checkpoint}"\n'
    )
