"""The released detection AutoAugment policies v1-v3 run, op by op."""

from helpers import scene_with_ids
import numpy as np
import pytest
import tensorflow as tf

from official_selftrain.ops import autoaugment_tables
from official_selftrain.ops import joint_augment


@pytest.mark.parametrize('version', ['v1', 'v2', 'v3'])
def test_every_sub_policy_of_the_released_versions_runs(version):
  """Each sub-policy of detection v1..v3, every op forced on: the output is an
  image of the input's shape and the label map holds input labels or fill."""
  tf.random.set_seed(7)
  scene, ids = scene_with_ids(1)
  size = scene.image.shape[0]
  policies = autoaugment_tables.detection_policy(f'detection_{version}')
  assert (
    policies is autoaugment_tables.DETECTION_POLICIES[f'detection_{version}']
  )
  for sub_policy in policies:
    aug = joint_augment.JointAutoAugment(
      f'detection_{version}', reference_size=640
    )
    aug.policies = [[(op, 1.0, level) for op, _, level in sub_policy]]
    image, boxes, keep, label_map = aug(
      tf.constant(scene.image),
      tf.constant(scene.boxes / size, tf.float32),
      tf.constant(ids),
      mask_fill=0,
    )
    assert image.shape == scene.image.shape and image.dtype == tf.uint8
    assert boxes.shape == scene.boxes.shape
    assert set(np.unique(label_map.numpy())) <= set(np.unique(ids)) | {0}
