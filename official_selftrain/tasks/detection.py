"""Supervised RetinaNet detection: Model Garden's task with three changes.

1. The focal and box losses are normalised by the number of positive anchors
   summed over *all* replicas (Model Garden normalises per replica), so a step
   under MirroredStrategy / TPU computes the same gradient as one device on the
   same global batch; the MirroredStrategy test checks it.
2. The input pipeline can skip records whose image does not decode
   (`skip_corrupt_records`), after a scan that names and counts them
   (`official_selftrain.data.record_check`).

3. Its parser is `data.parsers.RetinaNetParser`: Model Garden's, with the
   Augment-S2..S4 step done jointly on image and boxes and boxes cut to
   slivers dropped (`min_visible`).
4. Under a mixed-precision policy, 'batched' NMS gets float32 inputs (see
   `ops.mixed_precision_nms`).
5. The init checkpoint is restored variable by variable with a report, and
   a checkpoint that restores nothing or does not fit is an error
   (`init_restore`).
6. Joint training (PAPER.md Table 7, `joint_weight` > 0): each step also
   reads a classification batch (Shapes-Cls / ImageNet) and adds
   `joint_weight` times its cross-entropy through a classification head on
   the backbone's top features.

Everything else (model, anchors, COCO evaluation) is Model Garden's.
"""

from typing import Any
from typing import Mapping
from typing import Optional

from absl import logging
from official.core import task_factory
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.dataloaders import classification_input
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import tf_example_decoder
from official.vision.losses import focal_loss
from official.vision.losses import loss_utils
from official.vision.tasks import retinanet
import tensorflow as tf
import tf_keras

from official_selftrain.configs import detection as detection_cfg
from official_selftrain.data import parsers
from official_selftrain.data import record_check
from official_selftrain.losses import soft_focal_loss
from official_selftrain.ops import mixed_precision_nms
from official_selftrain.pseudo_labels import schema
from official_selftrain.tasks import init_restore


def global_num_positives(box_weights: tf.Tensor) -> tf.Tensor:
  """Positive anchors in the global batch (+1, as Model Garden, to avoid 0)."""
  local = tf.reduce_sum(box_weights)
  context = tf.distribute.get_replica_context()
  if context is not None and context.num_replicas_in_sync > 1:
    local = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
  return local + 1.0


def skipping_dataset_fn(bad_records):
  """A TFRecord dataset_fn that drops the (file, index) pairs in `bad_records`.

  Model Garden's readers call `dataset_fn` with one file name or a list.

  Args:
    bad_records: iterable of `record_check.BadRecord`.

  Returns:
    dataset_fn for `input_reader_factory.input_reader_generator`.
  """
  keys = [f'{r.path}:{r.index}' for r in bad_records]
  table = None
  if keys:
    table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys), tf.ones([len(keys)], tf.int32)
      ),
      0,
    )

  def records_of(path):
    records = tf.data.TFRecordDataset(path)
    if table is None:
      return records

    def keep(index, _):
      key = tf.strings.join([path, ':', tf.strings.as_string(index)])
      return table.lookup(key) == 0

    return records.enumerate().filter(keep).map(lambda _, r: r)

  def dataset_fn(paths):
    paths = tf.reshape(tf.convert_to_tensor(paths, tf.string), [-1])
    return tf.data.Dataset.from_tensor_slices(paths).flat_map(records_of)

  return dataset_fn


# Keys of joint training's classification batch among the labels.
JOINT_IMAGES = 'joint_images'
JOINT_LABELS = 'joint_labels'


def pop_joint_inputs(labels):
  """(labels without the joint batch, the joint batch or None)."""
  if JOINT_IMAGES not in labels:
    return labels, None
  labels = dict(labels)
  joint = {k: labels.pop(k) for k in (JOINT_IMAGES, JOINT_LABELS)}
  return labels, joint


def top_level(endpoints):
  """The deepest level of a backbone's {'2': ..., '5': ...} endpoints."""
  return endpoints[max(endpoints, key=int)]


def add_joint_head(model, num_classes: int) -> None:
  """A classification head on the backbone's top level (global average
  pooling, then logits), tracked by the model so it is checkpointed."""
  top = top_level(model.backbone.output_specs)
  head = tf_keras.layers.Dense(num_classes, name='joint_classifier')
  head.build([None, top[-1]])
  model.joint_head = head


