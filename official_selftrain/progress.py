"""Progress and results for long work: counts, rates, ETA, eval metrics.

One `Progress` formats every progress line of the project the same way:
training steps (with images/s beside steps/s), pseudo-labelled images, generated
images. Orbit logs steps/s and writes TensorBoard summaries; `ProgressLogger`
adds what a person watching a run wants on one line, and `ResultsWriter` keeps
every evaluation's metrics in `model_dir/eval_results.json` for scripts.
"""

import json
import os
import time
from typing import Any
from typing import Callable
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


def duration(seconds: float) -> str:
  """'1h02m03s' or '2m03s'."""
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return (
    f'{hours}h{minutes:02d}m{secs:02d}s' if hours else f'{minutes}m{secs:02d}s'
  )


class Progress:
  """Work done against a total, as one line: count, rate(s), ETA.

  The rate is measured from the first update on, so start-up time (building
  the model, tracing the first step) does not count against it; until a
  second update there is no rate and no ETA.

  Args:
    name: what is being done, the line's prefix ('teacher', 'pseudo labels').
    unit: what is counted ('steps', 'images').
    total: how many there will be (None: unknown, no ETA; `update` may give it).
    every_seconds: log at most this often (0: every update).
    per_unit: other rates derived from this one, e.g. {'images': 32} adds
      'images/s' at 32 per step.
    log_fn: where lines go (absl's logging.info by default).
  """

  def __init__(
    self,
    name: str,
    unit: str,
    total: Optional[int] = None,
    every_seconds: float = 0.0,
    per_unit: Optional[Mapping[str, float]] = None,
    log_fn: Callable[..., None] = logging.info,
  ):
    self._name = name
    self._unit = unit
    self.total = total
    self._every = every_seconds
    self._per_unit = dict(per_unit or {})
    self._log = log_fn
    self._first = None  # (done, time) at the first update
    self._last_logged = None
    self._updated_at = None
    self.done = 0

  def rate(self) -> Optional[float]:
    """Units per second from the first update to the latest; None before a
    second one."""
    if self._first is None:
      return None
    first_done, first_time = self._first
    elapsed = self._updated_at - first_time
    if self.done <= first_done or elapsed <= 0:
      return None
    return (self.done - first_done) / elapsed

  def line(self, details: str = '') -> str:
    """The progress line for the current state."""
    parts = [f'{self._name}: {self.done}']
    if self.total:
      parts[0] += (
        f'/{self.total} {self._unit} ({100.0 * self.done / self.total:.0f}%)'
      )
    else:
      parts[0] += f' {self._unit}'
    rate = self.rate()
    if rate is not None:
      parts.append(f'{rate:.2f} {self._unit}/s')
      parts.extend(f'{rate * n:.1f} {u}/s' for u, n in self._per_unit.items())
    if details:
      parts.append(details)
    if rate is not None and self.total:
      parts.append(f'ETA {duration((self.total - self.done) / rate)}')
    return ' | '.join(parts)

  def update(
    self,
    done: int,
    total: Optional[int] = None,
    details: str = '',
    force: bool = False,
  ) -> bool:
    """Records `done` units so far; logs if due. Returns whether it logged."""
    now = time.time()
    self.done = done
    self._updated_at = now
    if total is not None:
      self.total = total
    if self._first is None:
      self._first = (done, now)
    due = self._last_logged is None or now - self._last_logged >= self._every
    if not (force or due):
      return False
    self._last_logged = now
    self._log('%s', self.line(details))
    return True

  def add(self, count: int, **kwargs) -> bool:
    """As `update`, counting `count` more units."""
    return self.update(self.done + count, **kwargs)


def format_losses(output: Mapping[str, Any]) -> str:
  """'name value | ...' for the scalar entries of a train step's logs."""
  values = sorted((k, _to_float(v)) for k, v in output.items())
  return ' | '.join(f'{k} {v:.4f}' for k, v in values if v is not None)


class ProgressLogger:
  """Orbit train action: step, steps/s, images/s, losses and ETA per loop."""

  def __init__(
    self,
    trainer,
    total_steps: int,
    global_batch_size: int,
    name: str = 'train',
  ):
    self._trainer = trainer
    self._progress = Progress(
      name, 'steps', total_steps, per_unit={'images': global_batch_size}
    )

  def __call__(self, output: Mapping[str, Any]) -> None:
    step = int(self._trainer.global_step.numpy())
    self._progress.update(step, details=format_losses(output))


# Each evaluation on the validation split, in model_dir.
EVAL_RESULTS = 'eval_results.json'


class ResultsWriter:
  """Orbit eval action: appends each evaluation to a JSON list in model_dir
  (`eval_results.json` for the validation split)."""

  def __init__(
    self,
    model_dir: str,
    global_step: Optional[tf.Variable] = None,
    filename: str = EVAL_RESULTS,
  ):
    self._path = os.path.join(model_dir, filename)
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
  """One line of COCO (top-1, mIoU) metrics in percent, as papers print them."""
  # COCO reports -1 where a size bucket has no objects (APl on small images).
  parts = [
    f'{k} {100 * metrics[k]:.1f}' for k in COCO_KEYS if metrics.get(k, -1) >= 0
  ]
  # Image classification (Model Garden's metric names), segmentation.
  for key, name in (
    ('accuracy', 'top-1'),
    ('top_5_accuracy', 'top-5'),
    ('mIoU', 'mIoU'),
  ):
    if key in metrics:
      parts.append(f'{name} {100 * metrics[key]:.1f}')
  step = metrics.get('step')
  prefix = f'eval @ step {step}: ' if step is not None else 'eval: '
  return prefix + ' | '.join(parts)
