"""Student configs: the task's dataclasses, its batch split and gin builder.

The student shares every `detection_experiment` / `retinanet_model` binding with
its teacher (same architecture, policy and schedule shape, as in the paper) and
adds its own: steps, the human:pseudo ratio, the read-time threshold, alpha, the
EMA decay, Loss Normalization on/off, and where it starts from.
"""

import dataclasses
from typing import Any
from typing import Callable
from typing import Optional

import gin
from official.vision.configs import common
from official.vision.dataloaders import input_reader

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.configs import segmentation as segmentation_cfg
from official_selftrain.losses import loss_normalization as ln


@dataclasses.dataclass
class SelfTrainingDataConfig(detection_cfg.DetectionDataConfig):
  """Train data: human-labelled input_path plus the pseudo-labelled set."""

  pseudo_label_data: common.PseudoLabelDataConfig = dataclasses.field(
    default_factory=common.PseudoLabelDataConfig
  )


@dataclasses.dataclass
class SelfTrainingTaskConfig(detection_cfg.DetectionTaskConfig):
  """The student's task.

  Attributes:
    train_data: human + pseudo-labelled data (data_ratio 1.0 = half and half).
    pseudo_score_threshold: pseudo boxes scored below this are not labels.
    pseudo_ignore_floor: if set, pseudo boxes scored in [floor, threshold) are
      ignore regions rather than background (beyond the paper; None: off).
    pseudo_soft_floor: if set, pseudo boxes scored in [floor, threshold) are
      soft positives: class target the teacher's score, box loss weighted by
      it (beyond the paper; None: off).
    pseudo_background_weight: weight of the pseudo half's background anchors
      in the focal loss (beyond the paper; 1.0: off).
    pseudo_box_weight: weight of the pseudo half's box regression loss
      (beyond the paper; 1.0: off, 0.0: pseudo boxes teach classes only).
    alpha: weight of the pseudo loss, a.
    ema_decay: decay of the loss EMAs (0.9997).
    loss_normalization: Loss Normalization (True) or the plain L_h + a * L_p.
  """

  train_data: SelfTrainingDataConfig = dataclasses.field(
    default_factory=lambda: SelfTrainingDataConfig(is_training=True)
  )
  pseudo_score_threshold: float = 0.5
  pseudo_ignore_floor: Optional[float] = None
  pseudo_soft_floor: Optional[float] = None
  pseudo_background_weight: float = 1.0
  pseudo_box_weight: float = 1.0
  alpha: float = 1.0
  ema_decay: float = ln.EMA_DECAY
  loss_normalization: bool = True


@dataclasses.dataclass
class SegmentationStudentDataConfig(segmentation_cfg.SegmentationDataConfig):
  """Train data: human label maps plus the pseudo-labelled set."""

  pseudo_label_data: common.PseudoLabelDataConfig = dataclasses.field(
    default_factory=common.PseudoLabelDataConfig
  )


@dataclasses.dataclass
class SegmentationStudentTaskConfig(segmentation_cfg.SegmentationTaskConfig):
  """The segmentation student's task.

  Attributes:
    train_data: human + pseudo-labelled data (data_ratio 1.0 = half and half).
    pseudo_score_threshold: the pseudo labels' per-pixel threshold (pixels
      the teacher was less sure of are 255, ignored); applied at export.
    alpha: weight of the pseudo loss, a.
    ema_decay: decay of the loss EMAs (0.9997).
    loss_normalization: Loss Normalization (True) or the plain L_h + a * L_p.
  """

  train_data: SegmentationStudentDataConfig = dataclasses.field(
    default_factory=lambda: SegmentationStudentDataConfig(is_training=True)
  )
  pseudo_score_threshold: float = 0.5
  alpha: float = 1.0
  ema_decay: float = ln.EMA_DECAY
  loss_normalization: bool = True


def supervised_task_config(task) -> Any:
  """The supervised task within any task's settings (a student's included):
  its own type for a supervised one, the student's supervised base else."""
  if isinstance(task, SegmentationStudentTaskConfig):
    config = segmentation_cfg.SegmentationTaskConfig()
    config.override(
      detection_cfg.fields_of(config, task.as_dict()), is_strict=True
    )
    return config
  if isinstance(task, segmentation_cfg.SegmentationTaskConfig):
    return task
  return detection_cfg.supervised_task_config(task.as_dict())


