"""Semantic segmentation: Model Garden's task with three changes.

1. Its parser is `data.parsers.SegmentationParser`: Model Garden's, with the
   Augment-S2..S4 step done jointly on image and label map.
2. The init checkpoint is restored variable by variable with a report, and a
   checkpoint that restores nothing or does not fit is an error
   (`init_restore`), as for detection.
3. Evaluation reports `mIoU` (Model Garden's mean over classes of its
   per-class IoU, ignore label excluded) beside `mean_iou` and `iou/{class}`,
   so results read alike across tasks.

Model (EfficientNet + NAS-FPN + head), loss and metric are Model Garden's.
"""

from typing import Optional

from official.core import task_factory
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import segmentation_input
from official.vision.tasks import semantic_segmentation
import tensorflow as tf
import tf_keras

from official_selftrain.configs import segmentation as segmentation_cfg
from official_selftrain.data import parsers
from official_selftrain.tasks import init_restore

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

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    logs = super().reduce_aggregated_logs(aggregated_logs, global_step)
    if 'mean_iou' in logs:
      logs[MIOU] = logs['mean_iou']
    return logs
