r"""Draws pictures of the data as PNG grids: pseudo labels, augmentation.

  python tools/visualize.py --pseudo_labels=runs/st/round1/pseudo_labels \
      --output=pseudo.png --num_images=16 --read_threshold=0.5

Boxes at or above the read-time threshold (what the student learns from) are
drawn thick with class and score; those between the export floor and the
threshold thin, so the effect of the threshold can be seen.

  python tools/visualize.py --augment=S4 --output=docs/augment_s4.png
  python tools/visualize.py --augment=S1,S2,S3,S4 --output=docs/augment.png

One row per image: the original, then `--draws` draws of each policy, with
boxes and instance masks drawn as the training parsers produce them
(`official_selftrain.data.parsers.augment_example`): boxes dropped for
leaving the frame are gone, grey is what the policy uncovered, the mean
colour is jitter padding. Images are generated Shapes-Det scenes, or the
first of `--records` (TF Examples in Model Garden's detection schema, with
instance masks when they have them).
"""

import glob
import os
from typing import List

from absl import app
from absl import flags
import numpy as np
from official.vision.dataloaders import tf_example_decoder
from official.vision.utils.object_detection import visualization_utils
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from official_selftrain.data import parsers
from official_selftrain.data import shapes
from official_selftrain.ops import augment_policies
from official_selftrain.ops import joint_augment

flags.DEFINE_string(
  'pseudo_labels', None, 'Directory of pseudo-label shards (pseudo-*.tfrecord).'
)
flags.DEFINE_list(
  'augment',
  None,
  'Policies to draw (S1..S4, comma-separated) instead of pseudo labels.',
)
flags.DEFINE_string(
  'records', None, 'TFRecord glob of images to augment (default: Shapes-Det).'
)
flags.DEFINE_integer('draws', 2, 'Draws per policy and image (--augment).')
flags.DEFINE_integer('seed', 0, 'Random seed of the augmentation draws.')
flags.DEFINE_string('output', 'pseudo_labels.png', 'PNG to write.')
flags.DEFINE_integer('num_images', 16, 'Images in the grid.')
flags.DEFINE_integer('columns', 4, 'Grid columns.')
flags.DEFINE_float('read_threshold', 0.5, 'Score of the thick boxes.')
flags.DEFINE_integer('scale', 3, 'Upscaling of small images, for legibility.')

FLAGS = flags.FLAGS

COLOURS = [
  (255, 64, 64),
  (64, 200, 64),
  (64, 128, 255),
  (255, 200, 0),
  (255, 0, 255),
  (0, 220, 220),
  (255, 128, 0),
  (160, 96, 255),
]


def _floats(example, key):
  return np.array(example.features.feature[key].float_list.value)


def draw_pseudo_labels(
  record: bytes,
  read_threshold: float,
  scale: int,
  class_names=shapes.DET_CLASSES,
) -> Image.Image:
  """One image with its pseudo boxes drawn."""
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  image = tf.io.decode_image(
    feature['image/encoded'].bytes_list.value[0],
    channels=3,
    expand_animations=False,
  ).numpy()
  height, width = image.shape[:2]
  picture = Image.fromarray(image).resize(
    (width * scale, height * scale), Image.NEAREST
  )
  draw = ImageDraw.Draw(picture)
  boxes = np.stack(
    [
      _floats(example, f'image/object/bbox/{k}')
      for k in ('ymin', 'xmin', 'ymax', 'xmax')
    ],
    axis=-1,
  )
  classes = feature['image/object/class/label'].int64_list.value
  scores = _floats(example, 'image/object/score')
  for (ymin, xmin, ymax, xmax), label, score in sorted(
    zip(boxes, classes, scores), key=lambda b: b[2]
  ):
    colour = COLOURS[(label - 1) % len(COLOURS)]
    shape = [
      xmin * width * scale,
      ymin * height * scale,
      xmax * width * scale,
      ymax * height * scale,
    ]
    if score >= read_threshold:
      draw.rectangle(shape, outline=colour, width=2)
      name = class_names[label - 1] if 0 < label <= len(class_names) else label
      draw.text(
        (shape[0] + 2, shape[1] + 1), f'{name} {score:.2f}', fill=colour
      )
    else:
      draw.rectangle(shape, outline=colour + (96,), width=1)
  return picture


