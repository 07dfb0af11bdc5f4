"""Augment-S1 ... Augment-S4 (PAPER.md, Table 1) as Model Garden parser settings.

| name | what                                              | scale jitter |
|------|---------------------------------------------------|--------------|
| S1   | flip + scale jitter + crop ("FlipCrop")           | (0.8, 1.2)   |
| S2   | AutoAugment (detection policy v0) + FlipCrop      | (0.8, 1.2)   |
| S3   | AutoAugment + large scale jitter + flip/crop      | (0.5, 2.0)   |
| S4   | RandAugment (magnitude 10, 2 layers) + large jitter | (0.5, 2.0) |

Model Garden's RetinaNet parser already does flip, scale jitter with random
crop/pad, and AutoAugment / RandAugment that move boxes
(`official.vision.ops.augment`), so a policy here is a name for its settings.
"""

import dataclasses
from typing import Optional
from typing import Tuple

import gin
from official.vision.configs import common

POLICIES = ('S1', 'S2', 'S3', 'S4', 'none')


@dataclasses.dataclass(frozen=True)
class AugmentPolicy:
  """A resolved policy, ready to set on a Model Garden parser config."""

  name: str
  hflip: bool
  scale_jitter: Tuple[float, float]
  aug_type: Optional[common.Augmentation]

  def apply_to(self, parser_config) -> None:
    """Sets the policy on a `retinanet.Parser`-like config, in place."""
    parser_config.aug_rand_hflip = self.hflip
    parser_config.aug_scale_min, parser_config.aug_scale_max = self.scale_jitter
    parser_config.aug_type = self.aug_type


@gin.configurable
def augment_policy(
  name: str = 'S1',
  scale_jitter: Optional[Tuple[float, float]] = None,
  autoaugment_version: str = 'v0',
  randaugment_magnitude: float = 10,
  randaugment_layers: int = 2,
) -> AugmentPolicy:
  """Resolves a policy name of Table 1, with optional overrides.

  Args:
    name: 'S1', 'S2', 'S3', 'S4', or 'none' (no augmentation, e.g. for eval).
    scale_jitter: (min, max) scale; None takes the policy's own.
    autoaugment_version: detection AutoAugment policy for S2/S3 ('v0', the
      one the paper assumes and the one Model Garden ships as 'detection_v0').
    randaugment_magnitude: S4 magnitude (10; the paper uses 15 for ResNet-101).
    randaugment_layers: S4 layers N (not stated in the paper; 2 is usual).

  Returns:
    AugmentPolicy.

  Raises:
    ValueError: for an unknown name.
  """
  if name not in POLICIES:
    raise ValueError(f'augment_policy.name={name!r} is not one of {POLICIES}.')
  small, large = (0.8, 1.2), (0.5, 2.0)
  aug_type = None
  if name in ('S2', 'S3'):
    aug_type = common.Augmentation(
      type='autoaug',
      autoaug=common.AutoAugment(
        augmentation_name=f'detection_{autoaugment_version}'
      ),
    )
  elif name == 'S4':
    aug_type = common.Augmentation(
      type='randaug',
      randaug=common.RandAugment(
        magnitude=randaugment_magnitude, num_layers=randaugment_layers
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
  )
