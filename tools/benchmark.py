"""Side-by-side speed benchmarks against Model Garden (ratios, JSON out).

A thin entry point for a source checkout; the tool is
`official_selftrain/tools/benchmark.py`, installed as
`python -m official_selftrain.tools.benchmark` and `official_selftrain_benchmark`.
"""

from official_selftrain.tools import benchmark

if __name__ == '__main__':
  benchmark.entry()