@dataclasses.dataclass(frozen=True)
class BatchSplit:
  """The student's batch: `human` human-labelled images, then `pseudo` ones.

  Global counts (all replicas). Model Garden's combination reader builds each
  replica's batch as [human | pseudo] from the train data config; `of` reads
  the split back with the reader's own rule, so config, reader and loss agree.
  """

  human: int
  pseudo: int

  @classmethod
  def from_ratio(cls, human: int, pseudo_ratio: float) -> 'BatchSplit':
    """`pseudo_ratio` pseudo-labelled images per human one (1.0: half/half)."""
    return cls(human, int(round(human * pseudo_ratio)))

  @classmethod
  def of(cls, train_data: SelfTrainingDataConfig) -> 'BatchSplit':
    """The split Model Garden's combination reader makes of `train_data`."""
    human, pseudo = input_reader.calculate_batch_sizes(
      train_data.global_batch_size,
      train_data.pseudo_label_data.data_ratio,
      train_data.pseudo_label_data.global_batch_size,
    )
    return cls(human, pseudo)

  @property
  def total(self) -> int:
    return self.human + self.pseudo

  def per_replica(self, num_replicas: int) -> 'BatchSplit':
    """Each replica's share (the reader divides both parts evenly)."""
    if self.human % num_replicas or self.pseudo % num_replicas:
      raise ValueError(
        f'{self} does not divide evenly over {num_replicas} replicas.'
      )
    return BatchSplit(self.human // num_replicas, self.pseudo // num_replicas)

  def apply_to(self, train_data: SelfTrainingDataConfig) -> None:
    """Sets the batch sizes and ratio of `train_data` to this split."""
    if self.human < 1 or self.pseudo < 1:
      raise ValueError(f'{self}: the student needs both halves.')
    train_data.global_batch_size = self.total
    train_data.pseudo_label_data.global_batch_size = self.pseudo
    train_data.pseudo_label_data.data_ratio = self.pseudo / self.human
    if BatchSplit.of(train_data) != self:
      raise ValueError(
        f"{self} is not a split Model Garden's reader can make "
        f'(it reads {BatchSplit.of(train_data)}); choose another ratio.'
      )


@gin.configurable
def self_training_experiment(
  pseudo_label_pattern: str = gin.REQUIRED,
  supervised: Callable[..., experiment_lib.Experiment] = (
    detection_cfg.detection_experiment
  ),
  teacher_dir: Optional[str] = None,
  init_from_teacher: bool = True,
  train_steps: int = gin.REQUIRED,
  human_batch_size: Optional[int] = None,
  pseudo_ratio: float = 1.0,
  pseudo_score_threshold: float = 0.5,
  pseudo_ignore_floor: Optional[float] = None,
  pseudo_soft_floor: Optional[float] = None,
  pseudo_background_weight: float = 1.0,
  pseudo_box_weight: float = 1.0,
  alpha: float = 1.0,
  ema_decay: float = ln.EMA_DECAY,
  loss_normalization: bool = True,
  policy: Optional[str] = None,
) -> experiment_lib.Experiment:
  """The student of one self-training round.

  Args:
    pseudo_label_pattern: glob of the pseudo-label TFRecords.
    supervised: the teacher's experiment builder, whose bindings the student
      shares (`@detection_experiment`, or `@segmentation_experiment` for a
      segmentation student; no parentheses).
    teacher_dir: the teacher's model_dir (the student starts from its latest
      checkpoint when init_from_teacher).
    init_from_teacher: start from the teacher (the paper's default) or from
      random init (the paper: needs ~2.25x the steps, lands 0.3-0.4 AP lower).
    train_steps: student steps.
    human_batch_size: human-labelled images per batch (default: the
      `detection_experiment.train_batch_size` binding, the teacher's batch).
    pseudo_ratio: pseudo-labelled images per human one (1.0: half and half, as
      COCO's 256 + 256).
    pseudo_score_threshold: read-time threshold on teacher scores (0.5); for
      segmentation the per-pixel threshold of the export.
    pseudo_ignore_floor: boxes scored in [floor, threshold) become ignore
      regions instead of background (beyond the paper; None: off). Must not
      be below the export floor the pseudo labels were written with.
      Detection only, as the soft floor and the two weights below.
    pseudo_soft_floor: boxes scored in [floor, threshold) become soft
      positives: the class target of the anchors they match is the teacher's
      score (a focal loss generalised to soft targets, as Quality Focal Loss)
      and their box loss is weighted by it; at or above the threshold boxes
      stay labels of target 1 (beyond the paper; None: off). Excludes
      `pseudo_ignore_floor`; the same export-floor rule.
    pseudo_background_weight: weight in [0, 1] of the pseudo half's
      background anchors in the focal loss (beyond the paper; 1.0: off).
    pseudo_box_weight: weight (>= 0) of the pseudo half's box regression loss
      (beyond the paper; 1.0: off; 0.0: pseudo boxes teach classes only, as
      semi-supervised detectors do whose teacher scores say little about
      localisation).
    alpha: weight of the pseudo loss (the paper searched 0.25..4).
    ema_decay: decay of the loss EMAs (0.9997).
    loss_normalization: Loss Normalization, or the plain L_h + a * L_p.
    policy: augmentation of the student's human and pseudo halves, and so of
      the control's batches ('S1'..'S4'); None: the teacher's
      `detection_experiment.policy` (the paper's recipe). A stronger policy
      than the teacher's is Noisy Student's noised student.

  Returns:
    An Experiment whose task is a `SelfTrainingTaskConfig` (detection) or a
    `SegmentationStudentTaskConfig`.
  """
  overrides = {'train_steps': train_steps}
  if policy is not None:
    overrides['policy'] = policy
  if init_from_teacher:
    if not teacher_dir:
      raise ValueError(
        'self_training_experiment.init_from_teacher needs teacher_dir.'
      )
    overrides.update(init=teacher_dir, init_checkpoint_modules='all')
  base = supervised(**overrides)
  config = base.config
  segmentation = isinstance(
    config.task, segmentation_cfg.SegmentationTaskConfig
  )
  task = (
    SegmentationStudentTaskConfig()
    if segmentation
    else SelfTrainingTaskConfig()
  )
  task.override(config.task.as_dict(), is_strict=True)
  task.train_data.pseudo_label_data = common.PseudoLabelDataConfig(
    input_path=pseudo_label_pattern,
    shuffle_buffer_size=config.task.train_data.shuffle_buffer_size,
    seed=base.seed,
  )
  split = BatchSplit.from_ratio(
    human_batch_size or config.task.train_data.global_batch_size, pseudo_ratio
  )
  split.apply_to(task.train_data)
  task.pseudo_score_threshold = pseudo_score_threshold
  if not segmentation:
    _set_box_options(
      task,
      (pseudo_ignore_floor, pseudo_soft_floor),
      pseudo_background_weight,
      pseudo_box_weight,
    )
  task.alpha = alpha
  task.ema_decay = ema_decay
  task.loss_normalization = loss_normalization
  config.task = task
  config.validate()
  return base.replace(config=config)


def _set_box_options(task, floors, background_weight, box_weight):
  """The detection student's options on its pseudo half's loss; `floors`:
  (ignore floor, soft floor)."""
  task.pseudo_ignore_floor, task.pseudo_soft_floor = floors
  for name, floor in zip(('pseudo_ignore_floor', 'pseudo_soft_floor'), floors):
    if floor is not None and not 0.0 <= floor < task.pseudo_score_threshold:
      raise ValueError(
        f'self_training_experiment.{name} must be in [0, '
        f'pseudo_score_threshold={task.pseudo_score_threshold}), got {floor}.'
      )
  if None not in floors:
    raise ValueError(
      'self_training_experiment.pseudo_ignore_floor and pseudo_soft_floor '
      'exclude each other (a box the teacher half-saw is either ignored or '
      'a soft positive); bind one.'
    )
  if not 0.0 <= background_weight <= 1.0:
    raise ValueError(
      'self_training_experiment.pseudo_background_weight must be in [0, 1], '
      f'got {background_weight}.'
    )
  task.pseudo_background_weight = background_weight
  if box_weight < 0.0:
    raise ValueError(
      'self_training_experiment.pseudo_box_weight must be >= 0, '
      f'got {box_weight}.'
    )
  task.pseudo_box_weight = box_weight


def supervised_control(
  student: experiment_lib.Experiment,
) -> experiment_lib.Experiment:
  """The fair control: the student's run without the pseudo-labelled half.

  Same start (the teacher), steps, schedule, policy and human batch; only the
  pseudo labels are missing. A student that beats only its teacher may just
  have trained longer; this arm trains exactly as long.

  Args:
    student: the student experiment.

  Returns:
    A supervised Experiment.
  """
  config = student.config.replace()
  human = BatchSplit.of(config.task.train_data).human
  config.task = supervised_task_config(config.task)
  config.task.train_data.global_batch_size = human
  config.validate()
  return student.replace(config=config)


def warm_started(
  teacher: experiment_lib.Experiment, checkpoint_dir: str
) -> experiment_lib.Experiment:
  """The teacher's run started from every weight of another run's last
  checkpoint (a teacher trained in two stages, e.g. Augment-S1 then -S4).

  Args:
    teacher: the teacher experiment.
    checkpoint_dir: the first stage's model dir.

  Returns:
    The teacher experiment with that init.
  """
  config = teacher.config.replace()
  config.task.init_checkpoint = checkpoint_dir
  config.task.init_checkpoint_modules = 'all'
  config.task.init_checkpoint_converter = ''
  config.task.init_checkpoint_hint = (
    '(the teacher warm start stage of this pipeline)'
  )
  return teacher.replace(config=config)


def supervised_from_scratch(
  teacher: experiment_lib.Experiment,
  student: experiment_lib.Experiment,
  train_steps: int,
) -> experiment_lib.Experiment:
  """The supervised baseline that had all the student's compute.

  The teacher's run (model, policy, init), from its own start, in one
  schedule of `train_steps` (the teacher's plus the student's steps), on the
  student's human batch: what more human-label training alone reaches. A
  student that beats its teacher and its control but not this arm only shows
  that one long schedule beats two short ones.

  Args:
    teacher: the teacher experiment.
    student: the student experiment (for its human batch).
    train_steps: the whole schedule's steps.

  Returns:
    A supervised Experiment.
  """
  config = teacher.config.replace()
  config.trainer.train_steps = train_steps
  config.trainer.optimizer_config.learning_rate.cosine.decay_steps = train_steps
  human = BatchSplit.of(student.config.task.train_data).human
  config.task.train_data.global_batch_size = human
  config.validate()
  return teacher.replace(config=config)
