"""The student: RetinaNet on batches of human and pseudo labels together.

PAPER.md, "The recipe", step 3. Each replica's batch is [human | pseudo] at a
fixed split (Model Garden's `CombinationDatasetInputReader`: both halves pass
through the same parser, so the same augmentation policy), the pseudo boxes are
thresholded at read time (`pseudo_score_threshold`, the paper's 0.5), and the
loss is Loss Normalization over the two halves' losses, with EMAs shared by all
replicas (the losses are averaged across replicas before the EMA update).
"""

import dataclasses
from typing import Any
from typing import List
from typing import Optional
from typing import Tuple

from official.core import task_factory
from official.vision.configs import common
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import tf_example_decoder
import tensorflow as tf
import tf_keras

from official_selftrain.losses import loss_normalization as ln
from official_selftrain.tasks import detection

SCORE_KEY = 'image/object/score'


@dataclasses.dataclass
class SelfTrainingDataConfig(detection.DetectionDataConfig):
  """Train data: human-labelled input_path plus the pseudo-labelled set."""

  pseudo_label_data: common.PseudoLabelDataConfig = dataclasses.field(
    default_factory=common.PseudoLabelDataConfig
  )


@dataclasses.dataclass
class SelfTrainingTaskConfig(detection.DetectionTaskConfig):
  """The student's task.

  Attributes:
    train_data: human + pseudo-labelled data (data_ratio 1.0 = half and half).
    pseudo_score_threshold: pseudo boxes scored below this are not labels.
    pseudo_ignore_floor: if set, pseudo boxes scored in [floor, threshold) are
      ignore regions rather than background (beyond the paper; None: off).
    alpha: weight of the pseudo loss, a.
    ema_decay: decay of the loss EMAs (0.9997).
    loss_normalization: Loss Normalization (True) or the plain L_h + a * L_p.
  """

  train_data: SelfTrainingDataConfig = dataclasses.field(
    default_factory=lambda: SelfTrainingDataConfig(is_training=True)
  )
  pseudo_score_threshold: float = 0.5
  pseudo_ignore_floor: Optional[float] = None
  alpha: float = 1.0
  ema_decay: float = ln.EMA_DECAY
  loss_normalization: bool = True


