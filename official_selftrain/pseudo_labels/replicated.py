"""The teacher on every replica of a strategy: each labels a slice of a batch.

`export_pseudo_labels(strategy=...)` builds the teacher under the strategy's
scope (its variables mirrored on each device) and labels through
`ReplicatedTeacher`: a batch is padded to a multiple of the replicas, split
into equal slices, each replica runs the teacher's `predict` on its own, and
the outputs are put back together in order (the padding dropped). Nothing is
reduced across replicas, so the labels are the one-device labels.
"""

from typing import Any
from typing import Dict
from typing import Optional

from absl import logging
import tensorflow as tf


def labelling_strategy(
  strategy: Optional[tf.distribute.Strategy],
) -> Optional[tf.distribute.Strategy]:
  """The strategy the labeller runs under: this process's devices only.

  Mirrored and one-device strategies as they are. A multi-worker strategy's
  hosts label different shards, so each labels on its own GPUs (a local
  MirroredStrategy over them; one device without): collectives across hosts would make every
  host wait for the others at each batch. A TPU strategy: None (one device;
  the teacher's NMS is a host-side op here).
  """
  if strategy is None or isinstance(strategy, tf.distribute.OneDeviceStrategy):
    return None
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    gpus = [d.name for d in tf.config.list_logical_devices('GPU')]
    return tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else None
  if isinstance(strategy, tf.distribute.MirroredStrategy):
    return strategy if strategy.num_replicas_in_sync > 1 else None
  logging.info(
    'Labelling on one device: %s does not run the teacher.',
    type(strategy).__name__,
  )
  return None


class ReplicatedTeacher:
  """A teacher (built under `strategy.scope()`) labelling on every replica.

  Everything but `predict` is the teacher's own.
  """

  def __init__(self, teacher: Any, strategy: tf.distribute.Strategy):
    self._teacher = teacher
    self._strategy = strategy
    self.replicas = strategy.num_replicas_in_sync

  def __getattr__(self, name: str) -> Any:
    return getattr(self._teacher, name)

  @tf.function
  def predict(
    self, images: tf.Tensor, image_info: tf.Tensor
  ) -> Dict[str, tf.Tensor]:
    n = self.replicas
    batch = tf.shape(images)[0]
    padded = (batch + n - 1) // n * n

    def pad(t):  # repeats the last image: every replica gets a full slice
      extra = tf.repeat(t[-1:], padded - batch, axis=0)
      return tf.concat([t, extra], axis=0)

    images, image_info = pad(images), pad(image_info)
    size = padded // n

    def replica_slice(ctx):
      start = ctx.replica_id_in_sync_group * size
      return images[start : start + size], image_info[start : start + size]

    inputs = self._strategy.experimental_distribute_values_from_function(
      replica_slice
    )
    outputs = self._strategy.run(
      lambda pair: self._teacher.predict(*pair), args=(inputs,)
    )
    parts = self._strategy.experimental_local_results(outputs)
    return {
      key: tf.concat([p[key] for p in parts], axis=0)[:batch]
      for key in parts[0]
    }
