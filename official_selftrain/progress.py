"""Progress and results for long runs: steps/s, images/s, ETA, eval metrics.

Orbit logs steps/s and writes TensorBoard summaries; these two actions add what
a person watching a run wants on one line (images/s and ETA) and keep every
evaluation's metrics in `model_dir/eval_results.json` for scripts.
"""

import json
import os
import time
from typing import Any
from typing import Dict
from typing import Mapping
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf


def _to_float(value) -> Optional[float]:
  try:
    return float(np.asarray(value))
  except (TypeError, ValueError):
    return None


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return (
    f'{hours}h{minutes:02d}m{secs:02d}s' if hours else f'{minutes}m{secs:02d}s'
  )


class ProgressLogger:
  """Orbit train action: logs step, steps/s, images/s, losses and ETA."""

  def __init__(self, trainer, total_steps: int, global_batch_size: int):
    self._trainer = trainer
    self._total = total_steps
    self._batch = global_batch_size
    self._last_step = None
    self._last_time = None

  def __call__(self, output: Mapping[str, Any]) -> None:
    step = int(self._trainer.global_step.numpy())
    now = time.time()
    losses = ' | '.join(
      f'{k} {v:.4f}'
      for k, v in sorted((k, _to_float(v)) for k, v in output.items())
      if v is not None
    )
    if self._last_step is None or step <= self._last_step:
      # First loop of this process: its time includes tracing, so no rate.
      self._last_step, self._last_time = step, now
      logging.info('step %d/%d | %s', step, self._total, losses)
      return
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    logging.info(
      'step %d/%d (%.0f%%) | %.2f steps/s | %.1f images/s | %s | ETA %s',
      step,
      self._total,
      100.0 * step / self._total,
      rate,
      rate * self._batch,
      losses,
      _duration((self._total - step) / rate),
    )


class ResultsWriter:
  """Orbit eval action: appends each evaluation to eval_results.json."""

  def __init__(self, model_dir: str, global_step: Optional[tf.Variable] = None):
    self._path = os.path.join(model_dir, 'eval_results.json')
    self._global_step = global_step
    self.latest: Dict[str, float] = {}

  def last_recorded(self) -> Dict[str, float]:
    """The last evaluation written by any run in this model_dir, or {}."""
    if not tf.io.gfile.exists(self._path):
      return {}
    with tf.io.gfile.GFile(self._path) as f:
      history = json.load(f)
    return history[-1] if history else {}

  def set_global_step(self, global_step: tf.Variable) -> None:
    self._global_step = global_step

  def __call__(self, output: Mapping[str, Any]) -> None:
    metrics = {k: _to_float(v) for k, v in output.items()}
    metrics = {k: v for k, v in metrics.items() if v is not None}
    if self._global_step is not None:
      metrics['step'] = int(self._global_step.numpy())
    self.latest = metrics
    history = []
    if tf.io.gfile.exists(self._path):
      with tf.io.gfile.GFile(self._path) as f:
        history = json.load(f)
    history.append(metrics)
    tmp = self._path + '.tmp'
    with tf.io.gfile.GFile(tmp, 'w') as f:
      json.dump(history, f, indent=1)
    tf.io.gfile.rename(tmp, self._path, overwrite=True)


COCO_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def format_metrics(metrics: Mapping[str, float]) -> str:
  """One line of COCO metrics in percent, as papers print them."""
  # COCO reports -1 where a size bucket has no objects (APl on small images).
  parts = [
    f'{k} {100 * metrics[k]:.1f}' for k in COCO_KEYS if metrics.get(k, -1) >= 0
  ]
  step = metrics.get('step')
  prefix = f'eval @ step {step}: ' if step is not None else 'eval: '
  return prefix + ' | '.join(parts)
