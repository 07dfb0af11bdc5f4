r"""Draws pictures of the data: pseudo labels over their images, as a PNG grid.

  python tools/visualize.py --pseudo_labels=runs/st/round1/pseudo_labels \
      --output=pseudo.png --num_images=16 --read_threshold=0.5

Boxes at or above the read-time threshold (what the student learns from) are
drawn thick with class and score; those between the export floor and the
threshold thin, so the effect of the threshold can be seen.
"""

import glob
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from official_selftrain.data import shapes

flags.DEFINE_string(
  'pseudo_labels', None, 'Directory of pseudo-label shards (pseudo-*.tfrecord).'
)
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


def main(argv):
  del argv
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
