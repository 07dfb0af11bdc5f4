"""inspect_backbone: activations and kernel norm of a backbone per checkpoint."""

import json

import gin
from helpers import TINY_GIN
from helpers import run_tool
from official.core import task_factory
import pytest
import tensorflow as tf
import tf_keras

from official_selftrain import config_files
from official_selftrain import registry_imports  # noqa: F401
from official_selftrain.configs import experiment as experiment_lib


@pytest.mark.e2e
def test_rows_per_checkpoint(tmp_path, data_dir):
  del data_dir  # the session's data cache, through $SELFTRAIN_DATA_DIR
  # A backbone whose kernels are 3x those of the seed-1 model.
  gin.clear_config()
  config_files.parse([TINY_GIN], [])
  task = task_factory.get_task(experiment_lib.build().config.task)
  gin.clear_config()
  tf_keras.utils.set_random_seed(1)
  model = task.build_model()
  for v in model.backbone.trainable_variables:
    if 'kernel' in v.name:
      v.assign(3.0 * v)
  tf.train.Checkpoint(backbone=model.backbone).write(str(tmp_path / 'x' / 'ck'))
  output = str(tmp_path / 'rows.json')
  result = run_tool(
    'inspect_backbone.py',
    f'--gin_file={TINY_GIN}',
    f'--checkpoints=rand_init,{tmp_path / "x"}',
    f'--output={output}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(output) as f:
    rand, scaled = json.load(f)
  assert rand['checkpoint'] == 'rand_init'
  assert scaled['kernel_norm'] == pytest.approx(
    3 * rand['kernel_norm'], rel=1e-4
  )
  assert set(rand['levels']) == {'C2', 'C3', 'C4', 'C5'}
  assert 'kernel norm' in result.stdout
