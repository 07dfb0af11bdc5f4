"""Detection configs: the task's dataclasses and the gin builders that fill them.

The dataclasses extend Model Garden's RetinaNet configs (`official.vision.
configs.retinanet`) with this project's fields; `tasks/detection.py` runs them.
A gin file reads like a row of the paper's tables; the builders below turn it
into the `official.core.config_definitions.ExperimentConfig` that Model
Garden's task and Orbit trainer run. `--print_config` prints both.
"""

import dataclasses
import math
from typing import Any
from typing import Dict
from typing import Optional
from typing import Sequence

import gin
from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import image_classification as ic_cfg
from official.vision.configs import retinanet as retinanet_cfg

from official_selftrain.configs import classification_data
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets
from official_selftrain.ops import augment_policies


@dataclasses.dataclass
class ParserConfig(retinanet_cfg.Parser):
  """Model Garden's RetinaNet parser config, plus the policy's two rules.

  Attributes:
    min_visible: boxes left with less of their area in frame are dropped.
    augment_reference_size: image long side the policy's pixel constants are
      meant for (None: use them as pixels); see `augment_policies`.
  """

  min_visible: float = 0.25
  augment_reference_size: Optional[float] = 640


@dataclasses.dataclass
class DetectionDataConfig(retinanet_cfg.DataConfig):
  parser: ParserConfig = dataclasses.field(default_factory=ParserConfig)


@dataclasses.dataclass
class DetectionTaskConfig(retinanet_cfg.RetinaNetTask):
  """Model Garden's RetinaNet task config, plus how to treat corrupt images.

  Attributes:
    skip_corrupt_records: scan the input files first, then skip (and count)
      records whose image does not decode instead of failing on them.
    corrupt_records_cache_dir: where the scan result is kept ('' = no cache).
    init_checkpoint_converter: maps a foreign checkpoint's variable names to
      Model Garden's ('' = same names; see `tasks/init_restore.py`).
    init_checkpoint_hint: how to make the init checkpoint, said when it is
      missing.
    init_checkpoint_skip: a regular expression on the init checkpoint's
      keys: the variables it finds keep their initialisation ('' = none).
    joint_weight: joint training (PAPER.md Table 7): the loss adds this
      times a classification loss on `joint_data` through a classification
      head on the backbone, in the same steps (0: off).
    joint_num_classes: the classification head's logits.
    joint_data: the classification input (its own batch).
  """

  train_data: DetectionDataConfig = dataclasses.field(
    default_factory=lambda: DetectionDataConfig(is_training=True)
  )
  validation_data: DetectionDataConfig = dataclasses.field(
    default_factory=lambda: DetectionDataConfig(is_training=False)
  )
  skip_corrupt_records: bool = False
  corrupt_records_cache_dir: str = ''
  init_checkpoint_converter: str = ''
  init_checkpoint_hint: str = ''
  init_checkpoint_skip: str = ''
  joint_weight: float = 0.0
  joint_num_classes: int = 0
  joint_data: Optional[ic_cfg.DataConfig] = None


def fields_of(reference: hyperparams.Config, values: Dict[str, Any]):
  """The entries of `values` that are fields of `reference`, recursively.

  Derives a config of a base type from one of a subclass (a student's task,
  with its self-training fields, to a supervised one) from the dataclass
  fields themselves, so a field added to the subclass can never leak. A
  one-of config (backbone, decoder) is taken whole: its chosen branch need not
  be the reference's default.

  Args:
    reference: a config of the target type.
    values: a nested dict, e.g. `config.as_dict()` of a subclass.

  Returns:
    The nested dict restricted to the reference's fields.
  """
  kept = {}
  for key, value in values.items():
    if not hasattr(reference, key):
      continue
    field = getattr(reference, key)
    if (
      isinstance(field, hyperparams.Config)
      and not isinstance(field, hyperparams.OneOfConfig)
      and isinstance(value, dict)
    ):
      value = fields_of(field, value)
    kept[key] = value
  return kept


def supervised_task_config(task: Dict[str, Any]) -> 'DetectionTaskConfig':
  """The supervised detection task within any detection task's settings.

  Args:
    task: a task config as a dict (a `DetectionTaskConfig`, a student's
      `SelfTrainingTaskConfig`, or a `params.yaml` section of either).

  Returns:
    A `DetectionTaskConfig` with every field the dict shares with it.
  """
  config = DetectionTaskConfig()
  config.override(fields_of(config, task), is_strict=True)
  return config


