"""Generates the embedded Shapes data a gin experiment reads.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/create_shapes_tfrecords.py`, installed as
`python -m official_selftrain.tools.create_shapes_tfrecords` and `official_selftrain_create_shapes_tfrecords`.
"""

from official_selftrain.tools import create_shapes_tfrecords

if __name__ == '__main__':
  create_shapes_tfrecords.entry()
