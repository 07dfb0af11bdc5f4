"""Labels an unlabelled pool with a trained teacher (pseudo-label TFRecords).

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/export_pseudo_labels.py`, installed as
`python -m official_selftrain.tools.export_pseudo_labels` and `official_selftrain_export_pseudo_labels`.
"""

from official_selftrain.tools import export_pseudo_labels

if __name__ == '__main__':
  export_pseudo_labels.entry()
