"""Draws augmentation policies and pseudo labels as PNG grids.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/visualize.py`, installed as
`python -m official_selftrain.tools.visualize` and `official_selftrain_visualize`.
"""

from official_selftrain.tools import visualize

if __name__ == '__main__':
  visualize.entry()
