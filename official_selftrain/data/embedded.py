"""Writes the embedded Shapes datasets as TFRecords in Model Garden's schema.

Each split goes to its own directory, written under a temporary name and renamed
when complete, so a killed run never leaves a half-written split that later
looks finished. Val splits also get a COCO-format `annotations.json`, so the same
COCO evaluator (pycocotools) scores Shapes-Det and COCO.
"""

import hashlib
import io
import json
import os
import shutil
import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from absl import logging
import numpy as np
from official.vision.data import tf_example_builder
from PIL import Image
from pycocotools import mask as mask_util
import tensorflow as tf

from official_selftrain import progress
from official_selftrain.data import shapes

# Bump when the drawing code changes, so stale caches are not reused.
GENERATOR_VERSION = 1
JPEG_QUALITY = 90


def default_data_dir() -> str:
  """Where generated data is cached: $SELFTRAIN_DATA_DIR or ~/.cache/..."""
  return os.environ.get(
    'SELFTRAIN_DATA_DIR',
    os.path.join(os.path.expanduser('~'), '.cache', 'official_selftrain'),
  )


def encode_jpeg(image: np.ndarray) -> bytes:
  with io.BytesIO() as out:
    Image.fromarray(image).save(out, format='JPEG', quality=JPEG_QUALITY)
    return out.getvalue()


def scene_to_tf_example(
  scene: shapes.Scene,
  source_id: str,
  with_masks: bool = True,
  image_label: Optional[int] = None,
) -> tf.train.Example:
  """Serialises a scene with Model Garden's TfExampleBuilder (detection schema).

  Args:
    scene: the generated image and ground truth.
    source_id: `image/source_id`; an integer string, as COCO image ids are.
    with_masks: also write instance masks and the semantic map.
    image_label: optional `image/class/label` (classification schema).

  Returns:
    A tf.train.Example.
  """
  size_h, size_w = scene.image.shape[:2]
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
    encode_jpeg(scene.image),
    'JPEG',
    size_h,
    size_w,
    3,
    source_id.encode(),
    label=image_label,
  )
  boxes = scene.boxes
  builder.add_boxes_feature(
    xmins=(boxes[:, 1] / size_w).tolist(),
    xmaxs=(boxes[:, 3] / size_w).tolist(),
    ymins=(boxes[:, 0] / size_h).tolist(),
    ymaxs=(boxes[:, 2] / size_h).tolist(),
    labels=scene.classes.tolist(),
  )
  builder.add_ints_feature('image/object/is_crowd', [0] * len(scene.classes))
  if with_masks:
    if len(scene.classes):
      builder.add_instance_mask_matrices_feature(scene.masks[..., None])
    else:
      builder.add_floats_feature('image/object/area', [])
    builder.add_semantic_mask_matrix_feature(scene.semantic[..., None])
  else:
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    builder.add_floats_feature('image/object/area', areas.tolist())
  return builder.example


def _coco_annotations(
  scenes: List[shapes.Scene], ids: List[int], class_names
) -> Dict:
  """COCO-format ground truth (boxes as [x, y, w, h] pixels, RLE masks)."""
  images, annotations = [], []
  for scene, image_id in zip(scenes, ids):
    height, width = scene.image.shape[:2]
    images.append(
      {
        'id': image_id,
        'file_name': f'{image_id}.jpg',
        'height': height,
        'width': width,
      }
    )
    for box, label, mask in zip(scene.boxes, scene.classes, scene.masks):
      ymin, xmin, ymax, xmax = [float(v) for v in box]
      rle = mask_util.encode(np.asfortranarray(mask))
      rle['counts'] = rle['counts'].decode('ascii')
      annotations.append(
        {
          'id': len(annotations) + 1,
          'image_id': image_id,
          'category_id': int(label),
          'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
          'area': float(mask.sum()),
          'iscrowd': 0,
          'segmentation': rle,
        }
      )
  categories = [{'id': i + 1, 'name': n} for i, n in enumerate(class_names)]
  return {
    'images': images,
    'annotations': annotations,
    'categories': categories,
  }


def shard_name(index: int, num_shards: int) -> str:
  return f'data-{index:05d}-of-{num_shards:05d}.tfrecord'


def split_records(split_dir: str) -> str:
  """The glob of a written split's TFRecords."""
  return os.path.join(split_dir, 'data-*.tfrecord')


def _write_examples(
  tmp_dir: str,
  num_images: int,
  make_scene: Callable[[int], shapes.Scene],
  num_shards: int,
  image_labels: bool,
  with_masks: bool,
  write_jpegs: bool,
) -> List[shapes.Scene]:
  """Writes the scenes round-robin into `num_shards` TFRecords; returns them
  (they are needed for the COCO JSON)."""
  writers = [
    tf.io.TFRecordWriter(os.path.join(tmp_dir, shard_name(k, num_shards)))
    for k in range(num_shards)
  ]
  status = progress.Progress(
    os.path.basename(tmp_dir.split('.tmp-')[0]),
    'images',
    num_images,
    every_seconds=10.0,
  )
  scenes = []
  for index in range(num_images):
    scene = make_scene(index)
    image_id = index + 1
    example = scene_to_tf_example(
      scene,
      str(image_id),
      with_masks=with_masks,
      image_label=shapes.scene_label(scene) if image_labels else None,
    )
    writers[index % num_shards].write(example.SerializeToString())
    if write_jpegs:
      with open(os.path.join(tmp_dir, 'images', f'{image_id}.jpg'), 'wb') as f:
        f.write(encode_jpeg(scene.image))
    scenes.append(scene)
    status.update(index + 1, force=index + 1 == num_images)
  for writer in writers:
    writer.close()
  return scenes


