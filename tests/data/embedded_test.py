"""The Shapes TFRecords: Model Garden's decoder reads them; COCO JSON agrees."""

import json
import os

import numpy as np
from official.vision.dataloaders import tf_example_decoder
import tensorflow as tf

from official_selftrain.data import datasets
from official_selftrain.data import embedded
from official_selftrain.data import shapes

SPEC = shapes.SceneSpec(image_size=64, max_objects=3)


def _decode_all(pattern, include_mask=True):
  decoder = tf_example_decoder.TfExampleDecoder(include_mask=include_mask)
  files = sorted(tf.io.gfile.glob(pattern))
  return [decoder.decode(r) for r in tf.data.TFRecordDataset(files)]


def test_model_garden_decoder_reads_shapes_det(tmp_path):
  out = embedded.shapes_det_split(str(tmp_path), 'val', 12, seed=1, spec=SPEC)
  decoded = _decode_all(os.path.join(out, 'data-*.tfrecord'))
  assert len(decoded) == 12
  with open(os.path.join(out, 'annotations.json')) as f:
    coco = json.load(f)
  assert len(coco['images']) == 12
  per_image = {}
  for ann in coco['annotations']:
    per_image.setdefault(ann['image_id'], []).append(ann)
  for example in decoded:
    image_id = int(example['source_id'].numpy())
    scene = shapes.det_scene(1, 'val', image_id - 1, SPEC)
    boxes = example['groundtruth_boxes'].numpy() * 64
    np.testing.assert_allclose(boxes, scene.boxes, atol=1e-4)
    np.testing.assert_array_equal(
      example['groundtruth_classes'].numpy(), scene.classes
    )
    masks = example['groundtruth_instance_masks'].numpy()
    np.testing.assert_array_equal(masks, scene.masks)
    # JPEG (4:2:0, noisy textures) is lossy; an unrelated image is ~80 off.
    diff = np.abs(example['image'].numpy().astype(int) - scene.image)
    assert diff.mean() < 20
    anns = per_image.get(image_id, [])
    assert len(anns) == len(scene.classes)
    for ann, box in zip(anns, scene.boxes):
      ymin, xmin, ymax, xmax = box
      assert ann['bbox'] == [xmin, ymin, xmax - xmin, ymax - ymin]


def test_finished_split_is_reused(tmp_path):
  out = embedded.shapes_det_split(str(tmp_path), 'train', 8, spec=SPEC)
  stamp = os.path.getmtime(os.path.join(out, 'DONE'))
  assert embedded.shapes_det_split(str(tmp_path), 'train', 8, spec=SPEC) == out
  assert os.path.getmtime(os.path.join(out, 'DONE')) == stamp


def test_split_without_done_marker_is_generated_again(tmp_path):
  """A killed run leaves no DONE marker: its split is redone, no temp left."""
  out = embedded.shapes_det_split(str(tmp_path), 'train', 8, spec=SPEC)
  os.remove(os.path.join(out, 'DONE'))
  embedded.shapes_det_split(str(tmp_path), 'train', 8, spec=SPEC)
  assert os.path.exists(os.path.join(out, 'DONE'))
  assert not [d for d in os.listdir(os.path.dirname(out)) if '.tmp-' in d]


def test_label_fraction_is_a_prefix_of_the_full_split(tmp_path):
  full = datasets.shapes_det(
    data_dir=str(tmp_path),
    num_train=20,
    num_val=4,
    image_size=64,
    max_objects=3,
  )
  part = datasets.shapes_det(
    data_dir=str(tmp_path),
    num_train=20,
    num_val=4,
    image_size=64,
    max_objects=3,
    label_fraction=0.5,
  )
  full.prepare()
  part.prepare()
  assert part.num_train == 10

  def ids(data):
    return sorted(
      int(e['source_id'].numpy())
      for e in _decode_all(data.train_pattern, False)
    )

  assert ids(part) == list(range(1, 11))
  assert ids(full)[:10] == ids(part)


def test_shapes_cls_has_image_labels(tmp_path):
  out = embedded.shapes_cls_split(str(tmp_path), 'train', 6, image_size=64)
  files = tf.io.gfile.glob(os.path.join(out, 'data-*.tfrecord'))
  labels = []
  for record in tf.data.TFRecordDataset(files):
    example = tf.train.Example.FromString(record.numpy())
    labels.append(
      example.features.feature['image/class/label'].int64_list.value[0]
    )
  assert len(labels) == 6
  assert all(1 <= label <= len(shapes.CLS_CLASSES) for label in labels)
