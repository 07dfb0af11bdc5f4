"""Self-training as one resumable pipeline (PAPER.md, "The recipe").

  teacher (human labels) -> pseudo labels (teacher on the unlabelled pool)
  -> student (human + pseudo, Loss Normalization) and, as a fair control, the
  teacher trained on for as many steps on human labels only
  -> teacher, control and student evaluated on the same val set.

Each stage is skipped when its output is complete (a training run at its final
step with its final evaluation written; a pseudo-label export whose manifest
says complete), so a killed pipeline, run again, resumes where it stopped. With
`rounds` > 1 the student becomes the next round's teacher (Noisy Student).
The "when" lives here; the "how" is in the tasks and the exporter.
"""

import dataclasses
import inspect
import json
import os
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from absl import logging
import gin
import tensorflow as tf

from official_selftrain import progress
from official_selftrain import released_teachers
from official_selftrain import stage_names
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.configs import self_training as self_training_configs
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import hosts
from official_selftrain.pseudo_labels import manifest as manifest_lib
from official_selftrain.pseudo_labels import shard_files

SUMMARY = 'summary.json'
# In a stage's dir: wall time and steps of the run that completed its training
# (a resumed stage counts only its last part, which `steps_trained` shows).
STAGE_TIME = 'stage_time.json'
MIOU = 'mIoU'  # a segmentation arm's metric, in place of a detector's AP


def primary_metric(metrics: Optional[Dict[str, Any]]) -> str:
  """The metric arms are compared on: COCO AP, or mIoU for segmentation."""
  return MIOU if metrics and MIOU in metrics else 'AP'


@dataclasses.dataclass
class Pipeline:
  """A self-training pipeline, as bound in gin; `run` executes it."""

  teacher: experiment_lib.Experiment
  student: Callable[..., experiment_lib.Experiment]
  pool: Any
  rounds: int = 1
  control: bool = True
  supervised_total_steps: bool = True
  export_kwargs: Optional[Dict[str, Any]] = None
  teacher_warm_start: Any = None
  teacher_checkpoint: Optional[str] = None

  def warm_start_stages(self) -> List[experiment_lib.Experiment]:
    """The teacher's warm start stages in training order (none, one, or a
    list bound in gin), each as bound (before it is warm started)."""
    stages = self.teacher_warm_start
    if stages is None:
      return []
    return list(stages) if isinstance(stages, (list, tuple)) else [stages]

  def teacher_steps(self) -> int:
    """The teacher's steps, its warm start stages' included."""
    return sum(
      stage.config.trainer.train_steps
      for stage in [*self.warm_start_stages(), self.teacher]
    )

  def teacher_stages(
    self, model_dir: str
  ) -> List[Tuple[str, experiment_lib.Experiment]]:
    """(dir name, experiment) of the warm start stages and then the
    teacher, in training order; each stage after the first starts from all
    of the previous one's weights (its dir under `model_dir`)."""
    stages = self.warm_start_stages()
    names = [stage_names.warm_start_name(i) for i in range(len(stages))] + [
      'teacher'
    ]
    chain = []
    for index, (name, stage) in enumerate(zip(names, [*stages, self.teacher])):
      if index:
        stage = self_training_configs.warm_started(
          stage, os.path.join(model_dir, names[index - 1])
        )
      chain.append((name, stage))
    return chain

  def configs(self) -> Dict[str, Any]:
    """Every round-1 stage's config, with placeholder dirs."""
    student = self.student(
      teacher_dir='<model_dir>/teacher',
      pseudo_label_pattern=shard_files.shard_glob(
        '<model_dir>/round1/pseudo_labels'
      ),
    )
    configs = {
      name: stage.config for name, stage in self.teacher_stages('<model_dir>')
    }
    # The teacher first (tools read the data config from the first one).
    configs = {'teacher': configs.pop('teacher'), **configs}
    configs['student'] = student.config
    steps = self.teacher_steps() + student.config.trainer.train_steps
    for label, _, experiment in self.baselines(student, steps):
      configs[label] = experiment.config
    return configs

  def baselines(self, student, total_steps: int):
    """(label, arm, experiment) of each supervised arm a student is
    compared with, as bound (control, all-steps); `total_steps` is the
    teacher's plus every student's steps so far."""
    arms = []
    if self.control:
      arms.append(
        (
          'control (teacher + same steps, human labels)',
          'supervised_same_steps',
          self_training_configs.supervised_control(student),
        )
      )
    if self.supervised_total_steps:
      arms.append(
        (
          f'supervised from scratch, {total_steps} steps',
          'supervised_total_steps',
          self_training_configs.supervised_from_scratch(
            self.teacher, student, total_steps
          ),
        )
      )
    return arms

  def run(
    self,
    mode: str,
    model_dir: str,
    run_experiment: experiment_lib.RunExperiment,
  ) -> Dict[str, Any]:
    """Runs every stage (see `run`); only --mode=train_and_eval."""
    experiment_lib.require_all_stages(mode, 'A self-training pipeline')
    return run(self, model_dir, run_experiment)

  def prepare(self) -> None:
    """Makes the human-labelled data and the unlabelled pool exist."""
    self.teacher.prepare()
    if hasattr(self.pool, 'prepare'):
      self.pool.prepare()


