"""The classification input config: Shapes-Cls (or ImageNet) as Model Garden
reads it, for the pre-training classifier and for joint training's
classification half."""

from typing import Optional

from official.vision.configs import common
from official.vision.configs import image_classification as ic_cfg


def classification_data(
  pattern: str,
  training: bool,
  batch: int,
  seed: Optional[int],
  shuffle_buffer_size: int,
  randaugment_magnitude: Optional[float],
) -> ic_cfg.DataConfig:
  """Model Garden's classification DataConfig for one split.

  Args:
    pattern: TFRecord glob (`image/encoded`, `image/class/label`).
    training: random crop, flip (and RandAugment); else the whole image.
    batch: global batch.
    seed: data order and augmentation seed.
    shuffle_buffer_size: tf.data shuffle buffer.
    randaugment_magnitude: RandAugment (2 layers) when training; None: off.

  Returns:
    ic_cfg.DataConfig.
  """
  data = ic_cfg.DataConfig(
    input_path=pattern,
    is_training=training,
    global_batch_size=batch,
    drop_remainder=training,
    shuffle_buffer_size=shuffle_buffer_size,
    seed=seed,
    aug_rand_hflip=True,
    # Inception-style random crop; Model Garden's task keeps its parser's
    # area range (0.08, 1).
    aug_crop=True,
    # Model Garden's default area range, as a list: a tuple would make
    # params.yaml unreadable to yaml.safe_load.
    crop_area_range=[0.08, 1.0],
    # Iconic images: the object fills most of the frame; keep all of it.
    center_crop_fraction=1.0,
  )
  if training and randaugment_magnitude:
    data.aug_type = common.Augmentation(
      type='randaug',
      randaug=common.RandAugment(num_layers=2, magnitude=randaugment_magnitude),
    )
  return data
