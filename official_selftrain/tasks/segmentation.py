"""Semantic segmentation: Model Garden's task with four changes.

0. The loss (Model Garden's pixel cross-entropy, ignore label excluded) is
   normalised by the valid pixels of the *global* batch, not each replica's,
   so a step under MirroredStrategy / TPU computes the gradient one device
   computes on the same batch (as detection's positives, `tasks/detection`).
1. Its parser is `data.parsers.SegmentationParser`: Model Garden's, with the
   Augment-S2..S4 step done jointly on image and label map.
2. The init checkpoint is restored variable by variable with a report, and a
   checkpoint that restores nothing or does not fit is an error
   (`init_restore`), as for detection.
3. Evaluation reports `mIoU` (Model Garden's mean over classes of its
   per-class IoU, ignore label excluded) beside `mean_iou` and `iou/{class}`,
   so results read alike across tasks; and counts every batch (Model
   Garden's loses the first, see `aggregate_logs`).

Model (EfficientNet + NAS-FPN + head), loss and metric are Model Garden's.
`SegmentationStudentTask` is the self-training student on [human | pseudo]
batches with Loss Normalization (PAPER.md, "The recipe"), as detection's.
"""

from typing import Any
from typing import List
from typing import Optional

from official.core import task_factory
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import segmentation_input
from official.vision.losses import segmentation_losses
from official.vision.tasks import semantic_segmentation
import tensorflow as tf
import tf_keras

from official_selftrain.configs import segmentation as segmentation_cfg
from official_selftrain.configs import self_training as st_cfg
from official_selftrain.data import parsers
from official_selftrain.tasks import detection
from official_selftrain.tasks import init_restore
from official_selftrain.tasks import self_training

MIOU = 'mIoU'


@task_factory.register_task_cls(segmentation_cfg.SegmentationTaskConfig)
class SegmentationTask(semantic_segmentation.SemanticSegmentationTask):
  """Semantic segmentation on human label maps."""

  def initialize(self, model: tf_keras.Model):
    """Restores the init checkpoint, with a report (see `init_restore`)."""
    init_restore.initialize(model, self.task_config, self.logging_dir)

  def build_parser(self, params: segmentation_cfg.SegmentationDataConfig):
    """Model Garden's segmentation parser with this task's policy."""
    losses = self.task_config.losses
    return parsers.SegmentationParser(
      output_size=params.output_size,
      crop_size=params.crop_size,
      ignore_label=losses.ignore_label,
      resize_eval_groundtruth=params.resize_eval_groundtruth,
      gt_is_matting_map=losses.gt_is_matting_map,
      groundtruth_padded_size=params.groundtruth_padded_size,
      aug_scale_min=params.aug_scale_min,
      aug_scale_max=params.aug_scale_max,
      aug_rand_hflip=params.aug_rand_hflip,
      preserve_aspect_ratio=params.preserve_aspect_ratio,
      dtype=params.dtype,
      image_feature=params.image_feature,
      additional_dense_features=params.additional_dense_features,
      centered_crop=params.centered_crop,
      aug_type=params.aug_type,
      augment_reference_size=params.augment_reference_size,
    )

  def build_inputs(
    self,
    params: segmentation_cfg.SegmentationDataConfig,
    input_context: Optional[tf.distribute.InputContext] = None,
  ):
    """TFRecords in Model Garden's segmentation schema, parsed as above."""
    if params.tfds_name:
      return super().build_inputs(params, input_context)
    decoder = segmentation_input.Decoder(
      image_feature=params.image_feature,
      additional_dense_features=params.additional_dense_features,
    )
    reader = input_reader_factory.input_reader_generator(
      params,
      dataset_fn=tf.data.TFRecordDataset,
      decoder_fn=decoder.decode,
      combine_fn=input_reader.create_combine_fn(params),
      parser_fn=self.build_parser(params).parse_fn(params.is_training),
    )
    return reader.read(input_context=input_context)

  def segmentation_loss(self, logits, labels) -> tf.Tensor:
    """Model Garden's loss on this replica's batch, rescaled to this
    replica's share (times the replica count) of the global-batch loss."""
    losses = self.task_config.losses
    loss_fn = segmentation_losses.SegmentationLoss(
      label_smoothing=losses.label_smoothing,
      class_weights=losses.class_weights,
      ignore_label=losses.ignore_label,
      use_groundtruth_dimension=losses.use_groundtruth_dimension,
      top_k_percent_pixels=losses.top_k_percent_pixels,
    )
    masks = labels['masks']
    # Model Garden divides by this replica's valid pixels: undone, then
    # divided by the global batch's (its top-k option has no such form).
    local = tf.reduce_sum(
      tf.cast(tf.not_equal(masks, losses.ignore_label), tf.float32)
    )
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas == 1 or losses.top_k_percent_pixels < 1.0:
      return loss_fn(logits, masks)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    return loss_fn(logits, masks) * local * replicas / (total + 1e-5)

  def build_losses(self, labels, model_outputs, aux_losses=None):
    """The segmentation loss (above), plus the weight decay."""
    loss = self.segmentation_loss(model_outputs['logits'], labels)
    if aux_losses:
      loss += tf.add_n(aux_losses)
    return self.task_config.losses.loss_weight * loss

  def aggregate_logs(self, state=None, step_outputs=None):
    """Keeps every batch in the IoU. Model Garden resets its IoU metric at
    the first call here, after `validation_step` has counted the first batch
    into it: that batch was lost (a one-batch evaluation read all zeros). The
    metric is reset once each evaluation's result is read instead."""
    return True if state is None else state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    logs = super().reduce_aggregated_logs(aggregated_logs, global_step)
    if self.iou_metric is not None:
      self.iou_metric.reset_states()
    if 'mean_iou' in logs:
      logs[MIOU] = logs['mean_iou']
    return logs


@task_factory.register_task_cls(st_cfg.SegmentationStudentTaskConfig)
class SegmentationStudentTask(
  self_training.LossNormalizedStudent, SegmentationTask
):
  """The segmentation student: each replica's batch is [human | pseudo]
  (Model Garden's combination reader; pseudo maps already thresholded at
  export, their unsure pixels 255), one loss per half, Loss Normalization."""

  def build_metrics(self, training: bool = True) -> List[Any]:
    if not training:
      return super().build_metrics(training)
    return self.student_metrics()

  def train_step(self, inputs, model, optimizer, metrics=None):
    """One student step: losses per half, EMAs, Loss Normalization."""
    features, labels = inputs
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    human = self.batch_split().per_replica(replicas).human
    with tf.GradientTape() as tape:
      logits = tf.cast(model(features, training=True)['logits'], tf.float32)
      logits_h, logits_p = self_training.split_batch(logits, human)
      labels_h, labels_p = self_training.split_batch(labels, human)
      losses = (
        self.segmentation_loss(logits_h, labels_h),
        self.segmentation_loss(logits_p, labels_p),
      )
      model_loss, values = self.student_loss(
        model, *losses, self_training.global_losses(losses)
      )
      total_loss = model_loss
      if model.losses:
        total_loss += tf.add_n(model.losses)
      total_loss = self.task_config.losses.loss_weight * total_loss
      scaled = detection.scaled_for_replicas(total_loss, optimizer, replicas)
    detection.apply_gradients(tape, scaled, model, optimizer)
    values['total_loss'] = total_loss
    return self_training.update_metrics(
      metrics, values, {self.loss: total_loss}
    )