@gin.configurable
def self_training_pipeline(
  teacher: experiment_lib.Experiment = gin.REQUIRED,
  student: Callable[..., Any] = gin.REQUIRED,
  pool: Any = gin.REQUIRED,
  rounds: int = 1,
  control: bool = True,
  supervised_total_steps: bool = True,
  export_kwargs: Optional[Dict[str, Any]] = None,
  teacher_warm_start: Any = None,
  teacher_checkpoint: Optional[str] = None,
) -> Pipeline:
  """Binds a pipeline.

  Args:
    teacher: the supervised teacher experiment (e.g. @detection_experiment()).
    student: the student builder, called with the teacher dir and pseudo-label
      pattern (e.g. @self_training_experiment, no parentheses).
    pool: the unlabelled pool (e.g. @shapes_det_pool()).
    rounds: self-training rounds; each student teaches the next round.
    control: also train the fair control (the teacher trained on for the
      student's steps, human labels only, same human batch).
    supervised_total_steps: also train the supervised model from scratch in
      one schedule of the teacher's plus the student's steps (all rounds'
      so far), same human batch: the best supervised model within the
      student's compute.
    export_kwargs: extra `export_pseudo_labels` arguments (thresholds, NMS).
    teacher_warm_start: a supervised experiment trained first (e.g. the
      teacher's run under Augment-S1, scoped in gin), or a list of them
      trained in turn, each from all of the previous one's weights; the
      teacher then starts from all of the last one's weights. Their steps
      count in the teacher's for the all-steps arm. Stage k's model dir is
      `teacher_warm_start` (k = 1) or `teacher_warm_start_k`.
    teacher_checkpoint: a released teacher (a folder written by
      tools/release_teacher.py from a run of this same teacher, e.g.
      'released/shapes_demo_teacher'): its checkpoint becomes the teacher
      stage in place of training the warm start stages and the teacher;
      it is evaluated in this run. A release whose model, data or schedule
      differs from this teacher's is refused (released_teachers.py).

  Returns:
    Pipeline.
  """
  return Pipeline(
    teacher=teacher,
    student=student,
    pool=pool,
    rounds=rounds,
    control=control,
    supervised_total_steps=supervised_total_steps,
    export_kwargs=export_kwargs,
    teacher_warm_start=teacher_warm_start,
    teacher_checkpoint=teacher_checkpoint,
  )


def _checkpoint_step(model_dir: str) -> int:
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


def _evaluated_at(model_dir: str, step: int) -> bool:
  """Whether the run's last recorded evaluation is at `step` or later (a
  run is complete at its final step with that step's evaluation)."""
  metrics = progress.ResultsWriter(model_dir).last_recorded()
  return metrics.get('step', -1) >= step


def _final_metrics(
  model_dir: str, results_file: str = progress.EVAL_RESULTS
) -> Dict[str, float]:
  metrics = progress.ResultsWriter(
    model_dir, filename=results_file
  ).last_recorded()
  return {
    k: metrics[k]
    for k in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'accuracy', MIOU, 'step')
    if k in metrics
  }


