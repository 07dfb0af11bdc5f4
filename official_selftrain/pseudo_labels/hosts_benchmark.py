"""Export speed with 1 and with N exporter processes on one pool (a ratio).

Each pass runs the exporter tool as separate processes, as hosts of a cluster
would (`--num_hosts=N --host_index=i`), into a fresh output_dir, alternating
1 and N processes. Two rates per pass: labelling (images over the span from
the first shard's start to the last one's end, from the manifest: what more
hosts speed up) and end to end (wall time with each process's start-up,
TensorFlow import and teacher restore included).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any
from typing import Dict
from typing import List

from official_selftrain.data import embedded
from official_selftrain.data import pools
from official_selftrain.data import shapes
from official_selftrain.pseudo_labels import manifest as manifest_lib

_TOOL = [sys.executable, '-m', 'official_selftrain.tools.export_pseudo_labels']


def _export_pass(
  teacher_dir: str,
  pattern: str,
  out_dir: str,
  processes: int,
  num_shards: int,
  batch_size: int,
) -> Dict[str, float]:
  """One export by `processes` hosts; its rates."""
  args = _TOOL + [
    f'--teacher_dir={teacher_dir}',
    f'--pool={pattern}',
    f'--output_dir={out_dir}',
    f'--num_shards={num_shards}',
    f'--batch_size={batch_size}',
    f'--num_hosts={processes}',
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  start = time.time()
  running = [
    subprocess.Popen(
      args + [f'--host_index={i}'],
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(processes)
  ]
  logs = [p.communicate()[1] for p in running]
  wall = time.time() - start
  for p, log in zip(running, logs):
    if p.returncode:
      raise RuntimeError(f'exporter failed ({p.returncode}): {log[-3000:]}')
  manifest = manifest_lib.read_manifest(out_dir)
  images = manifest['images_written']
  return {
    'images': images,
    'labelling_images_per_second': manifest['labelling']['images_per_second'],
    'end_to_end_images_per_second': images / wall,
    'wall_seconds': wall,
  }


def benchmark_export_hosts(
  teacher_dir: str,
  num_images: int,
  batch_size: int,
  repeats: int,
  processes: int = 2,
  num_shards: int = 8,
) -> Dict[str, Any]:
  """Best-of-`repeats` rates of 1 and `processes` exporter processes."""
  work = tempfile.mkdtemp(prefix='benchmark_export_hosts_')
  try:
    split = embedded.shapes_det_split(
      work, 'unlabeled', num_images, num_shards=num_shards
    )
    pattern = embedded.split_records(split)
    partition = pools.TFRecordPool(pattern).partition(num_shards)
    passes: Dict[int, List[Dict[str, float]]] = {1: [], processes: []}
    for r in range(repeats):
      for n in (1, processes) if r % 2 == 0 else (processes, 1):
        out = os.path.join(work, f'out_{n}_{r}')
        passes[n].append(
          _export_pass(teacher_dir, pattern, out, n, num_shards, batch_size)
        )
    best = {
      n: {
        key: max(p[key] for p in runs)
        for key in (
          'labelling_images_per_second',
          'end_to_end_images_per_second',
        )
      }
      for n, runs in passes.items()
    }
    return {
      'what': 'export_hosts',
      'teacher_dir': teacher_dir,
      'num_images': num_images,
      'image_size': shapes.SceneSpec().image_size,
      'num_shards': num_shards,
      'pool_partition': partition,
      'batch_size': batch_size,
      'passes': {str(n): runs for n, runs in passes.items()},
      'best': {str(n): b for n, b in best.items()},
      'labelling_ratio': best[processes]['labelling_images_per_second']
      / best[1]['labelling_images_per_second'],
      'end_to_end_ratio': best[processes]['end_to_end_images_per_second']
      / best[1]['end_to_end_images_per_second'],
      'cpu_count': os.cpu_count(),
    }
  finally:
    shutil.rmtree(work, ignore_errors=True)
