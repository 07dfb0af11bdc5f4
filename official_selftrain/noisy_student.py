"""Noisy Student pre-training: the miniature's ImageNet++ Init.

The paper's ImageNet++ checkpoint is EfficientNet-B7 trained with Noisy
Student (Xie et al. 2019; PAPER.md, "The recipe" and "Initialisation
checkpoints"): a classifier trained on ImageNet labels a larger unlabelled
pool, and a student trained with noise (RandAugment, dropout, stochastic depth)
on the labelled and the pseudo-labelled images together beats it. Here:

  teacher (Shapes-Cls train, human labels; `shapes_cls_pretrain.gin`'s run)
  -> pseudo labels on the unlabelled Shapes-Cls pool (confidence >= threshold)
  -> noised student on train + pseudo labels
  -> held-out top-1 of both in summary.json.

Stages resume as the self-training pipeline's do (`pipeline.run_stage`). The
student's model dir is the checkpoint `detection_experiment.init =
'imagenet_plus_plus'` restores in the Shapes configs.
"""

import dataclasses
import json
import os
from typing import Any
from typing import Dict

from absl import logging
import gin
import tensorflow as tf

from official_selftrain import pipeline
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.pseudo_labels import classification as labeller

SUMMARY = 'summary.json'


@dataclasses.dataclass
class NoisyStudentPipeline:
  """Teacher classifier -> pool labels -> noised student; `run` runs it."""

  teacher: experiment_lib.Experiment
  student: experiment_lib.Experiment
  pool: Any
  threshold: float = 0.3

  def configs(self) -> Dict[str, Any]:
    student = self.student_on('<model_dir>/pseudo_labels')
    return {'teacher': self.teacher.config, 'student': student.config}

  def prepare(self) -> None:
    self.teacher.prepare()
    self.student.prepare()
    self.pool.prepare()

  def student_on(self, labels_dir: str) -> experiment_lib.Experiment:
    """The student, reading human and pseudo labels in one shuffled stream."""
    student = self.student.replace()
    data = student.config.task.train_data
    data.input_path = [data.input_path, os.path.join(labels_dir, 'data-*')]
    return student

  def run(
    self,
    mode: str,
    model_dir: str,
    run_experiment: experiment_lib.RunExperiment,
  ) -> Dict[str, Any]:
    experiment_lib.require_all_stages(mode, 'The Noisy Student pipeline')
    self.prepare()
    teacher_dir = os.path.join(model_dir, 'teacher')
    summary = {
      'teacher': pipeline.run_stage(
        'teacher', self.teacher, teacher_dir, run_experiment
      )
    }
    labels_dir = os.path.join(model_dir, 'pseudo_labels')
    summary['pseudo_labels'] = labeller.label_pool(
      self.teacher.config,
      tf.train.latest_checkpoint(teacher_dir),
      self.pool.pattern,
      labels_dir,
      threshold=self.threshold,
    )
    summary['student'] = pipeline.run_stage(
      'student',
      self.student_on(labels_dir),
      os.path.join(model_dir, 'student'),
      run_experiment,
    )
    with tf.io.gfile.GFile(os.path.join(model_dir, SUMMARY), 'w') as f:
      json.dump(summary, f, indent=1)
    logging.info(
      '[noisy student] held-out top-1: teacher %s, student %s',
      summary['teacher'].get('accuracy'),
      summary['student'].get('accuracy'),
    )
    return summary


@gin.configurable
def noisy_student_pipeline(
  teacher: experiment_lib.Experiment = gin.REQUIRED,
  student: experiment_lib.Experiment = gin.REQUIRED,
  pool: Any = gin.REQUIRED,
  threshold: float = 0.3,
) -> NoisyStudentPipeline:
  """Binds a Noisy Student pipeline.

  Args:
    teacher: the classifier trained on human labels
      (@classification_experiment()).
    student: the noised student (@student/classification_experiment(), with
      RandAugment, dropout and stochastic depth bound in its scope).
    pool: the unlabelled iconic pool (@shapes_cls_pool()).
    threshold: pool images the teacher scores below it are dropped (0.3 in
      Noisy Student).

  Returns:
    NoisyStudentPipeline.
  """
  return NoisyStudentPipeline(teacher, student, pool, threshold)