def run_stage(
  name: str, experiment: experiment_lib.Experiment, model_dir: str, run_fn
) -> Dict[str, float]:
  """Trains and evaluates one arm unless it is already complete."""
  steps = experiment.config.trainer.train_steps
  first_step = _checkpoint_step(model_dir)
  if first_step >= steps and _evaluated_at(model_dir, steps):
    logging.info('[pipeline] %s: complete in %s, skipped.', name, model_dir)
  elif first_step >= steps:
    # Killed between its last checkpoint and its final evaluation.
    logging.info('[pipeline] %s: trained, evaluating in %s.', name, model_dir)
    run_fn(experiment, 'eval', model_dir)
  else:
    logging.info(
      '[pipeline] %s: training %d steps in %s.', name, steps, model_dir
    )
    start = time.monotonic()
    run_fn(experiment, 'train_and_eval', model_dir)
    _write_stage_time(
      model_dir,
      time.monotonic() - start,
      _checkpoint_step(model_dir) - first_step,
    )
  metrics = _final_metrics(model_dir)
  stage_time = _read_stage_time(model_dir)
  if stage_time:
    metrics['stage_time'] = stage_time
  test = _test_metrics(name, experiment, model_dir, run_fn, steps)
  if test is not None:
    metrics['test'] = test
  return metrics


def _write_stage_time(model_dir: str, seconds: float, steps: int) -> None:
  with tf.io.gfile.GFile(os.path.join(model_dir, STAGE_TIME), 'w') as f:
    json.dump({'wall_seconds': round(seconds, 1), 'steps_trained': steps}, f)


