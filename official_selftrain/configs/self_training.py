"""Gin front for the student: a detection experiment plus pseudo labels.

The student shares every `detection_experiment` / `retinanet_model` binding with
its teacher (same architecture, policy and schedule shape, as in the paper) and
adds its own: steps, the human:pseudo ratio, the read-time threshold, alpha, the
EMA decay, Loss Normalization on/off, and where it starts from.
"""

from typing import Optional

import gin
from official.vision.configs import common

from official_selftrain.configs import detection as detection_configs
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.losses import loss_normalization as ln
from official_selftrain.tasks import detection
from official_selftrain.tasks import self_training


@gin.configurable
def self_training_experiment(
  pseudo_label_pattern: str = gin.REQUIRED,
  teacher_dir: Optional[str] = None,
  init_from_teacher: bool = True,
  train_steps: int = gin.REQUIRED,
  human_batch_size: Optional[int] = None,
  pseudo_ratio: float = 1.0,
  pseudo_score_threshold: float = 0.5,
  pseudo_ignore_floor: Optional[float] = None,
  alpha: float = 1.0,
  ema_decay: float = ln.EMA_DECAY,
  loss_normalization: bool = True,
  policy: Optional[str] = None,
) -> experiment_lib.Experiment:
  """The student of one self-training round.

  Args:
    pseudo_label_pattern: glob of the pseudo-label TFRecords.
    teacher_dir: the teacher's model_dir (the student starts from its latest
      checkpoint when init_from_teacher).
    init_from_teacher: start from the teacher (the paper's default) or from
      random init (the paper: needs ~2.25x the steps, lands 0.3-0.4 AP lower).
    train_steps: student steps.
    human_batch_size: human-labelled images per batch (default: the
      `detection_experiment.train_batch_size` binding, the teacher's batch).
    pseudo_ratio: pseudo-labelled images per human one (1.0: half and half, as
      COCO's 256 + 256).
    pseudo_score_threshold: read-time threshold on teacher scores (0.5).
    pseudo_ignore_floor: boxes scored in [floor, threshold) become ignore
      regions instead of background (beyond the paper; None: off). Must not
      be below the export floor the pseudo labels were written with.
    alpha: weight of the pseudo loss (the paper searched 0.25..4).
    ema_decay: decay of the loss EMAs (0.9997).
    loss_normalization: Loss Normalization, or the plain L_h + a * L_p.
    policy: augmentation of the student's human and pseudo halves, and so of
      the control's batches ('S1'..'S4'); None: the teacher's
      `detection_experiment.policy` (the paper's recipe). A stronger policy
      than the teacher's is Noisy Student's noised student.

  Returns:
    An Experiment whose task is a `SelfTrainingTaskConfig`.
  """
  overrides = {'train_steps': train_steps}
  if policy is not None:
    overrides['policy'] = policy
  if init_from_teacher:
    if not teacher_dir:
      raise ValueError(
        'self_training_experiment.init_from_teacher needs teacher_dir.'
      )
    overrides.update(init_checkpoint=teacher_dir, init_checkpoint_modules='all')
  base = detection_configs.detection_experiment(**overrides)
  config = base.config
  human = human_batch_size or config.task.train_data.global_batch_size
  pseudo = int(round(human * pseudo_ratio))
  task = self_training.SelfTrainingTaskConfig()
  task.override(config.task.as_dict(), is_strict=False)
  task.train_data.global_batch_size = human + pseudo
  task.train_data.pseudo_label_data = common.PseudoLabelDataConfig(
    input_path=pseudo_label_pattern,
    data_ratio=pseudo / human,
    global_batch_size=pseudo,
    shuffle_buffer_size=config.task.train_data.shuffle_buffer_size,
  )
  task.pseudo_score_threshold = pseudo_score_threshold
  task.pseudo_ignore_floor = pseudo_ignore_floor
  task.alpha = alpha
  task.ema_decay = ema_decay
  task.loss_normalization = loss_normalization
  config.task = task
  config.validate()
  return experiment_lib.Experiment(config=config, prepare=base.prepare)


def supervised_control(
  student: experiment_lib.Experiment, human_batch_size: int
) -> experiment_lib.Experiment:
  """The fair control: the student's run without the pseudo-labelled half.

  Same start (the teacher), steps, schedule, policy and human batch; only the
  pseudo labels are missing. A student that beats only its teacher may just
  have trained longer; this arm trains exactly as long.

  Args:
    student: the student experiment.
    human_batch_size: the student's human images per batch.

  Returns:
    A supervised Experiment.
  """
  config = student.config.replace()
  task = detection.DetectionTaskConfig()
  student_task = config.task.as_dict()
  student_task['train_data'].pop('pseudo_label_data')
  for key in (
    'pseudo_score_threshold',
    'alpha',
    'ema_decay',
    'loss_normalization',
  ):
    student_task.pop(key)
  task.override(student_task, is_strict=False)
  task.train_data.global_batch_size = human_batch_size
  config.task = task
  config.validate()
  return experiment_lib.Experiment(config=config, prepare=student.prepare)