def write_split(
  output_dir: str,
  num_images: int,
  make_scene: Callable[[int], shapes.Scene],
  num_shards: int,
  class_names,
  coco_json: bool = False,
  image_labels: bool = False,
  with_masks: bool = True,
  write_jpegs: bool = False,
) -> str:
  """Generates `num_images` scenes into sharded TFRecords under `output_dir`.

  The directory appears only when complete (temporary name, then rename).

  Args:
    output_dir: final directory of the split.
    num_images: how many images.
    make_scene: index -> Scene (deterministic).
    num_shards: number of TFRecord shards.
    class_names: category names, for the COCO JSON.
    coco_json: also write `annotations.json` in COCO format.
    image_labels: write `image/class/label` (iconic images).
    with_masks: write instance masks and semantic maps.
    write_jpegs: also write `images/<id>.jpg` (a COCO-style image folder).

  Returns:
    output_dir.
  """
  if os.path.exists(os.path.join(output_dir, 'DONE')):
    return output_dir
  tmp_dir = output_dir + f'.tmp-{os.getpid()}'
  shutil.rmtree(tmp_dir, ignore_errors=True)
  os.makedirs(tmp_dir)
  if write_jpegs:
    os.makedirs(os.path.join(tmp_dir, 'images'))
  start = time.time()
  scenes = _write_examples(
    tmp_dir,
    num_images,
    make_scene,
    num_shards,
    image_labels,
    with_masks,
    write_jpegs,
  )
  if coco_json:
    ids = list(range(1, num_images + 1))
    with open(os.path.join(tmp_dir, 'annotations.json'), 'w') as f:
      json.dump(_coco_annotations(scenes, ids, class_names), f)
  with open(os.path.join(tmp_dir, 'DONE'), 'w') as f:
    json.dump({'num_images': num_images, 'seconds': time.time() - start}, f)
  shutil.rmtree(output_dir, ignore_errors=True)
  os.rename(tmp_dir, output_dir)
  logging.info(
    'Wrote %d images to %s in %.1fs',
    num_images,
    output_dir,
    time.time() - start,
  )
  return output_dir


def shapes_det_dir_name(seed: int, spec: shapes.SceneSpec) -> str:
  """Cache folder of one Shapes-Det configuration (version, seed, spec)."""
  spec_key = hashlib.sha1(repr(spec).encode()).hexdigest()[:8]
  return (
    f'shapes_det_v{GENERATOR_VERSION}_seed{seed}_{spec.image_size}px_{spec_key}'
  )


def shapes_det_split_dir(
  data_dir: str, split: str, num_images: int, seed: int, spec: shapes.SceneSpec
) -> str:
  """Where a Shapes-Det split lives in the cache (the one place that says)."""
  return os.path.join(
    data_dir, shapes_det_dir_name(seed, spec), f'{split}_{num_images}'
  )


def shapes_det_split(
  data_dir: str,
  split: str,
  num_images: int,
  seed: int = 0,
  spec: shapes.SceneSpec = shapes.SceneSpec(),
  num_shards: int = 4,
  write_jpegs: bool = False,
) -> str:
  """Ensures a Shapes-Det split exists on disk; returns its directory.

  A smaller split of the same seed is a prefix of a larger one, so the 20% and
  50% label fractions are subsets of the 100% set, as in the paper's Table 3.
  """
  return write_split(
    shapes_det_split_dir(data_dir, split, num_images, seed, spec),
    num_images,
    lambda i: shapes.det_scene(seed, split, i, spec),
    num_shards=num_shards,
    class_names=spec.classes,
    coco_json=split != 'train',
    write_jpegs=write_jpegs,
  )


def shapes_cls_dir_name(seed: int, image_size: int) -> str:
  return f'shapes_cls_v{GENERATOR_VERSION}_seed{seed}_{image_size}px'


def shapes_cls_split_dir(
  data_dir: str, split: str, num_images: int, seed: int, image_size: int
) -> str:
  """Where a Shapes-Cls split lives in the cache."""
  return os.path.join(
    data_dir, shapes_cls_dir_name(seed, image_size), f'{split}_{num_images}'
  )


def shapes_cls_split(
  data_dir: str,
  split: str,
  num_images: int,
  seed: int = 0,
  image_size: int = 128,
  num_shards: int = 4,
) -> str:
  """Ensures a Shapes-Cls split exists on disk; returns its directory."""
  return write_split(
    shapes_cls_split_dir(data_dir, split, num_images, seed, image_size),
    num_images,
    lambda i: shapes.cls_image(seed, split, i, image_size),
    num_shards=num_shards,
    class_names=shapes.CLS_CLASSES,
    image_labels=True,
    with_masks=False,
  )
