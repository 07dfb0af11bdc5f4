"""Dataset bindings: a missing COCO names the path and the tool that makes it."""

import re

from absl import flags
from official.vision.data import create_coco_tf_record  # noqa: F401 (flags)
import pytest

from official_selftrain.data import datasets


def test_missing_coco_names_expected_path_and_tool(tmp_path):
  data = datasets.coco(data_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(datasets.MissingDatasetError) as error:
    data.prepare()
  message = str(error.value)
  assert str(tmp_path / 'nowhere' / 'train-*') in message
  assert 'official_selftrain.tools.create_coco_tfrecords' in message
  assert 'coco.data_dir' in message


def test_missing_coco_suggests_only_flags_the_converter_has(tmp_path):
  data = datasets.coco(data_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(datasets.MissingDatasetError) as error:
    data.prepare()
  suggested = set(re.findall(r'--(\w+)=', str(error.value)))
  assert {'image_dir', 'object_annotations_file', 'output_file_prefix'} <= (
    suggested
  )
  assert suggested <= set(flags.FLAGS), suggested - set(flags.FLAGS)


def test_label_fraction_out_of_range_is_rejected():
  with pytest.raises(ValueError, match='label_fraction'):
    datasets.shapes_det(label_fraction=0.0)
