"""Converts COCO 2017 to TFRecords (Model Garden's converter).

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/create_coco_tfrecords.py`, installed as
`python -m official_selftrain.tools.create_coco_tfrecords` and `official_selftrain_create_coco_tfrecords`.
"""

from official_selftrain.tools import create_coco_tfrecords

if __name__ == '__main__':
  create_coco_tfrecords.entry()
