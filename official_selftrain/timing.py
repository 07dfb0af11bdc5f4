"""Side-by-side timing: alternating passes and per-pair speed ratios.

Shared by the benchmarks (`tools/benchmark.py`) and kept free of flags so a
test can import it beside any tool.
"""

import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Tuple

Seconds = Dict[str, List[float]]


def best_seconds(fn: Callable[[], None], repeats: int) -> float:
  """Wall seconds of the fastest of `repeats` calls of `fn`."""
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def alternating_pairs(run, ours, garden, repeats) -> Tuple[Seconds, Seconds]:
  """Wall and CPU seconds of each pass, {'ours': [...], 'model_garden': [...]}.

  `run(ours)` and `run(garden)` alternate which goes first, so drift in the
  machine's speed falls on both alike; each pair of passes gives one ratio.
  """
  wall = {'ours': [], 'model_garden': []}
  cpu = {'ours': [], 'model_garden': []}
  for repeat in range(repeats):
    pair = [('model_garden', garden), ('ours', ours)]
    for key, arg in pair[:: 1 if repeat % 2 == 0 else -1]:
      start_wall, start_cpu = time.perf_counter(), time.process_time()
      run(arg)
      wall[key].append(time.perf_counter() - start_wall)
      cpu[key].append(time.process_time() - start_cpu)
  return wall, cpu


def ratios(seconds: Seconds) -> List[float]:
  """Speed of `ours` over `model_garden`, one per pair of passes."""
  return [g / o for o, g in zip(seconds['ours'], seconds['model_garden'])]