def grid(pictures, columns: int) -> Image.Image:
  width, height = pictures[0].size
  rows = (len(pictures) + columns - 1) // columns
  canvas = Image.new('RGB', (columns * width, rows * height), (255, 255, 255))
  for i, picture in enumerate(pictures):
    canvas.paste(picture, ((i % columns) * width, (i // columns) * height))
  return canvas


def _examples_from_records(pattern: str, count: int):
  """(uint8 image, normalised boxes, classes, instance-id map) of records."""
  files = sorted(glob.glob(pattern))
  if not files:
    raise SystemExit(f'error: --records={pattern!r} matches no file')
  decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
  examples = []
  for record in tf.data.TFRecordDataset(files).take(count):
    data = decoder.decode(record)
    image = data['image'].numpy()
    masks = data['groundtruth_instance_masks'].numpy()
    ids = joint_augment.instance_id_map(masks.reshape((-1,) + image.shape[:2]))
    examples.append(
      (
        image,
        data['groundtruth_boxes'].numpy(),
        data['groundtruth_classes'].numpy(),
        ids,
      )
    )
  return examples


def _shapes_examples(count: int):
  examples = []
  for index in range(count):
    scene = shapes.det_scene(0, 'val', index)
    ids = joint_augment.instance_id_map(scene.masks)
    size = np.tile(scene.image.shape[:2], 2)
    examples.append((scene.image, scene.boxes / size, scene.classes, ids))
  return examples


_MG_COLOURS = ['Red', 'LimeGreen', 'RoyalBlue', 'Gold', 'Magenta', 'Cyan']


def draw_labels(image, boxes, classes, ids, scale: int, title: str = ''):
  """Instance masks and boxes over an image, with Model Garden's drawing."""
  picture = np.array(
    Image.fromarray(image).resize(
      (image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST
    )
  )
  ids = np.kron(ids, np.ones([scale, scale], np.uint8))
  for k, label in enumerate(classes):
    colour = _MG_COLOURS[(int(label) - 1) % len(_MG_COLOURS)]
    mask = (ids == k + 1).astype(np.uint8)
    if mask.any():
      visualization_utils.draw_mask_on_image_array(
        picture, mask, color=colour, alpha=0.35
      )
    ymin, xmin, ymax, xmax = boxes[k]
    visualization_utils.draw_bounding_box_on_image_array(
      picture, ymin, xmin, ymax, xmax, color=colour, thickness=2
    )
  out = Image.fromarray(picture)
  if title:
    ImageDraw.Draw(out).text((3, 2), title, fill=(255, 255, 255))
  return out


def augment_grid(
  policies: List[str],
  examples,
  draws: int,
  scale: int,
  seed: int,
) -> Image.Image:
  """Rows of [original, draws of each policy] for each example."""
  tf.random.set_seed(seed)
  pictures = []
  for image, boxes, classes, ids in examples:
    size = image.shape[:2]
    pictures.append(draw_labels(image, boxes, classes, ids, scale, 'original'))
    for name in policies:
      policy = augment_policies.augment_policy(name)
      for draw in range(draws):
        out, out_boxes, keep, out_ids = parsers.augment_example(
          policy,
          tf.constant(image),
          tf.constant(boxes, tf.float32),
          tf.constant(ids),
          size,
          mask_fill=0,
        )
        keep = keep.numpy()
        # Instance ids of dropped boxes are cleared with them.
        out_ids = out_ids.numpy()
        for k in np.flatnonzero(~keep):
          out_ids[out_ids == k + 1] = 0
        pictures.append(
          draw_labels(
            out.numpy(),
            np.where(keep[:, None], out_boxes.numpy(), 0.0),
            classes,
            out_ids,
            scale,
            f'{name} #{draw + 1}',
          )
        )
  return grid(pictures, 1 + len(policies) * draws)


def main(argv):
  del argv
  if FLAGS.augment:
    for name in FLAGS.augment:
      if name not in augment_policies.POLICIES:
        raise SystemExit(
          f'error: --augment={name!r}: not one of {augment_policies.POLICIES}'
        )
    if FLAGS.records:
      examples = _examples_from_records(FLAGS.records, FLAGS.num_images)
    else:
      examples = _shapes_examples(FLAGS.num_images)
    picture = augment_grid(
      FLAGS.augment, examples, FLAGS.draws, FLAGS.scale, FLAGS.seed
    )
    picture.save(FLAGS.output)
    print(
      f'Wrote {len(examples)} images x {FLAGS.draws} draws of '
      f'{",".join(FLAGS.augment)} to {FLAGS.output}'
    )
    return
  if not FLAGS.pseudo_labels:
    raise SystemExit('error: give --pseudo_labels or --augment')
  files = sorted(
    glob.glob(os.path.join(FLAGS.pseudo_labels, 'pseudo-*.tfrecord'))
  )
  if not files:
    raise SystemExit(f'error: no pseudo-*.tfrecord in {FLAGS.pseudo_labels}')
  records = [
    r.numpy() for r in tf.data.TFRecordDataset(files).take(FLAGS.num_images)
  ]
  pictures = [
    draw_pseudo_labels(r, FLAGS.read_threshold, FLAGS.scale) for r in records
  ]
  grid(pictures, FLAGS.columns).save(FLAGS.output)
  print(f'Wrote {len(pictures)} images to {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