class PseudoLabelDecoder(tf_example_decoder.TfExampleDecoder):
  """Model Garden's decoder, applying the read-time threshold to pseudo boxes.

  Boxes scored >= `score_threshold` are labels. With `ignore_floor`, boxes
  scored in [ignore_floor, score_threshold) become ignore regions (label
  `ignore_label`): the anchors they match are neither positive nor negative
  (see `DetectionTask.detection_losses`), so objects the teacher half-saw are
  not taught as background. Below the floor (or without one) boxes are dropped.
  Human-labelled examples carry no `image/object/score` and keep every box, so
  one decoder serves both halves of the batch.
  """

  def __init__(
    self,
    score_threshold: float,
    ignore_floor: Optional[float] = None,
    ignore_label: int = 0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self._score_threshold = score_threshold
    self._ignore_floor = ignore_floor
    self._ignore_label = ignore_label

  def decode(self, serialized_example):
    decoded = super().decode(serialized_example)
    scores = tf.io.parse_single_example(
      serialized_example, {SCORE_KEY: tf.io.VarLenFeature(tf.float32)}
    )[SCORE_KEY]
    scores = tf.sparse.to_dense(scores)
    num_boxes = tf.shape(decoded['groundtruth_classes'])[0]
    scores = tf.cond(
      tf.equal(tf.size(scores), 0),
      lambda: tf.ones([num_boxes], tf.float32),
      lambda: scores,
    )
    floor = (
      self._score_threshold
      if self._ignore_floor is None
      else self._ignore_floor
    )
    keep = scores >= floor
    for key in (
      'groundtruth_classes',
      'groundtruth_is_crowd',
      'groundtruth_area',
      'groundtruth_boxes',
    ):
      decoded[key] = tf.boolean_mask(decoded[key], keep)
    if self._ignore_floor is not None:
      uncertain = tf.boolean_mask(scores, keep) < self._score_threshold
      classes = decoded['groundtruth_classes']
      decoded['groundtruth_classes'] = tf.where(
        uncertain, tf.cast(self._ignore_label, classes.dtype), classes
      )
    return decoded


def split_batch(tree, human: int) -> Tuple[Any, Any]:
  """Splits every tensor of a nested structure at `human` along axis 0."""
  first = tf.nest.map_structure(lambda t: t[:human], tree)
  second = tf.nest.map_structure(lambda t: t[human:], tree)
  return first, second


@task_factory.register_task_cls(SelfTrainingTaskConfig)
class SelfTrainingTask(detection.DetectionTask):
  """The student of self-training (a teacher is any DetectionTask model)."""

  def human_batch_size(self) -> Tuple[int, int]:
    """Global (human, pseudo) batch sizes of the combined train batch."""
    data = self.task_config.train_data
    return input_reader.calculate_batch_sizes(
      data.global_batch_size,
      data.pseudo_label_data.data_ratio,
      data.pseudo_label_data.global_batch_size,
    )

  def build_model(self) -> tf_keras.Model:
    model = super().build_model()
    # Raw EMAs of L_h and L_p and their update count; tracked by the model so
    # they are checkpointed with it and resume with the run. Every replica
    # assigns the same (all-reduced) value.
    variable = lambda name, dtype: tf.Variable(  # noqa: E731
      tf.zeros([], dtype),
      trainable=False,
      name=name,
      synchronization=tf.VariableSynchronization.ON_WRITE,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    model.loss_ema_human = variable('loss_ema_human', tf.float32)
    model.loss_ema_pseudo = variable('loss_ema_pseudo', tf.float32)
    model.loss_ema_count = variable('loss_ema_count', tf.int64)
    return model

  def build_decoder(self, params):
    """Training reads pseudo labels too: the read-time threshold decoder."""
    if not params.is_training:
      return super().build_decoder(params)
    return PseudoLabelDecoder(
      self.task_config.pseudo_score_threshold,
      ignore_floor=self.task_config.pseudo_ignore_floor,
      ignore_label=self.task_config.model.num_classes,
      regenerate_source_id=params.decoder.get().regenerate_source_id,
    )

  def build_inputs(self, params, input_context=None):
    if params.is_training and params.tfds_name:
      raise ValueError(
        'The student reads human and pseudo labels from '
        'TFRecords; train_data.tfds_name is not supported.'
      )
    return super().build_inputs(params, input_context)

  def build_metrics(self, training: bool = True) -> List[Any]:
    if not training:
      return super().build_metrics(training)
    return [
      tf_keras.metrics.Mean(name, dtype=tf.float32)
      for name in (
        'total_loss',
        'model_loss',
        'human_loss',
        'pseudo_loss',
        'human_loss_ema',
        'pseudo_loss_ema',
      )
    ]

  def train_step(
    self,
    inputs,
    model: tf_keras.Model,
    optimizer: tf_keras.optimizers.Optimizer,
    metrics: Optional[List[Any]] = None,
  ):
    """One student step: losses per half, EMAs, Loss Normalization."""
    params = self.task_config
    features, labels = inputs
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync
    human_global, _ = self.human_batch_size()
    human = human_global // num_replicas

    def global_mean(value):
      if num_replicas == 1:
        return value
      return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)

    with tf.GradientTape() as tape:
      outputs = model(features, training=True)
      outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
      outputs_h, outputs_p = split_batch(
        {k: outputs[k] for k in ('cls_outputs', 'box_outputs')}, human
      )
      labels_h, labels_p = split_batch(labels, human)
      human_loss, _, _ = self.detection_losses(outputs_h, labels_h)
      pseudo_loss, _, _ = self.detection_losses(outputs_p, labels_p)
      # Each replica holds its share (times the replica count); the mean over
      # replicas is the loss of the global batch, the same on every replica.
      human_global_loss = global_mean(tf.stop_gradient(human_loss))
      pseudo_global_loss = global_mean(tf.stop_gradient(pseudo_loss))
      human_ema = ln.ema_update(
        model.loss_ema_human,
        model.loss_ema_count,
        human_global_loss,
        params.ema_decay,
      )
      pseudo_ema = ln.ema_update(
        model.loss_ema_pseudo,
        model.loss_ema_count,
        pseudo_global_loss,
        params.ema_decay,
      )
      model.loss_ema_count.assign_add(1)
      if params.loss_normalization:
        model_loss = ln.loss_normalization(
          human_loss, pseudo_loss, human_ema, pseudo_ema, params.alpha
        )
      else:
        model_loss = ln.plain_sum(human_loss, pseudo_loss, params.alpha)
      total_loss = model_loss
      if model.losses:
        total_loss += tf.reduce_sum(model.losses)
      total_loss = params.losses.loss_weight * total_loss
      scaled_loss = total_loss / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)

    tvars = model.trainable_variables
    grads = tape.gradient(scaled_loss, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, tvars)))

    values = {
      'total_loss': total_loss,
      'model_loss': model_loss,
      'human_loss': human_global_loss,
      'pseudo_loss': pseudo_global_loss,
      'human_loss_ema': human_ema,
      'pseudo_loss_ema': pseudo_ema,
    }
    logs = {self.loss: total_loss}
    for metric in metrics or []:
      if metric.name in values:
        metric.update_state(values[metric.name])
        logs[metric.name] = metric.result()
    return logs