def _read_stage_time(model_dir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(model_dir, STAGE_TIME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _test_metrics(name, experiment, model_dir, run_fn, steps):
  """The final checkpoint on the test split (evaluated once, then read)."""
  if experiment.test_split is None:
    return None
  test = experiment.on_test_split()
  if _final_metrics(model_dir, test.results_file).get('step', -1) < steps:
    logging.info('[pipeline] %s: evaluating on the test split.', name)
    run_fn(test, 'eval', model_dir)
  return _final_metrics(model_dir, test.results_file)


ARMS = (
  ('teacher', 'teacher'),
  ('supervised_same_steps', 'control (same steps)'),
  ('supervised_total_steps', 'supervised (all steps)'),
  ('student', 'student'),
)
BASELINES = ('teacher', 'supervised_same_steps', 'supervised_total_steps')


def student_gain(round_summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """Student AP (mIoU) minus the best baseline's, on the test split if there
  is one (`student_minus_best_AP` / `student_minus_best_mIoU`).

  The baselines are the teacher, the control (the teacher trained on for
  the student's steps on human labels) and the supervised model trained from
  scratch for the teacher's and student's steps together.
  """
  split = 'test' if 'test' in (round_summary['student'] or {}) else 'val'
  key = primary_metric(round_summary['student'])

  def ap(arm):
    metrics = round_summary.get(arm) or {}
    metrics = metrics.get('test', {}) if split == 'test' else metrics
    return metrics.get(key)

  baselines = {arm: ap(arm) for arm in BASELINES if ap(arm) is not None}
  if not baselines or ap('student') is None:
    return None
  best = max(baselines, key=baselines.get)
  return {
    'split': split,
    'best_baseline': best,
    f'student_minus_best_{key}': ap('student') - baselines[best],
  }


def run(pipeline: Pipeline, model_dir: str, run_fn) -> Dict[str, Any]:
  """Runs every stage; writes and returns model_dir/summary.json.

  Args:
    pipeline: the bound pipeline.
    model_dir: root directory of all stages.
    run_fn: (experiment, mode, model_dir) -> metrics; trains / evaluates one
      experiment (the training entry's `run`).

  Returns:
    The summary: per round, teacher / control / student metrics and the
    pseudo-label statistics.
  """
  teacher_dir = os.path.join(model_dir, 'teacher')
  teacher_experiment, warm_start = _teacher(pipeline, model_dir, run_fn)
  teacher = run_stage('teacher', teacher_experiment, teacher_dir, run_fn)
  total_steps = pipeline.teacher_steps()
  rounds: List[Dict[str, Any]] = []
  for round_index in range(1, pipeline.rounds + 1):
    round_dir = os.path.join(model_dir, f'round{round_index}')
    pseudo_dir = os.path.join(round_dir, 'pseudo_labels')
    student_experiment = pipeline.student(
      teacher_dir=teacher_dir,
      pseudo_label_pattern=shard_files.shard_glob(pseudo_dir),
    )
    manifest = _pseudo_labels(
      pipeline,
      teacher_dir,
      pseudo_dir,
      student_experiment.config.task.pseudo_score_threshold,
      _strategy_of(run_fn),
    )
    total_steps += student_experiment.config.trainer.train_steps
    student_dir = os.path.join(round_dir, 'student')
    arms = {
      'teacher': teacher,
      'student': run_stage(
        f'round {round_index} student', student_experiment, student_dir, run_fn
      ),
    }
    arms['supervised_same_steps'] = arms['supervised_total_steps'] = None
    for label, arm, experiment in pipeline.baselines(
      student_experiment, total_steps
    ):
      arms[arm] = run_stage(
        f'round {round_index} {label}',
        experiment,
        os.path.join(round_dir, arm),
        run_fn,
      )
    arms['pseudo_labels'] = _manifest_summary(manifest)
    arms['gain'] = student_gain(arms)
    rounds.append(arms)
    teacher, teacher_dir = arms['student'], student_dir
  summary = dict(rounds[-1])
  summary['rounds'] = rounds
  summary.update(warm_start)
  # The teacher's (warm starts too) and every student's steps.
  summary['total_steps'] = total_steps
  with tf.io.gfile.GFile(os.path.join(model_dir, SUMMARY), 'w') as f:
    json.dump(summary, f, indent=1)
  print(format_table(rounds))
  return summary


def _teacher(pipeline: Pipeline, model_dir: str, run_fn):
  """(teacher experiment, {stage name: metrics} of its warm start stages),
  after training those stages in turn; with a released teacher bound, none
  is trained: the release is installed as the teacher stage, and the dict
  is {'released_teacher': its release record}."""
  *warm_starts, (_, teacher) = pipeline.teacher_stages(model_dir)
  if pipeline.teacher_checkpoint:
    record = released_teachers.install(
      pipeline.teacher_checkpoint,
      teacher,
      os.path.join(model_dir, 'teacher'),
      pipeline.teacher_steps(),
    )
    logging.info(
      '[pipeline] teacher: the release at %s (released %s, commit %s); its '
      'warm start stages are not trained.',
      record['path'],
      record['released'].get('date'),
      record['released'].get('commit'),
    )
    kept = {k: v for k, v in record.items() if k != 'model'}
    return teacher, {'released_teacher': kept}
  installed = os.path.join(model_dir, 'teacher', released_teachers.RELEASE)
  if tf.io.gfile.exists(installed):
    raise released_teachers.ReleasedTeacherError(
      f'{installed}: this model_dir holds a released teacher, and the gin '
      'binds none (self_training_pipeline.teacher_checkpoint); a teacher '
      'trained here would not be the one its students learned from: use '
      'another --model_dir.'
    )
  metrics = {}
  for index, (name, stage) in enumerate(warm_starts):
    label = 'teacher warm start' + (f' {index + 1}' if index else '')
    metrics[name] = run_stage(
      label, stage, os.path.join(model_dir, name), run_fn
    )
  return teacher, metrics


def _strategy_of(run_fn) -> Optional[Any]:
  """The strategy `run_fn` trains under (`train.py` binds it with
  functools.partial), for the labeller; None if it binds none."""
  return getattr(run_fn, 'keywords', {}).get('strategy')


def _pseudo_labels(
  pipeline: Pipeline,
  teacher_dir: str,
  pseudo_dir: str,
  read_threshold: float,
  strategy: Optional[Any] = None,
) -> Dict[str, Any]:
  """Labels the pool with the teacher unless that is done; the manifest's
  counts and quality are taken at the student's read threshold."""
  manifest = manifest_lib.read_manifest(pseudo_dir)
  kwargs = {'read_threshold': read_threshold, **(pipeline.export_kwargs or {})}
  if manifest.get('complete') and manifest.get('teacher_dir') == teacher_dir:
    _check_same_labelling(manifest, kwargs, pseudo_dir)
    logging.info(
      '[pipeline] pseudo labels: complete in %s, skipped.', pseudo_dir
    )
    if manifest.get('read_threshold') != read_threshold and (
      manifest.get('task') != 'segmentation'
    ):
      # Boxes are thresholded when read: count them at the student's
      # threshold (over the manifest, whose header older shards lack).
      return manifest | manifest_lib.write_manifest(
        pseudo_dir,
        manifest['num_shards'],
        None,
        0.0,
        write=False,
        read_threshold=read_threshold,
      )
    return manifest
  logging.info(
    '[pipeline] pseudo labels: teacher %s labels the pool.', teacher_dir
  )
  pipeline.prepare()
  return export.export_pseudo_labels(
    teacher_dir=teacher_dir,
    pool=pipeline.pool,
    output_dir=pseudo_dir,
    strategy=strategy,
    **kwargs,
    **_host_shards(
      kwargs, isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    ),
  )


def _host_shards(kwargs: Dict[str, Any], multi_worker: bool) -> Dict[str, Any]:
  """The shards this worker labels when the pipeline trains under
  MultiWorkerMirroredStrategy (hosts from TF_CONFIG): each worker labels its
  own and waits for the others', since every worker trains on all of them.
  Under any other strategy a TF_CONFIG is not this run's cluster: {}."""
  host = hosts.from_tf_config() if multi_worker else None
  if host is None:
    return {}
  num_shards = kwargs.get('num_shards', _export_default('num_shards'))
  logging.info(
    '[pipeline] pseudo labels: %s labels shards %s of %d.',
    host.describe(),
    host.shards(num_shards),
    num_shards,
  )
  return {'shard_indices': host.shards(num_shards), 'wait_for_all': True}


def _export_default(name: str) -> Any:
  return inspect.signature(export.export_pseudo_labels).parameters[name].default


def _labelling_settings(manifest, kwargs):
  """(written, asked): the export settings baked into complete labels, and
  those this run asks for.

  Segmentation maps carry their pixel threshold, scales and flip; detection
  shards their score floor, NMS and flip (the box threshold is applied when
  the student reads, so it may change freely)."""
  if manifest.get('task') == 'segmentation':
    asked = {'pixel_threshold': kwargs['read_threshold']}
    for key in ('scales', 'flip', 'sliding_window'):
      asked[key] = kwargs.get(key, _export_default(key))
    asked['scales'] = list(asked['scales'])
    written = {k: manifest.get(k) for k in asked}
    # Labels written before the option existed saw whole canvases.
    written['sliding_window'] = manifest.get('sliding_window', False)
    return written, asked
  nms = manifest.get('nms') or {}
  written = {
    'export_floor': manifest.get('export_floor'),
    'nms_iou_threshold': nms.get('nms_iou_threshold'),
    'max_detections': nms.get('max_num_detections'),
    'pre_nms_top_k': nms.get('pre_nms_top_k'),
    'nms_version': nms.get('nms_version'),
  }
  written['flip'] = manifest.get('flip', False)  # absent: one view
  asked = {k: kwargs.get(k, _export_default(k)) for k in written}
  for key in ('pre_nms_top_k', 'nms_version'):  # None: the teacher's own
    if asked[key] is None:
      asked[key] = written[key]
  return written, asked


def _check_same_labelling(manifest, kwargs, pseudo_dir) -> None:
  """Complete labels are reused only if written as this run asks: a changed
  binding would otherwise train the student on labels it did not ask for."""
  written, asked = _labelling_settings(manifest, kwargs)
  if written != asked:
    raise ValueError(
      f'Pseudo labels in {pseudo_dir} were written with {written}, but '
      f'this run asks for {asked} (self_training_experiment.'
      'pseudo_score_threshold, self_training_pipeline.export_kwargs). Move '
      'that directory away or use another --model_dir to relabel.'
    )


def _manifest_summary(manifest: Dict[str, Any]) -> Dict[str, Any]:
  keys = (
    'teacher_step',
    'read_threshold',
    'export_floor',
    'images_read',
    'images_written',
    'images_skipped',
    'images_without_box_at_threshold',
    'boxes_per_image_at_read_threshold',
    'quality_at_read_threshold',
    'wall_seconds',
  )
  if manifest.get('task') == 'segmentation':
    keys = (
      'teacher_step',
      'scales',
      'flip',
      'sliding_window',
      'pixel_threshold',
      'images_read',
      'images_written',
      'images_skipped',
      'ignored_pixel_fraction',
      'class_histogram',
      'pixel_accuracy',
      'pixel_miou',
      'foreground_labelled_fraction',
      'wall_seconds',
    )
  return {k: manifest.get(k) for k in keys}


def _ap(metrics: Optional[Dict[str, float]], key: str) -> str:
  if not metrics or key not in metrics:
    return '   -'
  return f'{100 * metrics[key]:5.1f}'


def _pseudo_label_line(pl: Dict[str, Any]) -> str:
  """One line on a round's pseudo labels (boxes or label maps)."""
  if 'pixel_accuracy' in pl:
    accuracy = pl.get('pixel_accuracy')
    return (
      f'      pseudo labels: {pl.get("images_written")} maps, '
      f'{100 * (pl.get("ignored_pixel_fraction") or 0):.1f}% pixels ignored '
      f'(< {pl.get("pixel_threshold")}), scales {pl.get("scales")}'
      + (
        f', pixel accuracy {100 * accuracy:.1f}%'
        if accuracy is not None
        else ''
      )
      + (
        f', mIoU {100 * pl["pixel_miou"]:.1f}, foreground labelled '
        f'{100 * pl["foreground_labelled_fraction"]:.1f}%'
        if pl.get('pixel_miou') is not None
        and pl.get('foreground_labelled_fraction') is not None
        else ''
      )
    )
  q = pl.get('quality_at_read_threshold') or {}
  line = (
    f'      pseudo labels: {pl.get("images_written")} images, '
    f'{pl.get("boxes_per_image_at_read_threshold") or 0:.2f} '
    f'boxes/image at {pl.get("read_threshold")}'
  )
  if q.get('available'):
    line += (
      f', precision {q["precision"]:.2f}, recall {q["recall"]:.2f} '
      f'({q["true_objects_per_image"]:.2f} true objects/image)'
    )
  return line


def format_table(rounds: List[Dict[str, Any]]) -> str:
  """Teacher / control / student AP (mIoU) per round, and the gain."""
  key = primary_metric(rounds[0].get('student') if rounds else None)
  second = 'AP50' if key == 'AP' else None  # segmentation: mIoU alone

  def cells(metrics, split=None):
    if split:  # the header
      text = f'{split} {key}'.rjust(9)
      return text + (f' | {second:>5s}' if second else '')
    text = _ap(metrics, key).rjust(9)
    return text + (f' | {_ap(metrics, second):>5s}' if second else '')

  head = f'round | arm                     | {cells(None, "val")} | '
  head += f'{cells(None, "test")} | step'
  lines = [head, '-' * len(head)]
  for i, r in enumerate(rounds, 1):
    for arm, label in ARMS:
      m = r.get(arm)
      if m is None:
        continue
      lines.append(
        f'{i:5d} | {label:23s} | {cells(m)} | {cells(m.get("test"))} | '
        f'{m.get("step", "-")}'
      )
    gain = r.get('gain')
    if gain:
      lines.append(
        '      student - best supervised = '
        f'{100 * gain[f"student_minus_best_{key}"]:+.1f} {key} '
        f'({gain["split"]}; best: {gain["best_baseline"]})'
      )
    lines.append(_pseudo_label_line(r['pseudo_labels']))
  return '\n'.join(lines)
