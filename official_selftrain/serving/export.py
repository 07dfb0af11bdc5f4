"""Exporting a trained model as a SavedModel for serving.

Which weights: a checkpoint, a training run's model_dir (its latest
checkpoint), or a pipeline's model_dir and a stage (`student`: the last
round's that has one). Which model: the `params.yaml` the run wrote beside its
checkpoints, or a gin file's experiment for a checkpoint from elsewhere; given
both, their model sections must agree. Only the model is exported: no
optimizer state, no teacher, no pseudo-label machinery. The export is written
under a temporary name and renamed when complete, so an interrupted export
leaves no half SavedModel behind.
"""

import json
import os
import re
from typing import Any
from typing import Dict
from typing import Optional
from typing import Sequence
from typing import Tuple

from absl import logging
from official.core import config_definitions as cfg
from official.core import export_base
import tensorflow as tf

from official_selftrain import stage_names
from official_selftrain.pseudo_labels import segmentation_teacher
from official_selftrain.pseudo_labels import teacher as teacher_lib
from official_selftrain.serving import modules

# What a SavedModel teacher needs besides its signatures (task, classes...).
INFO_FILE = os.path.join('assets.extra', 'official_selftrain.json')


class ExportError(ValueError):
  """The checkpoint, stage, config or export dir given cannot export."""


def _round_dirs(pipeline_dir: str):
  """round1, round2, ... of a pipeline dir, last first."""
  names = tf.io.gfile.listdir(pipeline_dir)
  rounds = [n.rstrip('/') for n in names if re.fullmatch(r'round\d+/?', n)]
  rounds.sort(key=lambda n: int(n[len('round') :]), reverse=True)
  return [os.path.join(pipeline_dir, n) for n in rounds]


def stage_dir(pipeline_dir: str, stage: str) -> str:
  """The model_dir of `stage` in a pipeline's model_dir, with a checkpoint."""
  if not stage_names.is_stage(stage):
    raise ExportError(f'--stage={stage}: one of {stage_names.CHOICES}.')
  if not tf.io.gfile.isdir(pipeline_dir):
    raise ExportError(f'{pipeline_dir!r} is not a pipeline model_dir.')
  if stage.startswith('teacher'):
    candidates = [os.path.join(pipeline_dir, stage)]
  else:
    candidates = [os.path.join(r, stage) for r in _round_dirs(pipeline_dir)]
  for path in candidates:
    if tf.io.gfile.isdir(path) and tf.train.latest_checkpoint(path):
      return path
  raise ExportError(
    f'No {stage} checkpoint in pipeline dir {pipeline_dir!r} (looked in '
    f'{candidates or "its round* dirs"}).'
  )


def resolve_checkpoint(
  checkpoint: str, stage: Optional[str] = None
) -> Tuple[Optional[str], str]:
  """(the run's model_dir or None, the checkpoint path) that `checkpoint`
  (with `stage` on a pipeline dir) names."""
  if stage:
    run_dir = stage_dir(checkpoint, stage)
    return run_dir, tf.train.latest_checkpoint(run_dir)
  if tf.io.gfile.isdir(checkpoint):
    latest = tf.train.latest_checkpoint(checkpoint)
    if not latest:
      raise ExportError(
        f'No checkpoint in {checkpoint!r}; a pipeline model_dir needs '
        f'--stage (one of {", ".join(stage_names.PIPELINE_STAGES)}).'
      )
    return checkpoint, latest
  if tf.io.gfile.exists(checkpoint + '.index'):
    return os.path.dirname(checkpoint), checkpoint
  raise ExportError(f'{checkpoint!r} is neither a checkpoint nor a directory.')


def _flat(tree: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _config_of_run(run_dir: str) -> cfg.ExperimentConfig:
  params = teacher_lib.read_params(run_dir)
  if teacher_lib.is_segmentation(params):
    return segmentation_teacher.load_experiment_config(params)
  return teacher_lib.load_experiment_config(run_dir)


def experiment_config(
  run_dir: Optional[str], gin_config: Optional[cfg.ExperimentConfig]
) -> cfg.ExperimentConfig:
  """The config of the model to export: the run's params.yaml, else the gin
  file's; both given, their model sections must agree."""
  has_params = run_dir and tf.io.gfile.exists(
    os.path.join(run_dir, 'params.yaml')
  )
  if not has_params:
    if gin_config is None:
      raise ExportError(
        f'No params.yaml beside the checkpoint (in {run_dir!r}): name the '
        'model with --gin_file.'
      )
    return gin_config
  config = _config_of_run(run_dir)
  if gin_config is not None:
    ours = _flat(config.task.model.as_dict())
    theirs = _flat(gin_config.task.model.as_dict())
    differ = sorted(
      k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)
    )
    if differ:
      raise ExportError(
        f"The gin file's model differs from {run_dir}/params.yaml at "
        + ', '.join(
          f'{k} ({theirs.get(k)!r} vs {ours.get(k)!r})' for k in differ[:8]
        )
      )
  return config


