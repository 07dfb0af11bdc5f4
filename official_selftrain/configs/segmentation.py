"""Semantic segmentation configs: the paper's PASCAL model, from Model Garden.

PAPER.md, "Models and schedules": EfficientNet-B7 / -L2 with NAS-FPN (7
repeats, separable convs, P3-P7), every level upsampled to P2 and summed,
three 3x3 convs and a 1x1 conv to the classes. All of it is Model Garden's
(`official.vision.configs.semantic_segmentation`): the backbone and NAS-FPN
decoder by name, the head's 'pyramid_fusion' (bilinear resize of every level
to the head's level, then a sum) with `level=2`, `num_convs=3`. Model Garden's
EfficientNet stops at B7; importing this module adds the L2 scaling entry.

`segmentation_experiment` mirrors `detection_experiment`: the same dataset
objects (Shapes-Det's records carry the semantic map), Augment-S1..S4 on image
and label map (`data.parsers.SegmentationParser`), inits by name with the
restore report, seeds and a test split.
"""

import dataclasses
from typing import Any
from typing import Dict
from typing import Optional

import gin
from official.core import config_definitions as cfg
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import semantic_segmentation as seg_cfg
from official.vision.modeling.backbones import efficientnet

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets
from official_selftrain.ops import augment_policies

# EfficientNet-L2 (Noisy Student; Xie et al. 2019): width 4.3, depth 5.3 on
# B0's blocks. Model Garden's table ends at B7 and reads it when a model is
# built, so the entry is added here rather than in a fork of the backbone.
efficientnet.SCALING_MAP.setdefault(
  'l2', {'width_scale': 4.3, 'depth_scale': 5.3}
)

IGNORE_LABEL = 255


@dataclasses.dataclass
class SegmentationDataConfig(seg_cfg.DataConfig):
  """Model Garden's segmentation data config, plus the policy's fields.

  Attributes:
    aug_type: AutoAugment / RandAugment run jointly on image and label map
      (Augment-S2..S4; None: S1's flip and jitter only).
    augment_reference_size: image long side the policy's pixel constants are
      meant for (see `augment_policies`).
  """

  aug_type: Optional[common.Augmentation] = None
  augment_reference_size: Optional[float] = 640


@dataclasses.dataclass
class SegmentationTaskConfig(seg_cfg.SemanticSegmentationTask):
  """Model Garden's segmentation task config, plus the init report's two
  fields (see `DetectionTaskConfig`)."""

  train_data: SegmentationDataConfig = dataclasses.field(
    default_factory=lambda: SegmentationDataConfig(is_training=True)
  )
  validation_data: SegmentationDataConfig = dataclasses.field(
    default_factory=lambda: SegmentationDataConfig(is_training=False)
  )
  init_checkpoint_modules: str = 'backbone'
  # Model Garden's eval image summaries reach Orbit's scalar writer as
  # tensors and stop evaluation; overlays come from tools/visualize.py.
  allow_image_summary: bool = False
  init_checkpoint_converter: str = ''
  init_checkpoint_hint: str = ''
  init_checkpoint_skip: str = ''


def _decoder(name, filters, repeats, separable) -> decoders.Decoder:
  if name == 'fpn':
    return decoders.Decoder(
      type='fpn',
      fpn=decoders.FPN(num_filters=filters, use_separable_conv=separable),
    )
  if name != 'nasfpn':
    raise ValueError(
      f"segmentation_model.decoder = {name!r}: expected 'nasfpn' or 'fpn'"
    )
  return decoders.Decoder(
    type='nasfpn',
    nasfpn=decoders.NASFPN(
      num_filters=filters, num_repeats=repeats, use_separable_conv=separable
    ),
  )


@gin.configurable
def segmentation_model(
  num_classes: int,
  input_size: int = 512,
  backbone: str = 'efficientnet',
  backbone_params: Optional[Dict[str, Any]] = None,
  min_level: int = 3,
  max_level: int = 7,
  decoder: str = 'nasfpn',
  decoder_filters: int = 256,
  decoder_repeats: int = 7,
  separable_conv: bool = True,
  head_level: int = 2,
  head_convs: int = 3,
  head_filters: int = 256,
  activation: str = 'swish',
  use_sync_bn: bool = True,
  norm_momentum: float = 0.997,
) -> seg_cfg.SemanticSegmentationModel:
  """Backbone + NAS-FPN (P{min_level}..P{max_level}) + the summing head.

  Args:
    num_classes: including background (21 for PASCAL VOC).
    input_size: square input side (a multiple of 2**max_level).
    backbone: Model Garden backbone type ('efficientnet', 'resnet', ...).
    backbone_params: fields of that backbone's config, e.g. {'model_id':
      'b7', 'se_ratio': 0.25}; 'l2' is EfficientNet-L2.
    min_level: lowest NAS-FPN level (P3).
    max_level: highest NAS-FPN level (P7).
    decoder: 'nasfpn' (the paper) or 'fpn' (Model Garden's FPN).
    decoder_filters: NAS-FPN channels.
    decoder_repeats: NAS-FPN cells (7 in the paper).
    separable_conv: NAS-FPN with separable convolutions (the paper: yes).
    head_level: every decoder level is upsampled to this one and summed (P2).
    head_convs: 3x3 convs after the sum (3).
    head_filters: their channels.
    activation: of backbone, decoder and head.
    use_sync_bn: batch norm statistics over all replicas.
    norm_momentum: batch norm momentum (0.997 in the paper).

  Returns:
    A `SemanticSegmentationModel` config.
  """
  backbone_config = backbones.Backbone(type=backbone)
  backbone_config.get().override(backbone_params or {}, is_strict=True)
  return seg_cfg.SemanticSegmentationModel(
    num_classes=num_classes,
    input_size=[input_size, input_size, 3],
    min_level=min_level,
    max_level=max_level,
    backbone=backbone_config,
    decoder=_decoder(decoder, decoder_filters, decoder_repeats, separable_conv),
    head=seg_cfg.SegmentationHead(
      level=head_level,
      num_convs=head_convs,
      num_filters=head_filters,
      feature_fusion='pyramid_fusion',
      prediction_kernel_size=1,
    ),
    norm_activation=common.NormActivation(
      activation=activation,
      use_sync_bn=use_sync_bn,
      norm_momentum=norm_momentum,
    ),
  )