@gin.configurable
def retinanet_model(
  num_classes: int,
  input_size: int = 640,
  backbone: str = 'efficientnet',
  backbone_params: Optional[Dict[str, Any]] = None,
  min_level: int = 3,
  max_level: int = 7,
  fpn_filters: int = 256,
  head_convs: int = 4,
  head_filters: int = 256,
  anchor_size: float = 4.0,
  num_scales: int = 3,
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
  use_sync_bn: bool = True,
  norm_momentum: float = 0.99,
  activation: str = 'swish',
  nms_version: str = 'batched',
  pre_nms_top_k: int = 1000,
  pre_nms_score_threshold: float = 0.05,
  nms_iou_threshold: float = 0.5,
  max_num_detections: int = 100,
  soft_nms_sigma: Optional[float] = None,
) -> retinanet_cfg.RetinaNet:
  """RetinaNet: backbone + FPN (P{min_level}..P{max_level}) + heads.

  Args:
    num_classes: including background.
    input_size: square input side in pixels.
    backbone: Model Garden backbone type ('efficientnet', 'resnet', ...).
    backbone_params: fields of that backbone's config, e.g. {'model_id': 'b7'}.
    min_level: lowest FPN level (P3 in the paper).
    max_level: highest FPN level (P7 in the paper).
    fpn_filters: FPN channels.
    head_convs: conv layers in each head tower.
    head_filters: channels of the head towers.
    anchor_size: anchor scale relative to the level's stride.
    num_scales: anchor scales per level (3 x 3 aspect ratios = 9 anchors).
    aspect_ratios: anchor aspect ratios.
    use_sync_bn: batch norm statistics over all replicas (the paper: on).
    norm_momentum: batch norm momentum.
    activation: activation of backbone, FPN and heads.
    nms_version: Model Garden NMS ('batched', 'v1', 'v2'); 'batched' is the
      fastest on CPU (see issue notes) with the same AP on the Shapes configs.
    pre_nms_top_k: boxes per level kept before NMS.
    pre_nms_score_threshold: score floor before NMS.
    nms_iou_threshold: NMS IoU (0.5, PAPER.md's default).
    max_num_detections: boxes kept per image (100).
    soft_nms_sigma: Soft-NMS sigma (with nms_version='v1'; 0.3 for SOTA runs).

  Returns:
    A `retinanet_cfg.RetinaNet` config.
  """
  backbone_config = backbones.Backbone(type=backbone)
  backbone_config.get().override(backbone_params or {}, is_strict=True)
  return retinanet_cfg.RetinaNet(
    num_classes=num_classes,
    input_size=[input_size, input_size, 3],
    min_level=min_level,
    max_level=max_level,
    anchor=retinanet_cfg.Anchor(
      num_scales=num_scales,
      aspect_ratios=list(aspect_ratios),
      anchor_size=anchor_size,
    ),
    backbone=backbone_config,
    decoder=decoders.Decoder(
      type='fpn', fpn=decoders.FPN(num_filters=fpn_filters)
    ),
    head=retinanet_cfg.RetinaNetHead(
      num_convs=head_convs, num_filters=head_filters
    ),
    detection_generator=retinanet_cfg.DetectionGenerator(
      nms_version=nms_version,
      pre_nms_top_k=pre_nms_top_k,
      pre_nms_score_threshold=pre_nms_score_threshold,
      nms_iou_threshold=nms_iou_threshold,
      max_num_detections=max_num_detections,
      soft_nms_sigma=soft_nms_sigma,
    ),
    norm_activation=common.NormActivation(
      activation=activation,
      use_sync_bn=use_sync_bn,
      norm_momentum=norm_momentum,
    ),
  )


@gin.configurable
def cosine_schedule(
  learning_rate: float = 0.32,
  warmup_steps: int = 1000,
  warmup_learning_rate: float = 0.0032,
  momentum: float = 0.9,
  train_steps: int = gin.REQUIRED,
) -> optimization.OptimizationConfig:
  """SGD, linear warm-up then cosine decay (the paper's COCO schedule)."""
  return optimization.OptimizationConfig(
    {
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': momentum}},
      'learning_rate': {
        'type': 'cosine',
        'cosine': {
          'initial_learning_rate': learning_rate,
          'decay_steps': train_steps,
        },
      },
      'warmup': {
        'type': 'linear',
        'linear': {
          'warmup_steps': warmup_steps,
          'warmup_learning_rate': warmup_learning_rate,
        },
      },
    }
  )


