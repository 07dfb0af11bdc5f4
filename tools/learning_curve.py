"""Learning curves of the supervised model (full schedules, plotted).

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/learning_curve.py`, installed as
`python -m official_selftrain.tools.learning_curve` and
`official_selftrain_learning_curve`.
"""

from official_selftrain.tools import learning_curve

if __name__ == '__main__':
  learning_curve.entry()
