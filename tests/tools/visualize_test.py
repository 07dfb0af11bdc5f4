"""The visualize tool draws policy outputs and pseudo labels as PNG grids."""

import json

from helpers import run_tool
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes
from official_selftrain.tools import visualize

GREY = 128
SIZE = 64
SCALE = 3
# (normalised box, class, score): one above the 0.5 threshold, one at it,
# one below it.
BOXES = [
  ((0.25, 0.05, 0.5, 0.4), 1, 0.9),
  ((0.25, 0.55, 0.5, 0.95), 3, 0.5),
  ((0.75, 0.3, 0.95, 0.7), 2, 0.3),
]


def _run(*args):
  return run_tool('visualize.py', *args)


def _pseudo_record(boxes=BOXES):
  """A pseudo-label record: a plain grey image and `boxes`."""
  image = np.full([SIZE, SIZE, 3], GREY, np.uint8)
  coords = np.array([b for b, _, _ in boxes], np.float32).reshape([-1, 4])

  def floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))

  feature = {
    'image/encoded': tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])
    ),
    'image/object/class/label': tf.train.Feature(
      int64_list=tf.train.Int64List(value=[c for _, c, _ in boxes])
    ),
    'image/object/score': floats([s for _, _, s in boxes]),
  }
  for i, key in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
    feature[f'image/object/bbox/{key}'] = floats(coords[:, i].tolist())
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString()


@pytest.mark.e2e
def test_augment_grid_of_records_with_masks(tmp_path):
  records = str(tmp_path / 'data.tfrecord')
  with tf.io.TFRecordWriter(records) as writer:
    for index in range(2):
      scene = shapes.det_scene(0, 'val', index)
      example = embedded.scene_to_tf_example(scene, str(index + 1))
      writer.write(example.SerializeToString())
  output = str(tmp_path / 'grid.png')
  result = _run(
    '--augment=S1,S4',
    f'--records={records}',
    '--num_images=2',
    '--draws=1',
    '--scale=1',
    f'--output={output}',
  )
  assert result.returncode == 0, result.stderr[-2000:]
  # One row per image: the original, one draw of S1, one of S4.
  assert Image.open(output).size == (3 * 128, 2 * 128)


@pytest.mark.e2e
def test_unknown_policy_is_named(tmp_path):
  result = _run('--augment=S9', f'--output={tmp_path / "x.png"}')
  assert result.returncode != 0
  assert "--augment='S9'" in result.stdout + result.stderr


def test_split_by_threshold_puts_the_threshold_itself_above():
  above, below = visualize.split_by_threshold([0.9, 0.3, 0.5, 0.49, 0.7], 0.5)
  assert list(above) == [2, 4, 0]  # by increasing score
  assert list(below) == [1, 3]


def test_threshold_defaults_to_the_manifests_read_threshold():
  manifest = {'read_threshold': 0.7, 'export_floor': 0.1}
  assert visualize.resolve_threshold(manifest, None)[0] == 0.7
  assert visualize.resolve_threshold(manifest, 0.3)[0] == 0.3
  assert visualize.resolve_threshold({}, None)[0] == 0.5


def _edge_pixels(drawn, box):
  """Pixels of the picture's left-edge band of a box: 3 px either side of
  its left border, over its middle half."""
  ymin, xmin, ymax, _ = (np.array(box) * SIZE * SCALE).round().astype(int)
  quarter = (ymax - ymin) // 4
  return drawn[ymin + quarter : ymax - quarter, xmin - 3 : xmin + 4]


def test_boxes_at_or_above_the_threshold_stand_out():
  drawn = np.asarray(visualize.draw_pseudo_labels(_pseudo_record(), 0.5, SCALE))
  assert drawn.shape == (SIZE * SCALE, SIZE * SCALE, 3)
  for box, label, score in BOXES:
    colour = np.array(visualize.COLOURS[label - 1])
    band = _edge_pixels(drawn, box)
    full = (band == colour).all(-1)
    changed = (band != GREY).any(-1)
    if score >= 0.5:
      # Solid, in the class colour, at least 2 px wide on every row.
      assert (full.sum(1) >= 2).all(), (score, full.sum(1))
    else:
      # Thin, faded (never the full colour) and dashed (gaps on the edge).
      assert changed.any() and not full.any(), score
      assert changed.sum(1).max() == 1, score
      assert not changed.any(1).all(), score


def test_captions_are_legible_and_only_above_the_threshold():
  drawn = np.asarray(visualize.draw_pseudo_labels(_pseudo_record(), 0.5, SCALE))
  for box, label, score in BOXES:
    ymin, xmin = int(box[0] * SIZE * SCALE), int(box[1] * SIZE * SCALE)
    above = drawn[max(ymin - 30, 0) : ymin - 2, xmin : xmin + 40]
    captioned = (above != GREY).any(-1).any(1)
    if score >= 0.5:
      # The caption's band of the class colour is at least 12 px tall.
      colour = np.array(visualize.COLOURS[label - 1])
      rows = (above == colour).all(-1).any(1)
      assert rows.sum() >= 12, (score, rows.sum())
    else:
      assert not captioned.any(), score


@pytest.mark.e2e
def test_pseudo_labels_grid_takes_the_manifests_threshold(tmp_path):
  out = tmp_path / 'pseudo'
  out.mkdir()
  with tf.io.TFRecordWriter(str(out / 'pseudo-00000-of-00001.tfrecord')) as w:
    w.write(_pseudo_record())
  (out / 'manifest.json').write_text(
    json.dumps({'read_threshold': 0.95, 'export_floor': 0.1})
  )
  pictures = {}
  for name, extra in [('manifest', []), ('flag', ['--threshold=0.2'])]:
    png = str(tmp_path / f'{name}.png')
    result = _run(
      f'--pseudo_labels={out}',
      f'--output={png}',
      '--columns=1',
      f'--scale={SCALE}',
      *extra,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pictures[name] = np.asarray(Image.open(png).convert('RGB'))
    assert pictures[name].shape == (SIZE * SCALE, SIZE * SCALE, 3)
  # At the manifest's 0.95 no box is solid; with --threshold=0.2 all are.
  for box, label, _ in BOXES:
    colour = np.array(visualize.COLOURS[label - 1])
    assert not (_edge_pixels(pictures['manifest'], box) == colour).all(-1).any()
    assert (_edge_pixels(pictures['flag'], box) == colour).all(-1).any()