@gin.configurable
def runtime(
  mixed_precision_dtype: Optional[str] = None,
  loss_scale: Optional[str] = None,
  enable_xla: bool = False,
) -> cfg.RuntimeConfig:
  """Model Garden runtime settings.

  Args:
    mixed_precision_dtype: None / 'float32', 'bfloat16' (TPU) or 'float16'
      (GPU, with dynamic loss scaling).
    loss_scale: 'dynamic' or a number, for float16.
    enable_xla: compile steps with XLA.

  Returns:
    RuntimeConfig.
  """
  if mixed_precision_dtype == 'float16' and loss_scale is None:
    loss_scale = 'dynamic'
  return cfg.RuntimeConfig(
    mixed_precision_dtype=mixed_precision_dtype,
    loss_scale=loss_scale,
    enable_xla=enable_xla,
  )


def eval_steps(count: Optional[int], batch: int) -> int:
  return -1 if count is None else max(1, math.ceil(count / batch))


@gin.configurable
def detection_experiment(
  data: datasets.DetectionData = gin.REQUIRED,
  policy: str = 'S1',
  train_batch_size: int = 256,
  eval_batch_size: int = 8,
  train_steps: int = gin.REQUIRED,
  weight_decay: float = 1e-4,
  init: Optional[str] = None,
  init_checkpoint_modules: str = 'backbone',
  init_checkpoint_skip: str = '',
  steps_per_loop: int = 100,
  checkpoint_interval: int = 1000,
  summary_interval: int = 100,
  validation_interval: int = 5000,
  max_to_keep: int = 5,
  skip_corrupt_records: bool = False,
  input_dtype: str = 'float32',
  shuffle_buffer_size: int = 10000,
  seed: Optional[int] = None,
  deterministic: bool = True,
  joint_weight: float = 0.0,
  joint_data: Any = None,
  joint_batch_size: Optional[int] = None,
  overrides: Optional[Dict[str, Any]] = None,
) -> experiment_lib.Experiment:
  """A supervised RetinaNet experiment on human labels.

  Args:
    data: a dataset, e.g. `@shapes_det()` or `@coco()`.
    policy: augmentation policy name, see `augment_policy` ('S1'..'S4').
    train_batch_size: global train batch.
    eval_batch_size: global eval batch.
    train_steps: total train steps (the cosine decays to 0 at the end).
    weight_decay: L2 weight decay (1e-4 in the paper).
    init: where to start: 'rand_init' (or None), a name the dataset knows
      ('imagenet', 'imagenet_plus_plus', 'simclr'; see `datasets.INIT_NAMES`),
      or a checkpoint file or directory. A report of what it restored goes to
      the log and `init_restore.json` in the model dir.
    init_checkpoint_modules: which modules it initialises ('backbone',
      'backbone,decoder', 'all').
    init_checkpoint_skip: a regular expression on the keys `init_restore.json`
      lists (e.g. 'backbone/layer_with_weights-[6-9]/'): the variables it
      finds keep their initialisation ('' = restore every one).
    steps_per_loop: steps per inner loop (progress is logged per loop).
    checkpoint_interval: save a checkpoint every N steps.
    summary_interval: write TensorBoard train summaries every N steps.
    validation_interval: evaluate every N steps in train_and_eval.
    max_to_keep: checkpoints kept.
    skip_corrupt_records: skip (and count) records whose image does not decode
      instead of failing; see `record_check`.
    input_dtype: dtype of the input images ('bfloat16' on TPU).
    shuffle_buffer_size: tf.data shuffle buffer.
    seed: seeds init, shuffling and augmentation (`--seed`); None: unseeded.
    deterministic: with a seed, also make TF's ops deterministic, so two runs
      with one seed give identical weights (measured on 2 CPU cores under
      Augment-S4: ~0.88x the steps/s; False: seeded draws, but parallel
      augmentation consumes them in varying order).
    joint_weight: joint training (PAPER.md Table 7): add this times a
      classification loss on `joint_data` (0.5 alone, 0.2 with self-training
      in the paper; 0: off).
    joint_data: the classification dataset of joint training, e.g.
      `@shapes_cls()` (Shapes-Cls plays ImageNet).
    joint_batch_size: its global batch (default: train_batch_size).
    overrides: dotted Model Garden config keys to set last, e.g.
      {'task.losses.focal_loss_gamma': 2.0} (escape hatch; prefer bindings).

  Returns:
    An Experiment: the ExperimentConfig Model Garden / Orbit run, and the data
    preparation step.
  """
  train_data = DetectionDataConfig(
    input_path=data.train_pattern,
    is_training=True,
    global_batch_size=train_batch_size,
    dtype=input_dtype,
    shuffle_buffer_size=shuffle_buffer_size,
    seed=seed,
  )
  augment_policies.augment_policy(name=policy).apply_to(train_data.parser)
  validation_data = DetectionDataConfig(
    input_path=data.val_pattern,
    is_training=False,
    drop_remainder=False,
    global_batch_size=eval_batch_size,
    dtype=input_dtype,
  )
  task = DetectionTaskConfig(
    model=retinanet_model(num_classes=data.num_classes),
    train_data=train_data,
    validation_data=validation_data,
    losses=retinanet_cfg.Losses(l2_weight_decay=weight_decay),
    init_checkpoint_modules=init_checkpoint_modules,
    annotation_file=data.annotation_file,
    skip_corrupt_records=skip_corrupt_records,
  )
  apply_init(task, init, data, init_checkpoint_skip)
  prepare = apply_joint(
    task, joint_weight, joint_data, joint_batch_size or train_batch_size, seed
  )
  trainer = cfg.TrainerConfig(
    train_steps=train_steps,
    validation_steps=eval_steps(data.num_val, eval_batch_size),
    validation_interval=validation_interval,
    steps_per_loop=steps_per_loop,
    summary_interval=summary_interval,
    checkpoint_interval=checkpoint_interval,
    max_to_keep=max_to_keep,
    optimizer_config=cosine_schedule(train_steps=train_steps),
  )
  return finish_experiment(
    task,
    trainer,
    overrides,
    prepare=_in_turn(data.prepare, *prepare),
    seed=seed,
    deterministic=deterministic,
    test_split=test_split(data),
  )


