"""Converts PASCAL VOC 2012 (+ SBD) segmentation to TFRecords.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/create_voc_tfrecords.py`, installed as
`python -m official_selftrain.tools.create_voc_tfrecords` and `official_selftrain_create_voc_tfrecords`.
"""

from official_selftrain.tools import create_voc_tfrecords

if __name__ == '__main__':
  create_voc_tfrecords.entry()