def scaled_for_replicas(loss, optimizer, num_replicas: int):
  """The loss each replica differentiates (and the loss scale, if any)."""
  scaled = loss / num_replicas
  if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
    scaled = optimizer.get_scaled_loss(scaled)
  return scaled


def apply_gradients(tape, scaled_loss, model, optimizer) -> None:
  """Model Garden's update: gradients (unscaled) applied to the weights."""
  tvars = model.trainable_variables
  grads = tape.gradient(scaled_loss, tvars)
  if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
    grads = optimizer.get_unscaled_gradients(grads)
  optimizer.apply_gradients(list(zip(grads, tvars)))


@task_factory.register_task_cls(detection_cfg.DetectionTaskConfig)
class DetectionTask(retinanet.RetinaNetTask):
  """RetinaNet on human labels (the teacher, and the supervised baselines)."""

  def build_model(self):
    """Model Garden's RetinaNet; float32 NMS inputs under a mixed policy."""
    model = mixed_precision_nms.float32_nms(
      super().build_model(), self.task_config.model
    )
    if self.task_config.joint_weight:
      add_joint_head(model, self.task_config.joint_num_classes)
    return model

  def initialize(self, model: tf_keras.Model):
    """Restores the init checkpoint, with a report (see `init_restore`)."""
    init_restore.initialize(model, self.task_config, self.logging_dir)

  def build_parser(self, params: detection_cfg.DetectionDataConfig):
    """The RetinaNet parser with this task's anchors and policy."""
    model = self.task_config.model
    return parsers.RetinaNetParser(
      output_size=model.input_size[:2],
      min_level=model.min_level,
      max_level=model.max_level,
      num_scales=model.anchor.num_scales,
      aspect_ratios=model.anchor.aspect_ratios,
      anchor_size=model.anchor.anchor_size,
      dtype=params.dtype,
      match_threshold=params.parser.match_threshold,
      unmatched_threshold=params.parser.unmatched_threshold,
      box_coder_weights=model.detection_generator.box_coder_weights,
      aug_type=params.parser.aug_type,
      aug_rand_hflip=params.parser.aug_rand_hflip,
      aug_rand_jpeg=params.parser.aug_rand_jpeg,
      aug_scale_min=params.parser.aug_scale_min,
      aug_scale_max=params.parser.aug_scale_max,
      skip_crowd_during_training=params.parser.skip_crowd_during_training,
      max_num_instances=params.parser.max_num_instances,
      pad=params.parser.pad,
      keep_aspect_ratio=params.parser.keep_aspect_ratio,
      min_visible=params.parser.min_visible,
      augment_reference_size=params.parser.augment_reference_size,
    )

  def build_dataset_fn(self, params: retinanet_cfg.DataConfig):
    """TFRecord reader; with `skip_corrupt_records`, one that skips bad ones."""
    if not self.task_config.skip_corrupt_records:
      return tf.data.TFRecordDataset
    bad = record_check.find_undecodable_records(
      params.input_path,
      cache_dir=self.task_config.corrupt_records_cache_dir or None,
    )
    if bad:
      logging.warning(
        'Skipping %d record(s) whose image does not decode '
        '(skip_corrupt_records=True): %s',
        len(bad),
        '; '.join(str(r) for r in bad[:10]),
      )
    return skipping_dataset_fn(bad)

  def build_decoder(self, params: retinanet_cfg.DataConfig):
    """Model Garden's TF Example decoder for the detection schema."""
    return tf_example_decoder.TfExampleDecoder(
      regenerate_source_id=params.decoder.get().regenerate_source_id
    )

  def build_inputs(
    self,
    params: retinanet_cfg.DataConfig,
    input_context: Optional[tf.distribute.InputContext] = None,
  ):
    """Reads TF Examples in Model Garden's detection schema (training with
    joint training: each batch with its classification batch)."""
    if params.tfds_name:
      dataset = super().build_inputs(params, input_context)
    else:
      reader = input_reader_factory.input_reader_generator(
        params,
        dataset_fn=self.build_dataset_fn(params),
        decoder_fn=self.build_decoder(params).decode,
        combine_fn=input_reader.create_combine_fn(params),
        parser_fn=self.build_parser(params).parse_fn(params.is_training),
      )
      dataset = reader.read(input_context=input_context)
    if not (params.is_training and self.task_config.joint_weight):
      return dataset

    def merge(detection, classification):
      features, labels = detection
      images, classes = classification
      return features, {**labels, JOINT_IMAGES: images, JOINT_LABELS: classes}

    joint = self.build_joint_inputs(input_context)
    return tf.data.Dataset.zip((dataset, joint)).map(merge)

  def build_joint_inputs(self, input_context=None) -> tf.data.Dataset:
    """Joint training's classification batches (Model Garden's reader)."""
    params = self.task_config.joint_data
    parser = classification_input.Parser(
      output_size=self.task_config.model.input_size[:2],
      num_classes=self.task_config.joint_num_classes,
      aug_rand_hflip=params.aug_rand_hflip,
      aug_crop=params.aug_crop,
      dtype=self.task_config.train_data.dtype,
    )
    reader = input_reader_factory.input_reader_generator(
      params,
      dataset_fn=tf.data.TFRecordDataset,
      decoder_fn=classification_input.Decoder().decode,
      parser_fn=parser.parse_fn(True),
    )
    return reader.read(input_context=input_context)

  def detection_losses(
    self,
    outputs: Mapping[str, Any],
    labels: Mapping[str, Any],
    background_weight: float = 1.0,
    box_loss_scale: float = 1.0,
    soft_targets: bool = False,
  ):
    """Focal + Huber box loss of RetinaNet, normalised over the global batch.

    Each replica returns its share scaled by the number of replicas, so that
    Model Garden's `train_step` (which divides by it) and the sum of gradients
    across replicas give the gradient of the one-device loss.

    Args:
      outputs: model outputs with 'cls_outputs' and 'box_outputs'.
      labels: parser labels with targets and weights.
      background_weight: weight of the anchors matched to background in the
        focal loss (1.0: RetinaNet's; the student's pseudo half may lower it).
      box_loss_scale: factor on the box loss in model_loss (1.0: RetinaNet's;
        the student's pseudo half may lower it); box_loss is returned unscaled.
      soft_targets: the class target of each positive anchor is its box's
        soft target (`labels['attribute_targets'][schema.SOFT_TARGET]`, the
        teacher's score for a soft pseudo box, else 1), and its box loss is
        weighted by it (the student's pseudo half with a soft floor).

    Returns:
      (model_loss, cls_loss, box_loss), each a scalar.
    """
    params = self.task_config
    num_classes = params.model.num_classes
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    cls_targets = loss_utils.multi_level_flatten(
      labels['cls_targets'], last_dim=None
    )
    # Anchors matched to an ignore region (label >= num_classes, see
    # IGNORE_LABEL) are neither positive nor negative.
    keep = tf.cast(cls_targets < num_classes, tf.float32)
    cls_targets = tf.where(cls_targets < num_classes, cls_targets, 0)
    target = 1.0
    if soft_targets:
      # Matched anchors carry their box's target; the others (background:
      # class -1 from Model Garden's labeller, an all-zero one-hot) keep 1.
      target = tf.where(
        cls_targets > 0,
        loss_utils.multi_level_flatten(
          labels['attribute_targets'][schema.SOFT_TARGET], last_dim=None
        ),
        1.0,
      )
    box_weights = labels['box_weights'] * keep * target
    num_positives = global_num_positives(box_weights)
    cls_weight = labels['cls_weights'] * keep * (num_replicas / num_positives)
    if background_weight != 1.0:
      # Background anchors: Model Garden's labeller gives them class -1 (0 is
      # the background column of a one-hot and no object's class).
      cls_weight *= tf.where(cls_targets <= 0, background_weight, 1.0)
    y_true_cls = tf.one_hot(cls_targets, num_classes)
    if soft_targets:
      y_true_cls *= target[..., None]
    cls_loss = self._focal_loss(
      y_true_cls, outputs['cls_outputs'], cls_weight, soft_targets
    )
    box_loss_fn = tf_keras.losses.Huber(
      params.losses.huber_loss_delta, reduction=tf_keras.losses.Reduction.SUM
    )
    box_loss = box_loss_fn(
      y_true=loss_utils.multi_level_flatten(labels['box_targets'], last_dim=4),
      y_pred=loss_utils.multi_level_flatten(outputs['box_outputs'], last_dim=4),
      sample_weight=box_weights * (num_replicas / num_positives),
    )
    box_scale = params.losses.box_loss_weight * box_loss_scale
    model_loss = cls_loss + box_scale * box_loss
    return model_loss, cls_loss, box_loss

  def _focal_loss(self, y_true, cls_outputs, weight, soft: bool) -> tf.Tensor:
    """Model Garden's summed focal loss, or its soft-target form."""
    losses = self.task_config.losses
    y_pred = loss_utils.multi_level_flatten(
      cls_outputs, last_dim=self.task_config.model.num_classes
    )
    if soft:
      return soft_focal_loss.soft_focal_loss(
        y_true,
        y_pred,
        weight,
        alpha=losses.focal_loss_alpha,
        gamma=losses.focal_loss_gamma,
      )
    loss_fn = focal_loss.FocalLoss(
      alpha=losses.focal_loss_alpha,
      gamma=losses.focal_loss_gamma,
      reduction=tf_keras.losses.Reduction.SUM,
    )
    return loss_fn(y_true=y_true, y_pred=y_pred, sample_weight=weight)

  def joint_loss(self, model, joint) -> tf.Tensor:
    """Cross-entropy of the classification head on the joint batch (mean
    over this replica's images)."""
    top = top_level(model.backbone(joint[JOINT_IMAGES], training=True))
    logits = model.joint_head(tf.reduce_mean(top, axis=[1, 2]))
    return tf.reduce_mean(
      tf_keras.losses.sparse_categorical_crossentropy(
        joint[JOINT_LABELS], tf.cast(logits, tf.float32), from_logits=True
      )
    )

  def step_losses(self, model, inputs) -> Mapping[str, tf.Tensor]:
    """Every loss of one training step; 'total_loss' is differentiated.

    With joint training, total = detection total + loss_weight *
    joint_weight * joint loss.
    """
    features, labels = inputs
    labels, joint = pop_joint_inputs(labels)
    outputs = model(features, training=True)
    outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
    # By keyword, as Model Garden's train_step calls it.
    total, cls_loss, box_loss, model_loss = self.build_losses(
      outputs=outputs, labels=labels, aux_losses=model.losses
    )
    losses = {
      'total_loss': total,
      'cls_loss': cls_loss,
      'box_loss': box_loss,
      'model_loss': model_loss,
    }
    if joint is not None:
      losses['joint_loss'] = self.joint_loss(model, joint)
      losses['total_loss'] = total + (
        self.task_config.losses.loss_weight
        * self.task_config.joint_weight
        * losses['joint_loss']
      )
    return losses

  def build_metrics(self, training: bool = True):
    metrics = super().build_metrics(training)
    if training and self.task_config.joint_weight:
      metrics.append(tf_keras.metrics.Mean('joint_loss', dtype=tf.float32))
    return metrics

  def train_step(self, inputs, model, optimizer, metrics=None):
    """Model Garden's RetinaNet step, its losses from `step_losses`."""
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      losses = self.step_losses(model, inputs)
      scaled = scaled_for_replicas(
        losses['total_loss'], optimizer, num_replicas
      )
    apply_gradients(tape, scaled, model, optimizer)
    logs = {self.loss: losses['total_loss']}
    for metric in metrics or []:
      metric.update_state(losses[metric.name])
      logs[metric.name] = metric.result()
    return logs

  def build_losses(
    self,
    outputs: Mapping[str, Any],
    labels: Mapping[str, Any],
    aux_losses: Optional[Any] = None,
  ):
    """Total loss = detection loss + weight decay (as Model Garden's)."""
    if self.task_config.model.head.attribute_heads:
      raise NotImplementedError('Attribute heads are not supported here.')
    model_loss, cls_loss, box_loss = self.detection_losses(outputs, labels)
    total_loss = model_loss
    if aux_losses:
      total_loss += tf.reduce_sum(aux_losses)
    total_loss = self.task_config.losses.loss_weight * total_loss
    return total_loss, cls_loss, box_loss, model_loss
