"""Augment-S1 ... Augment-S4 (PAPER.md, Table 1) as Model Garden parser settings.

| name | what                                              | scale jitter |
|------|---------------------------------------------------|--------------|
| S1   | flip + scale jitter + crop ("FlipCrop")           | (0.8, 1.2)   |
| S2   | AutoAugment (detection policy v0) + FlipCrop      | (0.8, 1.2)   |
| S3   | AutoAugment + large scale jitter + flip/crop      | (0.5, 2.0)   |
| S4   | RandAugment (magnitude 10, 2 layers) + large jitter | (0.5, 2.0) |

A policy here is a name for Model Garden's parser settings (flip, scale
jitter, `aug_type`), run by `official_selftrain.data.parsers`: Model Garden's
parsers with the AutoAugment / RandAugment step done jointly on image, boxes
and label map (`ops/joint_augment.py`, which says why) and boxes left with
less than `min_visible` of their area in frame dropped.

Pixel constants (translate, cutout) are Model Garden's detection defaults,
meant for ~640 px COCO images; `reference_size` scales them to each image's
long side (None keeps them as pixels).
"""

import dataclasses
from typing import Any
from typing import Dict
from typing import Optional
from typing import Tuple

import gin
from official.vision.configs import common

from official_selftrain.ops import autoaugment_tables

POLICIES = ('S1', 'S2', 'S3', 'S4', 'none')
# Detection AutoAugment versions: v0 (Model Garden's), v1-v3 (ours, the
# released policies with the box-only ops Model Garden lacks).
AUTOAUGMENT_VERSIONS = autoaugment_tables.DETECTION_VERSIONS


@dataclasses.dataclass(frozen=True)
class AugmentPolicy:
  """A resolved policy, ready to set on a Model Garden parser config."""

  name: str
  hflip: bool
  scale_jitter: Tuple[float, float]
  aug_type: Optional[common.Augmentation]
  min_visible: float = 0.25
  reference_size: Optional[float] = 640

  def parser_kwargs(self, model_garden: bool = False) -> Dict[str, Any]:
    """The policy as keyword arguments of `data.parsers.RetinaNetParser`, or
    (model_garden=True) of Model Garden's `retinanet_input.Parser`."""
    kwargs = dict(
      aug_type=self.aug_type,
      aug_rand_hflip=self.hflip,
      aug_scale_min=self.scale_jitter[0],
      aug_scale_max=self.scale_jitter[1],
    )
    if not model_garden:
      kwargs.update(
        min_visible=self.min_visible,
        augment_reference_size=self.reference_size,
      )
    return kwargs

  def apply_to(self, parser_config) -> None:
    """Sets the policy on a `tasks.detection.ParserConfig`, in place."""
    kwargs = self.parser_kwargs()
    for key, value in kwargs.items():
      setattr(parser_config, key, value)


@gin.configurable
def augment_policy(
  name: str = 'S1',
  scale_jitter: Optional[Tuple[float, float]] = None,
  autoaugment_version: str = 'v0',
  randaugment_magnitude: float = 10,
  randaugment_layers: int = 2,
  translate_const: Optional[float] = None,
  cutout_const: Optional[float] = None,
  min_visible: float = 0.25,
  reference_size: Optional[float] = 640,
) -> AugmentPolicy:
  """Resolves a policy name of Table 1, with optional overrides.

  Args:
    name: 'S1', 'S2', 'S3', 'S4', or 'none' (no augmentation, e.g. for eval).
    scale_jitter: (min, max) scale; None takes the policy's own.
    autoaugment_version: detection AutoAugment policy for S2/S3: 'v0' (the
      one the paper assumes; Model Garden's 'detection_v0'), or 'v1', 'v2',
      'v3' (the other released detection policies).
    randaugment_magnitude: S4 magnitude (10; the paper uses 15 for ResNet-101).
    randaugment_layers: S4 layers N (not stated in the paper; 2 is usual).
    translate_const: translate pixels at level 10 (None: Model Garden's
      detection defaults, 250 for AutoAugment, 100 for RandAugment).
    cutout_const: Cutout pixels at level 10 (None: 100 / 40, likewise).
    min_visible: boxes left with less of their area in the frame (after a
      geometric op or the jitter crop) are dropped.
    reference_size: image long side the pixel constants are meant for; they
      scale with each image's long side / reference_size (None: as pixels).

  Returns:
    AugmentPolicy.

  Raises:
    ValueError: for an unknown name or AutoAugment version.
  """
  if name not in POLICIES:
    raise ValueError(f'augment_policy.name={name!r} is not one of {POLICIES}.')
  small, large = (0.8, 1.2), (0.5, 2.0)
  aug_type = None
  if name in ('S2', 'S3'):
    if autoaugment_version not in AUTOAUGMENT_VERSIONS:
      raise ValueError(
        f'augment_policy.autoaugment_version={autoaugment_version!r} is not '
        f'one of {AUTOAUGMENT_VERSIONS}.'
      )
    aug_type = common.Augmentation(
      type='autoaug',
      autoaug=common.AutoAugment(
        augmentation_name=f'detection_{autoaugment_version}',
        translate_const=250 if translate_const is None else translate_const,
        cutout_const=100 if cutout_const is None else cutout_const,
      ),
    )
  elif name == 'S4':
    aug_type = common.Augmentation(
      type='randaug',
      randaug=common.RandAugment(
        magnitude=randaugment_magnitude,
        num_layers=randaugment_layers,
        translate_const=100 if translate_const is None else translate_const,
        cutout_const=40 if cutout_const is None else cutout_const,
      ),
    )
  default_jitter = {
    'S1': small,
    'S2': small,
    'S3': large,
    'S4': large,
    'none': (1.0, 1.0),
  }[name]
  return AugmentPolicy(
    name=name,
    hflip=name != 'none',
    scale_jitter=tuple(scale_jitter or default_jitter),
    aug_type=aug_type,
    min_visible=min_visible,
    reference_size=reference_size,
  )
