"""The student: RetinaNet on batches of human and pseudo labels together.

PAPER.md, "The recipe", step 3. Each replica's batch is [human | pseudo] at a
fixed split (Model Garden's `CombinationDatasetInputReader`: both halves pass
through the same parser, so the same augmentation policy), the pseudo boxes are
thresholded at read time (`pseudo_score_threshold`, the paper's 0.5), and the
loss is Loss Normalization over the two halves' losses, with EMAs shared by all
replicas (the losses are averaged across replicas before the EMA update).
"""

from typing import Any
from typing import List
from typing import Optional
from typing import Tuple

from official.core import task_factory
import tensorflow as tf
import tf_keras

from official_selftrain.configs import self_training as st_cfg
from official_selftrain.losses import loss_normalization as ln
from official_selftrain.pseudo_labels import schema
from official_selftrain.tasks import detection


def split_batch(tree, human: int) -> Tuple[Any, Any]:
  """Splits every tensor of a nested structure at `human` along axis 0."""
  first = tf.nest.map_structure(lambda t: t[:human], tree)
  second = tf.nest.map_structure(lambda t: t[human:], tree)
  return first, second


# The student's training logs (with joint training, also 'joint_loss').
STUDENT_METRICS = (
  'total_loss',
  'model_loss',
  'human_loss',
  'pseudo_loss',
  'human_loss_ema',
  'pseudo_loss_ema',
)


def global_losses(losses):
  """The global-batch values of per-replica losses (each replica holds its
  share times the replica count): their mean over replicas, no gradient."""
  values = [tf.stop_gradient(loss) for loss in losses]
  context = tf.distribute.get_replica_context()
  if context.num_replicas_in_sync > 1:
    values = [
      context.all_reduce(tf.distribute.ReduceOp.MEAN, v) for v in values
    ]
  return values


def update_metrics(metrics, values, logs):
  """Updates the metrics named in `values`; adds their results to `logs`."""
  for metric in metrics or []:
    if metric.name in values:
      metric.update_state(values[metric.name])
      logs[metric.name] = metric.result()
  return logs


class LossNormalizedStudent:
  """What every student task shares (detection, segmentation): the batch
  split, the loss EMAs tracked by the model, Loss Normalization, its logs.
  Mixed in before the supervised task class."""

  def batch_split(self) -> st_cfg.BatchSplit:
    """The global [human | pseudo] split of the combined train batch."""
    return st_cfg.BatchSplit.of(self.task_config.train_data)

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

  def student_metrics(self, extra=()) -> List[Any]:
    return [
      tf_keras.metrics.Mean(name, dtype=tf.float32)
      for name in (*STUDENT_METRICS, *extra)
    ]

  def student_loss(self, model, human_loss, pseudo_loss, global_values):
    """Updates the loss EMAs; returns L (Loss Normalization, or the plain sum
    when it is off) and the logs of this step's halves and EMAs."""
    params = self.task_config
    human_ema = ln.ema_update(
      model.loss_ema_human,
      model.loss_ema_count,
      global_values[0],
      params.ema_decay,
    )
    pseudo_ema = ln.ema_update(
      model.loss_ema_pseudo,
      model.loss_ema_count,
      global_values[1],
      params.ema_decay,
    )
    model.loss_ema_count.assign_add(1)
    if params.loss_normalization:
      loss = ln.loss_normalization(
        human_loss, pseudo_loss, human_ema, pseudo_ema, params.alpha
      )
    else:
      loss = ln.plain_sum(human_loss, pseudo_loss, params.alpha)
    return loss, {
      'model_loss': loss,
      'human_loss': global_values[0],
      'pseudo_loss': global_values[1],
      'human_loss_ema': human_ema,
      'pseudo_loss_ema': pseudo_ema,
    }


@task_factory.register_task_cls(st_cfg.SelfTrainingTaskConfig)
class SelfTrainingTask(LossNormalizedStudent, detection.DetectionTask):
  """The student of self-training (a teacher is any DetectionTask model)."""

  def build_decoder(self, params):
    """Training reads pseudo labels too: the read-time threshold decoder."""
    if not params.is_training:
      return super().build_decoder(params)
    return schema.PseudoLabelDecoder(
      self.task_config.pseudo_score_threshold,
      ignore_floor=self.task_config.pseudo_ignore_floor,
      ignore_label=self.task_config.model.num_classes,
      soft_floor=self.task_config.pseudo_soft_floor,
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
    joint = ('joint_loss',) if self.task_config.joint_weight else ()
    return self.student_metrics(joint)

  def _half_losses(self, outputs, labels):
    """L_h and L_p on this replica's [human | pseudo] batch, and their
    global-batch values (the same on every replica, no gradient)."""
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync
    human = self.batch_split().per_replica(num_replicas).human
    outputs = {k: outputs[k] for k in ('cls_outputs', 'box_outputs')}
    outputs_h, outputs_p = split_batch(outputs, human)
    labels_h, labels_p = split_batch(labels, human)
    losses = (
      self.detection_losses(outputs_h, labels_h)[0],
      self.detection_losses(
        outputs_p,
        labels_p,
        background_weight=self.task_config.pseudo_background_weight,
        box_loss_scale=self.task_config.pseudo_box_weight,
        soft_targets=self.task_config.pseudo_soft_floor is not None,
      )[0],
    )
    return losses, global_losses(losses)

  def train_step(
    self,
    inputs,
    model: tf_keras.Model,
    optimizer: tf_keras.optimizers.Optimizer,
    metrics: Optional[List[Any]] = None,
  ):
    """One student step: losses per half, EMAs, Loss Normalization (and,
    with joint training, the classification loss)."""
    features, labels = inputs
    labels, joint = detection.pop_joint_inputs(labels)
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = model(features, training=True)
      outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
      (human_loss, pseudo_loss), global_losses = self._half_losses(
        outputs, labels
      )
      model_loss, values = self.student_loss(
        model, human_loss, pseudo_loss, global_losses
      )
      total_loss = model_loss
      if model.losses:
        total_loss += tf.reduce_sum(model.losses)
      joint_loss = None
      if joint is not None:
        joint_loss = self.joint_loss(model, joint)
        total_loss += self.task_config.joint_weight * joint_loss
      total_loss = self.task_config.losses.loss_weight * total_loss
      scaled = detection.scaled_for_replicas(
        total_loss, optimizer, num_replicas
      )
    detection.apply_gradients(tape, scaled, model, optimizer)
    values.update(total_loss=total_loss, joint_loss=joint_loss)
    return update_metrics(metrics, values, {self.loss: total_loss})
