"""The top of the gin front: `experiment.config = @detection_experiment()`.

Every experiment gin file binds `experiment.config` to a job: an `Experiment`
(a Model Garden `ExperimentConfig` plus the step that makes its data ready),
or a self-training `Pipeline` (`official_selftrain.pipeline`) that chains
experiments. Both offer the same three methods, so the entry point runs either
without asking which it has:

  configs()                          -> {name: ExperimentConfig} that will run
  prepare()                          makes the data exist
  run(mode, model_dir, run_experiment)
"""

import dataclasses
import math
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional

import gin
from official.core import config_definitions as cfg
import yaml

from official_selftrain import progress

# (experiment, mode, model_dir) -> eval metrics: trains / evaluates one
# experiment (`train_lib.run` with its strategy bound).
RunExperiment = Callable[['Experiment', str, str], Dict[str, float]]


class UnsupportedModeError(ValueError):
  """A job cannot run in the requested --mode."""


def require_all_stages(mode: str, job: str) -> None:
  """A multi-stage job runs all its stages, in --mode=train_and_eval only.

  Raises:
    UnsupportedModeError: another mode.
  """
  if mode != 'train_and_eval':
    raise UnsupportedModeError(
      f'{job} runs all its stages; use --mode=train_and_eval (the default).'
    )


@dataclasses.dataclass(frozen=True)
class EvalSplit:
  """A labelled split to evaluate on besides the validation split.

  The validation split selects (steps, thresholds, alpha); a test split,
  never looked at while choosing, reports.
  """

  name: str
  input_path: str
  annotation_file: Optional[str]
  num_images: Optional[int]


@dataclasses.dataclass
class Experiment:
  """One supervised or student training run.

  Attributes:
    config: what Model Garden's task and Orbit run.
    prepare: makes the data exist.
    seed: seeds init, shuffling and augmentation (None: unseeded).
    deterministic: with a seed, TF ops run deterministically too.
    test_split: the split that reports (None: the dataset has none).
    results_file: where each evaluation's metrics go, in model_dir.
  """

  config: cfg.ExperimentConfig
  prepare: Callable[[], None] = lambda: None
  seed: Optional[int] = None
  deterministic: bool = True
  test_split: Optional[EvalSplit] = None
  results_file: str = progress.EVAL_RESULTS

  def configs(self) -> Dict[str, cfg.ExperimentConfig]:
    return {'experiment': self.config}

  def replace(self, **changes) -> 'Experiment':
    """A copy with `changes`; the config is copied too."""
    changes.setdefault('config', self.config.replace())
    return dataclasses.replace(self, **changes)

  def on_test_split(self) -> 'Experiment':
    """The same run, evaluated on its test split, results in their own file.

    Raises:
      ValueError: the experiment's dataset has no test split.
    """
    if self.test_split is None:
      raise ValueError("This experiment's dataset has no test split.")
    split = self.test_split
    config = self.config.replace()
    data = config.task.validation_data
    data.input_path = split.input_path
    if 'annotation_file' in config.task.as_dict():  # COCO-style evaluation
      config.task.annotation_file = split.annotation_file
    config.trainer.validation_steps = (
      -1
      if split.num_images is None
      else max(1, math.ceil(split.num_images / data.global_batch_size))
    )
    return self.replace(
      config=config, results_file=f'{split.name}_results.json'
    )

  def run(
    self, mode: str, model_dir: str, run_experiment: RunExperiment
  ) -> Dict[str, float]:
    return run_experiment(self, mode, model_dir)


@gin.configurable('experiment')
def build(config: Any = gin.REQUIRED) -> Any:
  """Returns the job (Experiment or Pipeline) the parsed gin files describe."""
  return config


def describe(job: Any) -> str:
  """The gin bindings and every Model Garden config they resolve to."""
  parts = ['# ---- gin bindings ----\n', gin.config_str()]
  for name, config in job.configs().items():
    parts.append(
      f'\n# ---- resolved Model Garden ExperimentConfig: {name} ----\n'
    )
    parts.append(yaml.safe_dump(config.as_dict(), sort_keys=False))
  return ''.join(parts)
