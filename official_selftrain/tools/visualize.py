r"""Draws pictures of the data as PNG grids: pseudo labels, augmentation.

  python -m official_selftrain.tools.visualize --pseudo_labels=runs/st/round1/pseudo_labels \
      --output=pseudo.png --num_images=16

Pseudo boxes scored at or above the threshold (`--threshold`, by default the
`read_threshold` of the directory's manifest.json: the boxes the student
learns from) are drawn solid and thick with a `class score` caption; those
below it, down to the export floor, thin, dashed and faded, without caption,
so the effect of the threshold can be seen. A title over the grid says which
threshold splits them. (`--read_threshold` is an alias of `--threshold`.)
Segmentation pseudo labels (a segmentation teacher's export) are drawn as
each image beside its label map over it: classes in their colours, pixels the
teacher was unsure of (ignored, 255) grey.

  python -m official_selftrain.tools.visualize --augment=S4 --output=docs/augment_s4.png
  python -m official_selftrain.tools.visualize --augment=S1,S2,S3,S4 --output=docs/augment.png

One row per image: the original, then `--draws` draws of each policy, with
boxes and instance masks drawn as the training parsers produce them
(`official_selftrain.data.parsers.augment_example`): boxes dropped for
leaving the frame are gone, grey is what the policy uncovered, the mean
colour is jitter padding. Images are generated Shapes-Det scenes, or the
first of `--records` (TF Examples in Model Garden's detection schema, with
instance masks when they have them).
"""

import glob
from typing import List
from typing import Optional
from typing import Tuple

from absl import app
from absl import flags
import numpy as np
from official.vision.dataloaders import tf_example_decoder
from official.vision.utils.object_detection import visualization_utils
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

from official_selftrain.data import parsers
from official_selftrain.data import shapes
from official_selftrain.ops import augment_policies
from official_selftrain.pseudo_labels import manifest as manifest_lib
from official_selftrain.pseudo_labels import schema
from official_selftrain.pseudo_labels import shard_files

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
flags.DEFINE_float(
  'threshold',
  None,
  'Score at or above which pseudo boxes are drawn solid, with a caption '
  '(default: the read_threshold of the pseudo-label manifest, else 0.5).',
)
flags.DEFINE_alias('read_threshold', 'threshold')
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


# Written by the exporter next to its shards (pseudo_labels/export.py).
DEFAULT_THRESHOLD = 0.5
# Opacity of the boxes below the threshold, drawn over the image.
FADED_ALPHA = 150


def _floats(example, key):
  return np.array(example.features.feature[key].float_list.value)


def resolve_threshold(
  manifest: dict, threshold: Optional[float]
) -> Tuple[float, str]:
  """(the score splitting solid from faded boxes, where it comes from):
  `threshold` if given, else the manifest's read_threshold, else 0.5."""
  if threshold is not None:
    return float(threshold), '--threshold'
  if 'read_threshold' in manifest:
    return float(manifest['read_threshold']), 'manifest read_threshold'
  return DEFAULT_THRESHOLD, 'default'


def split_by_threshold(scores, threshold: float):
  """Indices of the boxes at or above `threshold` (what the student learns
  from) and of those below it, each by increasing score."""
  scores = np.asarray(scores, np.float32)  # compared as the decoder does
  order = np.argsort(scores, kind='stable')
  above = scores[order] >= np.float32(threshold)
  return order[above], order[~above]


