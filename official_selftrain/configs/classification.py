"""Image classification configs: pre-training the detector's backbone.

The paper's ImageNet Init is a backbone trained as an ImageNet classifier; in
the miniature, `shapes_cls_pretrain.gin` trains the Shapes detector's own
backbone (the `retinanet_model` bindings) as a Shapes-Cls classifier, so its
checkpoint restores into the detector as `detection_experiment.init =
'imagenet'`. The task is Model Garden's image classification
(`official.vision.tasks.image_classification`), its parser included.
"""

import dataclasses
from typing import Any
from typing import Dict
from typing import Optional

import gin
from official.core import config_definitions as cfg
from official.vision.configs import image_classification as ic_cfg

from official_selftrain.configs import classification_data
from official_selftrain.configs import detection as detection_cfg
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import datasets


@dataclasses.dataclass
class ClassificationTaskConfig(ic_cfg.ImageClassificationTask):
  """Model Garden's classification task config, plus the init report's
  two fields (see `DetectionTaskConfig`)."""

  init_checkpoint_converter: str = ''
  init_checkpoint_hint: str = ''


def detector_backbone_model(
  num_classes: int,
  dropout_rate: float,
  stochastic_depth_drop_rate: float,
) -> ic_cfg.ImageClassificationModel:
  """A classifier on the backbone the `retinanet_model` bindings build.

  Backbone type, width, activation and batch norm come from the detector's
  config, so the classifier's backbone variables are the detector's.
  """
  detector = detection_cfg.retinanet_model(num_classes=num_classes)
  backbone = detector.backbone.replace()
  if stochastic_depth_drop_rate:
    backbone.get().stochastic_depth_drop_rate = stochastic_depth_drop_rate
  return ic_cfg.ImageClassificationModel(
    num_classes=num_classes,
    input_size=list(detector.input_size),
    backbone=backbone,
    dropout_rate=dropout_rate,
    norm_activation=detector.norm_activation.replace(),
  )


def _trainer(train_steps: int, validation_steps: int, **intervals):
  """Orbit's loop settings; the best checkpoint by held-out top-1."""
  return cfg.TrainerConfig(
    train_steps=train_steps,
    validation_steps=validation_steps,
    max_to_keep=3,
    optimizer_config=detection_cfg.cosine_schedule(train_steps=train_steps),
    best_checkpoint_eval_metric='accuracy',
    best_checkpoint_metric_comp='higher',
    **intervals,
  )


@gin.configurable
def classification_experiment(
  data: datasets.ClassificationData = gin.REQUIRED,
  train_batch_size: int = 64,
  eval_batch_size: int = 100,
  train_steps: int = gin.REQUIRED,
  weight_decay: float = 4e-5,
  label_smoothing: float = 0.1,
  randaugment_magnitude: Optional[float] = None,
  dropout_rate: float = 0.0,
  stochastic_depth_drop_rate: float = 0.0,
  steps_per_loop: int = 100,
  checkpoint_interval: int = 500,
  summary_interval: int = 100,
  validation_interval: int = 1000,
  shuffle_buffer_size: int = 10000,
  seed: Optional[int] = None,
  deterministic: bool = True,
  overrides: Optional[Dict[str, Any]] = None,
) -> experiment_lib.Experiment:
  """The detector's backbone trained as a classifier (ImageNet Init's recipe).

  Args:
    data: a classification dataset, e.g. `@shapes_cls()`.
    train_batch_size: global train batch.
    eval_batch_size: global eval batch.
    train_steps: total train steps (cosine to 0, `cosine_schedule` bindings).
    weight_decay: L2 weight decay.
    label_smoothing: of the cross-entropy.
    randaugment_magnitude: RandAugment (2 layers) at this magnitude; None:
      off (Noisy Student's student turns it on).
    dropout_rate: before the classifier's logits.
    stochastic_depth_drop_rate: the backbone's stochastic depth.
    steps_per_loop: steps per inner loop.
    checkpoint_interval: save every N steps.
    summary_interval: TensorBoard summaries every N steps.
    validation_interval: evaluate the held-out split every N steps.
    shuffle_buffer_size: tf.data shuffle buffer.
    seed: seeds init, shuffling and augmentation (None: unseeded).
    deterministic: with a seed, TF ops deterministic too.
    overrides: dotted Model Garden config keys set last (escape hatch).

  Returns:
    An Experiment running Model Garden's image classification task.
  """
  aug = dict(
    seed=seed,
    shuffle_buffer_size=shuffle_buffer_size,
  )
  task = ClassificationTaskConfig(
    model=detector_backbone_model(
      data.num_classes, dropout_rate, stochastic_depth_drop_rate
    ),
    train_data=classification_data.classification_data(
      data.train_pattern,
      True,
      train_batch_size,
      randaugment_magnitude=randaugment_magnitude,
      **aug,
    ),
    validation_data=classification_data.classification_data(
      data.val_pattern,
      False,
      eval_batch_size,
      randaugment_magnitude=None,
      **aug,
    ),
    losses=ic_cfg.Losses(
      l2_weight_decay=weight_decay, label_smoothing=label_smoothing
    ),
    evaluation=ic_cfg.Evaluation(top_k=5),
  )
  trainer = _trainer(
    train_steps,
    detection_cfg.eval_steps(data.num_val, eval_batch_size),
    validation_interval=validation_interval,
    steps_per_loop=steps_per_loop,
    summary_interval=summary_interval,
    checkpoint_interval=checkpoint_interval,
  )
  return detection_cfg.finish_experiment(
    task,
    trainer,
    overrides,
    prepare=data.prepare,
    seed=seed,
    deterministic=deterministic,
  )
