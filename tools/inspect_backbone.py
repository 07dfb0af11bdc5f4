"""A detector's backbone at several checkpoints, side by side.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/inspect_backbone.py`, installed as
`python -m official_selftrain.tools.inspect_backbone` and
`official_selftrain_inspect_backbone`.
"""

from official_selftrain.tools import inspect_backbone

if __name__ == '__main__':
  inspect_backbone.entry()