def serving_module(
  config: cfg.ExperimentConfig,
  checkpoint: str,
  batch_size: Optional[int] = None,
  score_threshold: Optional[float] = None,
):
  """The restored model behind its serving signatures; a detector keeps
  boxes scoring at least `score_threshold` (default: as evaluated)."""
  if teacher_lib.is_segmentation(config.as_dict()):
    teacher = segmentation_teacher.SegmentationTeacher(
      None, checkpoint, scales=(1.0,), config=config
    )
    return modules.SegmentationServingModule(teacher, batch_size)
  # Served as evaluated: the config's own NMS.
  nms = config.task.model.detection_generator
  teacher = teacher_lib.Teacher(
    None,
    checkpoint,
    score_floor=(
      nms.pre_nms_score_threshold
      if score_threshold is None
      else score_threshold
    ),
    nms_iou_threshold=nms.nms_iou_threshold,
    max_detections=nms.max_num_detections,
    config=config,
  )
  return modules.DetectionServingModule(teacher, batch_size)


def _info(module, checkpoint: str, input_types) -> Dict[str, Any]:
  teacher = module.teacher
  model = teacher.config.task.model
  info = {
    'task': 'segmentation' if hasattr(teacher, 'scales') else 'detection',
    'num_classes': model.num_classes,
    'input_size': list(teacher.input_size),
    'checkpoint': checkpoint,
    'step': teacher.step,
    'signatures': {t: modules.SIGNATURES[t] for t in input_types},
  }
  if info['task'] == 'segmentation':
    info['ignore_label'] = teacher.ignore_label
  else:
    info['nms'] = teacher.nms
  return info


def export_saved_model(
  config: cfg.ExperimentConfig,
  checkpoint: str,
  export_dir: str,
  input_types: Sequence[str] = tuple(modules.SIGNATURES),
  batch_size: Optional[int] = None,
  overwrite: bool = False,
  score_threshold: Optional[float] = None,
) -> Dict[str, Any]:
  """Writes the SavedModel; returns what it wrote into its INFO_FILE."""
  unknown = set(input_types) - set(modules.SIGNATURES)
  if unknown or not input_types:
    raise ExportError(
      f'input types {sorted(unknown) or "(none)"}: use {list(modules.SIGNATURES)}.'
    )
  if tf.io.gfile.exists(export_dir):
    if not overwrite:
      raise ExportError(
        f'{export_dir!r} exists: pass --overwrite to replace it.'
      )
  module = serving_module(config, checkpoint, batch_size, score_threshold)
  keys = {t: modules.SIGNATURES[t] for t in input_types}
  tmp = export_dir.rstrip('/') + f'.tmp-{os.getpid()}'
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  export_base.export(module, keys, tmp, timestamped=False)
  info = _info(module, checkpoint, input_types)
  tf.io.gfile.makedirs(os.path.join(tmp, os.path.dirname(INFO_FILE)))
  with tf.io.gfile.GFile(os.path.join(tmp, INFO_FILE), 'w') as f:
    json.dump(info, f, indent=2)
  if tf.io.gfile.exists(export_dir):
    tf.io.gfile.rmtree(export_dir)
  tf.io.gfile.rename(tmp, export_dir)
  logging.info('SavedModel of %s written to %s', checkpoint, export_dir)
  return info


def read_info(export_dir: str) -> Dict[str, Any]:
  """The INFO_FILE of a SavedModel this module exported."""
  path = os.path.join(export_dir, INFO_FILE)
  if not tf.io.gfile.exists(path):
    raise ExportError(
      f'{path} not found: {export_dir!r} was not exported by '
      'official_selftrain.tools.export_saved_model.'
    )
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)
