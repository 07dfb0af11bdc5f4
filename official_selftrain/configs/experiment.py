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
from typing import Any
from typing import Callable
from typing import Dict

import gin
from official.core import config_definitions as cfg
import yaml

# (experiment, mode, model_dir) -> eval metrics: trains / evaluates one
# experiment (`train_lib.run` with its strategy bound).
RunExperiment = Callable[['Experiment', str, str], Dict[str, float]]


class UnsupportedModeError(ValueError):
  """A job cannot run in the requested --mode."""


@dataclasses.dataclass
class Experiment:
  """One supervised or student training run."""

  config: cfg.ExperimentConfig
  prepare: Callable[[], None] = lambda: None

  def configs(self) -> Dict[str, cfg.ExperimentConfig]:
    return {'experiment': self.config}

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
