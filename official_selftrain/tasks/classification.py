"""Image classification: Model Garden's task, with the init report.

Pre-trains the detector's backbone on Shapes-Cls (`shapes_cls_pretrain.gin`).
Model, parser, losses and metrics are Model Garden's; only the init
checkpoint is restored as detection restores it (`init_restore`).
"""

from official.core import task_factory
from official.vision.tasks import image_classification
import tf_keras

from official_selftrain.configs import classification as classification_cfg
from official_selftrain.tasks import init_restore


@task_factory.register_task_cls(classification_cfg.ClassificationTaskConfig)
class ClassificationTask(image_classification.ImageClassificationTask):
  """Model Garden's image classification task."""

  def initialize(self, model: tf_keras.Model):
    """Restores the init checkpoint, with a report (see `init_restore`)."""
    init_restore.initialize(model, self.task_config, self.logging_dir)