def finish_experiment(task, trainer, overrides, **fields):
  """The Experiment of a task and trainer config: Model Garden's runtime
  (`runtime` bindings), `overrides` (dotted keys) set last, validated;
  `fields`: the Experiment's other fields."""
  config = cfg.ExperimentConfig(runtime=runtime(), task=task, trainer=trainer)
  if overrides:
    config.override(nest(overrides), is_strict=True)
  config.validate()
  return experiment_lib.Experiment(config=config, **fields)


def apply_init(task, init: Optional[str], data, skip: str = '') -> None:
  """Sets the task's init checkpoint fields from an init name or path, and
  the skip pattern (`init_checkpoint_skip`).

  Raises:
    ValueError: a name the dataset has no checkpoint for, or a skip pattern
      without an init.
  """
  task.init_checkpoint = None
  task.init_checkpoint_skip = skip
  if init is None or init == 'rand_init':
    if skip:
      raise ValueError(
        f'init_checkpoint_skip={skip!r} without an init checkpoint '
        f'(init={init!r}): nothing would be restored nor skipped.'
      )
    return
  if init in datasets.INIT_NAMES:
    if init not in data.inits:
      raise ValueError(
        f'detection_experiment.init={init!r}: dataset {data.name!r} has no '
        f'{init} checkpoint; it has {["rand_init", *sorted(data.inits)]}, or '
        'give a checkpoint path.'
      )
    named = data.inits[init]
    task.init_checkpoint = named.path
    task.init_checkpoint_converter = named.converter
    task.init_checkpoint_hint = f'(init {init!r}) {named.make}'
    return
  task.init_checkpoint = init


def _in_turn(*steps):
  def run():
    for step in steps:
      step()

  return run


def apply_joint(task, weight: float, data, batch: int, seed):
  """Sets the task's joint-training fields; returns extra preparation steps.

  Raises:
    ValueError: a weight without data, or a negative weight.
  """
  if weight < 0:
    raise ValueError(f'detection_experiment.joint_weight={weight} < 0.')
  if not weight:
    return ()
  if data is None:
    raise ValueError(
      'detection_experiment.joint_weight needs detection_experiment.'
      'joint_data, e.g. @shapes_cls().'
    )
  task.joint_weight = weight
  task.joint_num_classes = data.num_classes
  task.joint_data = classification_data.classification_data(
    data.train_pattern,
    True,
    batch,
    seed=seed,
    shuffle_buffer_size=task.train_data.shuffle_buffer_size,
    randaugment_magnitude=None,
  )
  return (data.prepare,)


def test_split(
  data: datasets.DetectionData,
) -> Optional[experiment_lib.EvalSplit]:
  if not data.test_pattern:
    return None
  return experiment_lib.EvalSplit(
    'test', data.test_pattern, data.test_annotation_file, data.num_test
  )


def nest(dotted: Dict[str, Any]) -> Dict[str, Any]:
  """{'a.b.c': 1} -> {'a': {'b': {'c': 1}}}, as Config.override takes."""
  nested = {}
  for key, value in dotted.items():
    node = nested
    *parents, leaf = key.split('.')
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return nested
