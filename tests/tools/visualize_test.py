"""tools/visualize.py --augment draws each policy's output as a PNG grid."""

from helpers import run_tool
from PIL import Image
import tensorflow as tf

from official_selftrain.data import embedded
from official_selftrain.data import shapes


def _run(*args):
  return run_tool('visualize.py', *args)


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


def test_unknown_policy_is_named(tmp_path):
  result = _run('--augment=S9', f'--output={tmp_path / "x.png"}')
  assert result.returncode != 0
  assert "--augment='S9'" in result.stdout + result.stderr
