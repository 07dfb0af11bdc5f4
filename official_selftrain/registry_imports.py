"""Imports every module that registers something by name; entry points only.

Gin binds configurables by name (`@detection_experiment()`, `@shapes_det()`,
`augment_policy.name`, ...) and Model Garden's task factory maps each task
config to its task class: both registries fill as their modules are imported.
The entry points (`train`, the tools) import this module once, so library
modules never import upwards to fill a registry (as Model Garden's
`official/vision/registry_imports.py`).
"""

from official_selftrain import noisy_student  # noqa: F401
from official_selftrain import pipeline  # noqa: F401
from official_selftrain.configs import classification  # noqa: F401
from official_selftrain.configs import detection  # noqa: F401
from official_selftrain.configs import segmentation  # noqa: F401
from official_selftrain.configs import self_training  # noqa: F401
from official_selftrain.data import datasets  # noqa: F401
from official_selftrain.data import pools  # noqa: F401
from official_selftrain.ops import augment_policies  # noqa: F401
from official_selftrain.pseudo_labels import export  # noqa: F401
from official_selftrain.tasks import classification as classification_task  # noqa: F401
from official_selftrain.tasks import detection as detection_task  # noqa: F401
from official_selftrain.tasks import segmentation as segmentation_task  # noqa: F401
from official_selftrain.tasks import self_training as self_training_task  # noqa: F401
