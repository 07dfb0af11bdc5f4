"""Exports a trained detector or segmenter as a SavedModel for serving.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/export_saved_model.py`, installed as
`python -m official_selftrain.tools.export_saved_model` and `official_selftrain_export_saved_model`.
"""

from official_selftrain.tools import export_saved_model

if __name__ == '__main__':
  export_saved_model.entry()
