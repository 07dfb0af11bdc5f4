"""The top of the gin front: `experiment.config = @detection_experiment()`.

Every experiment gin file binds `experiment.config` to a builder that returns an
`Experiment`: a Model Garden `ExperimentConfig` plus the step that makes its
data ready (generate the embedded data, or check that COCO is there).
"""

import dataclasses
from typing import Callable

import gin
from official.core import config_definitions as cfg
import yaml


@dataclasses.dataclass
class Experiment:
  config: cfg.ExperimentConfig
  prepare: Callable[[], None] = lambda: None


def register_configurables() -> None:
  """Imports the modules whose gin configurables experiment files bind."""
  # pylint: disable=g-import-not-at-top,unused-import
  from official_selftrain import pipeline  # noqa: F401
  from official_selftrain.configs import detection  # noqa: F401
  from official_selftrain.configs import self_training  # noqa: F401
  from official_selftrain.data import datasets  # noqa: F401
  from official_selftrain.ops import augment_policies  # noqa: F401
  from official_selftrain.pseudo_labels import export  # noqa: F401
  from official_selftrain.pseudo_labels import sources  # noqa: F401


@gin.configurable('experiment')
def build(config: Experiment = gin.REQUIRED) -> Experiment:
  """Returns the experiment the parsed gin files describe."""
  return config


def describe(experiment: Experiment) -> str:
  """The gin bindings and the Model Garden config they resolve to."""
  return (
    '# ---- gin bindings ----\n'
    + gin.config_str()
    + '\n# ---- resolved Model Garden ExperimentConfig ----\n'
    + yaml.safe_dump(experiment.config.as_dict(), sort_keys=False)
  )
