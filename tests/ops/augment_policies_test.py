"""Augment-S1..S4 resolve to Table 1's settings on Model Garden's parser."""

import pytest

from official_selftrain.configs import detection
from official_selftrain.ops import augment_policies


@pytest.mark.parametrize(
  'name, jitter, aug',
  [
    ('S1', (0.8, 1.2), None),
    ('S2', (0.8, 1.2), 'autoaug'),
    ('S3', (0.5, 2.0), 'autoaug'),
    ('S4', (0.5, 2.0), 'randaug'),
  ],
)
def test_table1(name, jitter, aug):
  parser = detection.ParserConfig()
  augment_policies.augment_policy(name).apply_to(parser)
  assert parser.min_visible == 0.25
  assert parser.augment_reference_size == 640
  assert parser.aug_rand_hflip
  assert (parser.aug_scale_min, parser.aug_scale_max) == jitter
  if aug is None:
    assert parser.aug_type is None
  else:
    assert parser.aug_type.type == aug
  if aug == 'autoaug':
    assert parser.aug_type.autoaug.augmentation_name == 'detection_v0'
    assert parser.aug_type.autoaug.translate_const == 250
  if aug == 'randaug':
    assert parser.aug_type.randaug.magnitude == 10
    assert parser.aug_type.randaug.num_layers == 2
    assert parser.aug_type.randaug.translate_const == 100


def test_overrides_and_unknown_name():
  policy = augment_policies.augment_policy(
    'S4',
    scale_jitter=(0.1, 3.0),
    randaugment_magnitude=15,
    randaugment_layers=3,
    translate_const=50,
    min_visible=0.5,
    reference_size=None,
  )
  assert policy.scale_jitter == (0.1, 3.0)
  assert policy.aug_type.randaug.magnitude == 15
  assert policy.aug_type.randaug.num_layers == 3
  assert policy.aug_type.randaug.translate_const == 50
  assert (policy.min_visible, policy.reference_size) == (0.5, None)
  assert augment_policies.AUTOAUGMENT_VERSIONS == ('v0', 'v1', 'v2', 'v3')
  policy = augment_policies.augment_policy('S3', autoaugment_version='v2')
  assert policy.aug_type.autoaug.augmentation_name == 'detection_v2'
  with pytest.raises(ValueError, match="autoaugment_version='v9'"):
    augment_policies.augment_policy('S3', autoaugment_version='v9')
  with pytest.raises(ValueError, match="'S5'"):
    augment_policies.augment_policy('S5')
