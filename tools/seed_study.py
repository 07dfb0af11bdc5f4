"""A self-training pipeline over seeds (mean, spread, gain per seed).

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/seed_study.py`, installed as
`python -m official_selftrain.tools.seed_study` and
`official_selftrain_seed_study`.
"""

from official_selftrain.tools import seed_study

if __name__ == '__main__':
  seed_study.entry()
