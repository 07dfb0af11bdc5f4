"""tools/create_shapes_tfrecords.py: writes the data any Shapes config reads."""

import glob
import os

from helpers import REPO
from helpers import run_tool
import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
  'gin_file,annotations',
  [('tiny.gin', True), ('tiny_seg.gin', False)],
)
def test_writes_the_configs_data(gin_file, annotations):
  """Detection prints its COCO-format annotations; segmentation has none to
  print and must not fail on their absence."""
  result = run_tool(
    'create_shapes_tfrecords.py',
    f'--gin_file={os.path.join(REPO, "tests", "testdata", gin_file)}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  lines = dict(
    line.split(':', 1) for line in result.stdout.splitlines() if ':' in line
  )
  for split in ('Shapes-Det train', 'Shapes-Det val'):
    assert glob.glob(lines[split].strip()), (split, result.stdout)
  assert ('COCO-format val annotations' in lines) == annotations
