"""The training-step benchmark runs its three trainers in alternating pairs."""

import json

from helpers import TINY_GIN
from helpers import run_tool
import pytest


@pytest.mark.e2e
@pytest.mark.slow
def test_train_benchmark_reports_rates_and_per_pair_ratios(tmp_path, data_dir):
  del data_dir  # the session's data cache, through $SELFTRAIN_DATA_DIR
  output = tmp_path / 'train.json'
  result = run_tool(
    'benchmark.py',
    '--what=train',
    f'--gin_file={TINY_GIN}',
    '--steps=2',
    '--repeats=2',
    f'--output={output}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(output.read_text())
  rates = report['steps_per_second']
  assert set(rates) == {'ours', 'model_garden', 'ours_bfloat16'}
  assert all(r > 0 for r in rates.values())
  for key in ('ours_over_model_garden', 'bf16_over_fp32'):
    pair = report['pairs'][key]
    assert len(pair['per_pair']) == 2 and pair['median'] > 0
  assert report['images_per_step'] == 8
