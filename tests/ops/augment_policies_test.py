"""Augment-S1..S4 resolve to Table 1's settings on Model Garden's parser."""

from official.vision.configs import retinanet as retinanet_cfg
import pytest

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
  parser = retinanet_cfg.Parser()
  augment_policies.augment_policy(name).apply_to(parser)
  assert parser.aug_rand_hflip
  assert (parser.aug_scale_min, parser.aug_scale_max) == jitter
  if aug is None:
    assert parser.aug_type is None
  else:
    assert parser.aug_type.type == aug
  if aug == 'autoaug':
    assert parser.aug_type.autoaug.augmentation_name == 'detection_v0'
  if aug == 'randaug':
    assert parser.aug_type.randaug.magnitude == 10
    assert parser.aug_type.randaug.num_layers == 2


def test_overrides_and_unknown_name():
  policy = augment_policies.augment_policy(
    'S4', scale_jitter=(0.1, 3.0), randaugment_magnitude=15
  )
  assert policy.scale_jitter == (0.1, 3.0)
  assert policy.aug_type.randaug.magnitude == 15
  with pytest.raises(ValueError, match="'S5'"):
    augment_policies.augment_policy('S5')