def _data(pattern, training: bool, batch: int, size: int, **kwargs):
  # Model Garden's default mean / stddev are tuples, which params.yaml would
  # write with a Python-only tag; lists keep it readable by yaml.safe_load.
  feature = seg_cfg.DenseFeatureConfig()
  feature.mean, feature.stddev = list(feature.mean), list(feature.stddev)
  return SegmentationDataConfig(
    input_path=pattern,
    is_training=training,
    global_batch_size=batch,
    output_size=[size, size],
    drop_remainder=training,
    image_feature=feature,
    **kwargs,
  )


@gin.configurable
def segmentation_experiment(
  data: datasets.DetectionData = gin.REQUIRED,
  policy: str = 'S1',
  train_batch_size: int = 256,
  eval_batch_size: int = 8,
  train_steps: int = gin.REQUIRED,
  weight_decay: float = 1e-5,
  init: Optional[str] = None,
  init_checkpoint_modules: str = 'backbone',
  init_checkpoint_skip: str = '',
  steps_per_loop: int = 100,
  checkpoint_interval: int = 1000,
  summary_interval: int = 100,
  validation_interval: int = 5000,
  max_to_keep: int = 5,
  input_dtype: str = 'float32',
  shuffle_buffer_size: int = 10000,
  seed: Optional[int] = None,
  deterministic: bool = True,
  overrides: Optional[Dict[str, Any]] = None,
) -> experiment_lib.Experiment:
  """A supervised semantic segmentation experiment on human label maps.

  Args:
    data: a dataset whose records hold `image/segmentation/class/encoded`,
      e.g. `@pascal_voc()` or `@shapes_det()` (its semantic maps).
    policy: augmentation policy ('S1'..'S4'), on image and label map.
    train_batch_size: global train batch.
    eval_batch_size: global eval batch.
    train_steps: total train steps (cosine to 0, `cosine_schedule` bindings).
    weight_decay: L2 weight decay (1e-5 in the paper's PASCAL runs).
    init: 'rand_init' (or None), a name the dataset knows, or a checkpoint
      (see `detection_experiment`).
    init_checkpoint_modules: 'backbone', 'backbone,decoder' or 'all'.
    init_checkpoint_skip: keys kept at their initialisation (a regular
      expression; see `detection_experiment`).
    steps_per_loop: steps per inner loop.
    checkpoint_interval: save a checkpoint every N steps.
    summary_interval: TensorBoard train summaries every N steps.
    validation_interval: evaluate every N steps in train_and_eval.
    max_to_keep: checkpoints kept.
    input_dtype: dtype of the input images ('bfloat16' on TPU).
    shuffle_buffer_size: tf.data shuffle buffer.
    seed: seeds init, shuffling and augmentation (None: unseeded).
    deterministic: with a seed, TF ops deterministic too.
    overrides: dotted Model Garden config keys set last (escape hatch).

  Returns:
    An Experiment running `tasks.segmentation.SegmentationTask`.
  """
  model = segmentation_model(num_classes=data.num_classes)
  size = model.input_size[0]
  train_data = _data(
    data.train_pattern,
    True,
    train_batch_size,
    size,
    dtype=input_dtype,
    shuffle_buffer_size=shuffle_buffer_size,
    seed=seed,
  )
  _apply_policy(train_data, policy)
  task = SegmentationTaskConfig(
    model=model,
    train_data=train_data,
    validation_data=_data(
      data.val_pattern, False, eval_batch_size, size, dtype=input_dtype
    ),
    losses=seg_cfg.Losses(
      l2_weight_decay=weight_decay, ignore_label=IGNORE_LABEL
    ),
    init_checkpoint_modules=init_checkpoint_modules,
  )
  detection_cfg.apply_init(task, init, data, init_checkpoint_skip)
  trainer = cfg.TrainerConfig(
    train_steps=train_steps,
    validation_steps=detection_cfg.eval_steps(data.num_val, eval_batch_size),
    validation_interval=validation_interval,
    steps_per_loop=steps_per_loop,
    summary_interval=summary_interval,
    checkpoint_interval=checkpoint_interval,
    max_to_keep=max_to_keep,
    optimizer_config=detection_cfg.cosine_schedule(train_steps=train_steps),
  )
  return detection_cfg.finish_experiment(
    task,
    trainer,
    overrides,
    prepare=data.prepare,
    seed=seed,
    deterministic=deterministic,
    test_split=detection_cfg.test_split(data),
  )


def _apply_policy(data: SegmentationDataConfig, policy: str) -> None:
  """Sets Augment-S1..S4 on a segmentation data config, in place."""
  resolved = augment_policies.augment_policy(name=policy)
  data.aug_type = resolved.aug_type
  data.aug_rand_hflip = resolved.hflip
  data.aug_scale_min, data.aug_scale_max = resolved.scale_jitter
  data.augment_reference_size = resolved.reference_size
