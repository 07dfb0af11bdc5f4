"""Releases a pipeline's trained teacher for other runs to start from.

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/release_teacher.py`, installed as
`python -m official_selftrain.tools.release_teacher` and
`official_selftrain_release_teacher`.
"""

from official_selftrain.tools import release_teacher

if __name__ == '__main__':
  release_teacher.entry()