def font(size: int):
  """A TrueType font of `size` pixels (Pillow >= 10.1 with FreeType), else
  Pillow's fixed bitmap font."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: no size argument
    return ImageFont.load_default()


def _decode_pseudo_labels(record: bytes):
  """(uint8 image, normalised boxes, classes, scores) of a pseudo record."""
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  image = tf.io.decode_image(
    feature['image/encoded'].bytes_list.value[0],
    channels=3,
    expand_animations=False,
  ).numpy()
  boxes = np.stack(
    [
      _floats(example, f'image/object/bbox/{k}')
      for k in ('ymin', 'xmin', 'ymax', 'xmax')
    ],
    axis=-1,
  ).reshape([-1, 4])
  classes = np.array(feature['image/object/class/label'].int64_list.value)
  return image, boxes, classes, _floats(example, schema.SCORE_KEY)


def _colour(label) -> tuple:
  return COLOURS[(int(label) - 1) % len(COLOURS)]


def _dashed_rectangle(draw, shape, fill, dash: int):
  """A 1 px rectangle outline of dashes `dash` px long, `dash` px apart."""
  x0, y0, x1, y1 = shape
  corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
  for (ax, ay), (bx, by) in zip(corners, corners[1:]):
    length = max(abs(bx - ax), abs(by - ay), 1.0)
    for start in np.arange(0.0, length, 2 * dash):
      t0, t1 = start / length, min(start + dash, length) / length
      segment = [
        (ax + (bx - ax) * t0, ay + (by - ay) * t0),
        (ax + (bx - ax) * t1, ay + (by - ay) * t1),
      ]
      draw.line(segment, fill=fill, width=1)


def _caption(draw, shape, text, colour, text_font, picture_size):
  """`text` on a band of the class colour, above the box or, with no room
  there, inside its top edge; inside the picture."""
  left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
  width, height = right - left + 6, bottom - top + 4
  y = shape[1] - height if shape[1] >= height else shape[1]
  y = max(min(y, picture_size[1] - height), 0)
  x = max(min(shape[0], picture_size[0] - width), 0)
  draw.rectangle([x, y, x + width - 1, y + height - 1], fill=colour)
  ink = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)
  draw.text((x + 3 - left, y + 2 - top), text, fill=ink, font=text_font)


def draw_pseudo_labels(
  record: bytes,
  read_threshold: float,
  scale: int,
  class_names=shapes.DET_CLASSES,
) -> Image.Image:
  """One image with its pseudo boxes drawn: at or above `read_threshold`
  solid, `max(2, scale)` px wide, in the class colour, captioned `class
  score`; below it 1 px, dashed and faded, without caption."""
  image, boxes, classes, scores = _decode_pseudo_labels(record)
  height, width = image.shape[:2]
  picture = Image.fromarray(image).resize(
    (width * scale, height * scale), Image.NEAREST
  )
  shapes_px = boxes[:, [1, 0, 3, 2]] * [width, height, width, height] * scale
  above, below = split_by_threshold(scores, read_threshold)
  overlay = Image.new('RGBA', picture.size, (0, 0, 0, 0))
  faded = ImageDraw.Draw(overlay)
  for k in below:
    fill = _colour(classes[k]) + (FADED_ALPHA,)
    _dashed_rectangle(faded, shapes_px[k].tolist(), fill, max(2, scale))
  picture = Image.alpha_composite(picture.convert('RGBA'), overlay)
  picture = picture.convert('RGB')
  draw = ImageDraw.Draw(picture)
  text_font = font(max(14, min(picture.size) // 24))
  for k in above:
    outline = _colour(classes[k])
    draw.rectangle(shapes_px[k].tolist(), outline=outline, width=max(2, scale))
  for k in above:
    label = int(classes[k])
    name = class_names[label - 1] if 0 < label <= len(class_names) else label
    _caption(
      draw,
      shapes_px[k].tolist(),
      f'{name} {scores[k]:.2f}',
      _colour(label),
      text_font,
      picture.size,
    )
  return picture


SEGMENTATION_KEY = 'image/segmentation/class/encoded'
IGNORED_COLOUR = (128, 128, 128)


def draw_segmentation_pseudo_labels(record: bytes, scale: int) -> Image.Image:
  """One image beside its pseudo label map over it: each class in its
  colour (half transparent), ignored pixels (255) grey, background as is."""
  feature = tf.train.Example.FromString(record).features.feature
  image = tf.io.decode_image(
    feature['image/encoded'].bytes_list.value[0],
    channels=3,
    expand_animations=False,
  ).numpy()
  labels = tf.io.decode_png(feature[SEGMENTATION_KEY].bytes_list.value[0])
  labels = labels.numpy()[..., 0]
  colours = np.zeros((256, 3), np.float32)
  for label in range(1, 255):
    colours[label] = _colour(label)
  colours[255] = IGNORED_COLOUR
  painted = labels > 0
  overlay = image.astype(np.float32)
  overlay[painted] = 0.5 * overlay[painted] + 0.5 * colours[labels[painted]]
  pair = np.concatenate([image, overlay.astype(np.uint8)], axis=1)
  height, width = pair.shape[:2]
  return Image.fromarray(pair).resize(
    (width * scale, height * scale), Image.NEAREST
  )


def legend(
  canvas: Image.Image, threshold: float, source: str, floor=None
) -> Image.Image:
  """The canvas with a title band over its top saying which score (from
  `source`) splits the solid boxes from the faded ones: one line, or two
  (in a smaller font if need be) where one would not fit."""
  if floor is None:
    faded = f'thin, dashed: score < {threshold:.2f}'
  elif float(floor) < threshold:
    faded = f'thin, dashed: {float(floor):.2f} <= score < {threshold:.2f}'
  else:
    faded = f'none below it (export floor {float(floor):.2f})'
  lines = [f'solid, captioned: score >= {threshold:.2f} ({source})', faded]
  draw = ImageDraw.Draw(canvas, 'RGBA')
  size = max(12, canvas.size[0] // 96)
  text = '  |  '.join(lines)
  if draw.textlength(text, font=font(size)) > canvas.size[0] - 8:
    text = '\n'.join(lines)
  width = max(draw.textlength(line, font=font(size)) for line in lines)
  while size > 8 and width > canvas.size[0] - 8:
    size -= 1
    width = max(draw.textlength(line, font=font(size)) for line in lines)
  text_font = font(size)
  left, top, _, bottom = draw.multiline_textbbox((0, 0), text, font=text_font)
  draw.rectangle([0, 0, canvas.size[0], bottom - top + 6], fill=(0, 0, 0, 170))
  draw.multiline_text(
    (4 - left, 3 - top), text, fill=(255, 255, 255), font=text_font
  )
  return canvas


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
    ids = shapes.instance_id_map(masks.reshape((-1,) + image.shape[:2]))
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
    ids = shapes.instance_id_map(scene.masks)
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


def _augment_main():
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


def _pseudo_labels_main():
  files = sorted(glob.glob(shard_files.shard_glob(FLAGS.pseudo_labels)))
  if not files:
    raise SystemExit(f'error: no pseudo-*.tfrecord in {FLAGS.pseudo_labels}')
  records = [
    r.numpy() for r in tf.data.TFRecordDataset(files).take(FLAGS.num_images)
  ]
  manifest = manifest_lib.read_manifest(FLAGS.pseudo_labels)
  if manifest.get('task') == 'segmentation':
    pictures = [
      draw_segmentation_pseudo_labels(r, FLAGS.scale) for r in records
    ]
    canvas = grid(pictures, FLAGS.columns)
    canvas.save(FLAGS.output)
    print(f'Wrote {len(pictures)} images to {FLAGS.output}')
    return
  threshold, source = resolve_threshold(manifest, FLAGS.threshold)
  pictures = [draw_pseudo_labels(r, threshold, FLAGS.scale) for r in records]
  canvas = grid(pictures, FLAGS.columns)
  legend(canvas, threshold, source, manifest.get('export_floor'))
  canvas.save(FLAGS.output)
  print(f'Wrote {len(pictures)} images to {FLAGS.output}')


def main(argv):
  del argv
  if FLAGS.augment:
    _augment_main()
  elif FLAGS.pseudo_labels:
    _pseudo_labels_main()
  else:
    raise SystemExit('error: give --pseudo_labels or --augment')


def entry():
  app.run(main)


if __name__ == '__main__':
  entry()
