"""Trains and evaluates one experiment on Model Garden tasks and Orbit.

The library half of `python -m official_selftrain.train` (the command line is
in `train.py`): the pipeline calls `run` once per stage. Checkpoints every
`checkpoint_interval` steps, resumes from the latest checkpoint in model_dir,
TensorBoard summaries under model_dir, every evaluation in eval_results.json.
"""

import os
import re
from typing import Dict
from typing import Optional
from typing import Tuple

from absl import logging
import gin
from official.common import distribute_utils
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
import tensorflow as tf
import tf_keras

from official_selftrain import progress
from official_selftrain.configs import experiment as experiment_lib
from official_selftrain.data import record_check

# 'auto': one device, or Mirrored over the GPUs when more than one is used.
STRATEGIES = ('auto', 'one_device', 'mirrored', 'multi_worker_mirrored', 'tpu')
MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')


class UndecodableRecordsError(ValueError):
  """Training input holds records whose image does not decode."""


class TrainingDivergedError(RuntimeError):
  """The loss went NaN or infinite; the last good checkpoint is kept."""


def resolve_strategy(
  name: str, num_gpus: Optional[int], visible_gpus: Optional[int] = None
) -> Tuple[str, int]:
  """(strategy name, GPUs it uses) for `--strategy` and `--num_gpus`.

  'auto' is one device (a GPU if any, else the CPU), or Mirrored when more
  than one GPU is used; `--num_gpus` defaults to every visible GPU for
  'auto' and 'mirrored', one for 'one_device'.

  Raises:
    ValueError: naming the flag, for more GPUs than are visible or than
      'one_device' can use.
  """
  if name not in STRATEGIES:
    raise ValueError(f'--strategy={name} is not one of {STRATEGIES}.')
  if visible_gpus is None:
    visible_gpus = len(tf.config.list_physical_devices('GPU'))
  if num_gpus is None:
    num_gpus = min(visible_gpus, 1) if name == 'one_device' else visible_gpus
  if name in ('auto', 'one_device', 'mirrored') and num_gpus > visible_gpus:
    raise ValueError(
      f'--num_gpus={num_gpus}, but {visible_gpus} GPU(s) are visible '
      '(CUDA_VISIBLE_DEVICES and the driver decide which).'
    )
  if name == 'one_device' and num_gpus > 1:
    raise ValueError(
      f'--strategy=one_device runs on one device, not --num_gpus={num_gpus}: '
      'use --strategy=mirrored (or the default, auto).'
    )
  if name == 'auto':
    name = 'mirrored' if num_gpus > 1 else 'one_device'
  return name, num_gpus


def build_strategy(
  name: str, tpu: Optional[str] = None, num_gpus: Optional[int] = None
) -> tf.distribute.Strategy:
  """A tf.distribute strategy by name (see `STRATEGIES`, `resolve_strategy`).

  Raises:
    ValueError: a bad --strategy / --num_gpus, or --strategy=tpu without
      --tpu or with a TPU that cannot be reached (naming --tpu).
  """
  name, num_gpus = resolve_strategy(name, num_gpus)
  if name == 'tpu' and not tpu:
    raise ValueError(
      '--strategy=tpu needs --tpu=<name or grpc://address> (--tpu=local on a '
      'TPU VM).'
    )
  try:
    return distribute_utils.get_distribution_strategy(
      distribution_strategy=name, num_gpus=num_gpus, tpu_address=tpu
    )
  except Exception as e:  # the resolver's errors vary: NotFound, URLError...
    if name != 'tpu':
      raise
    first_line = (str(e).strip().splitlines() or [''])[0][:300]
    raise ValueError(
      f'--tpu={tpu}: no TPU reachable ({type(e).__name__}: {first_line}). '
      'Give the name of a Cloud TPU in this project and zone, its '
      'grpc://address:8470, or --tpu=local on a TPU VM.'
    ) from e


class WorkerLostError(RuntimeError):
  """A worker of a multi-worker cluster stopped; the checkpoints are kept."""


def _cluster_task(strategy: tf.distribute.Strategy):
  """(task type, task id, cluster dict) of a multi-worker strategy; None
  for any other (one process drives every device)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return None
  resolver = strategy.cluster_resolver
  if resolver is None or not resolver.task_type:
    return None
  return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files: the chief task, or worker
  0 of a cluster without one (TF's convention); any single process."""
  task = _cluster_task(strategy)
  if task is None:
    return True
  task_type, task_id, cluster = task
  if 'chief' in cluster:
    return task_type == 'chief'
  return task_type == 'worker' and task_id == 0


def worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where this process writes: model_dir for the chief; for another worker
  a scratch dir of its own, holding a copy of the chief's latest checkpoint
  to resume from. Under MultiWorkerMirroredStrategy every worker must save
  checkpoints and summaries (they are collective), but only the chief's
  count; Model Garden's runner reads and writes one model_dir, hence this."""
  if is_chief(strategy):
    return model_dir
  task_type, task_id, _ = _cluster_task(strategy)
  scratch = os.path.join(model_dir, f'workertemp_{task_type}_{task_id}')
  if tf.io.gfile.exists(scratch):
    tf.io.gfile.rmtree(scratch)
  tf.io.gfile.makedirs(scratch)
  latest = tf.train.latest_checkpoint(model_dir)
  if latest:
    for path in tf.io.gfile.glob(latest + '.*'):
      tf.io.gfile.copy(
        path, os.path.join(scratch, os.path.basename(path)), overwrite=True
      )
    tf.compat.v1.train.update_checkpoint_state(
      scratch, os.path.join(scratch, os.path.basename(latest))
    )
  return scratch


# What TF's collectives say when a peer of the cluster is gone.
_PEER_LOST = ('stopped sending heartbeats', 'Collective ops is aborted', 'peer')


def _barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns on every worker once all reach it: the chief gets here after its
  last checkpoint save, so a worker's next stage (evaluation, labelling)
  reads the chief's final checkpoint, not the one before (Orbit saves after
  the last evaluation, with no collective after it)."""
  ones = strategy.run(lambda: tf.constant(1.0))
  strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def _worker_lost_error(model_dir: str, error: Exception) -> Optional[Exception]:
  """A WorkerLostError for a collective that failed for a lost peer; None
  for any other error (a storage read, say)."""
  text = str(error)
  if not any(marker in text for marker in _PEER_LOST):
    return None
  # TF's health check names the tasks that stopped sending heartbeats.
  lost = re.search(r'stopped sending heartbeats\):\s*((?:/job:\S+\s*)+)', text)
  if lost:
    why = f'{", ".join(lost.group(1).split())} stopped sending heartbeats'
  else:
    why = (text.strip().splitlines() or [''])[0][:300]
  latest = tf.train.latest_checkpoint(model_dir)
  return WorkerLostError(
    f'A worker of the cluster stopped or cannot be reached '
    f'({type(error).__name__}: {why}). The last checkpoint is '
    f'{latest or "(none yet)"}: restart every worker with the same command '
    'and TF_CONFIG, and the run resumes from it.'
  )


def _undecodable_records_error(config) -> Optional[Exception]:
  """After a decode failure in tf.data, names the records at fault."""
  for data in (config.task.train_data, config.task.validation_data):
    bad = record_check.find_undecodable_records(data.input_path)
    if bad:
      listing = '\n  '.join(str(r) for r in bad[:20])
      more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
      return UndecodableRecordsError(
        f'{len(bad)} record(s) in {data.input_path} have an image that does '
        f'not decode:\n  {listing}{more}\nFix or remove them, or skip and '
        "count them with --gin_param='detection_experiment."
        "skip_corrupt_records=True'."
      )
  return None


def _diverged_error(model_dir: str, error: Exception) -> Exception:
  latest = tf.train.latest_checkpoint(model_dir)
  return TrainingDivergedError(
    f'Training stopped: {error}\nThe last good checkpoint is intact: '
    f'{latest or "(none was written yet)"}. Nothing after it was saved. '
    'Lower the learning rate or check the inputs, then rerun to resume.'
  )


def write_configs(config, model_dir: str) -> None:
  """params.yaml (Model Garden's) and config.gin beside the checkpoints."""
  train_utils.serialize_config(config, model_dir)
  with tf.io.gfile.GFile(os.path.join(model_dir, 'config.gin'), 'w') as f:
    f.write(gin.config_str())


class _Runner(train_lib.OrbitExperimentRunner):
  """Model Garden's runner; a worker other than the chief resumes too.

  Model Garden saves a non-chief worker's (collective) checkpoints to a
  fresh temp dir: on a rerun that worker starts from step 0 while the chief
  restores its checkpoint, and the cluster's first collectives then mismatch
  (`Collective instance ... expected type ... data_type 9`). Here the worker
  checkpoints in its scratch model_dir, which `worker_dir` seeded with the
  chief's latest checkpoint.
  """

  def _maybe_build_checkpoint_manager(self):
    if not self.trainer.checkpoint or self.strategy.extended.should_checkpoint:
      return super()._maybe_build_checkpoint_manager()
    return tf.train.CheckpointManager(
      self.trainer.checkpoint,
      directory=self.model_dir,
      max_to_keep=1,
      step_counter=self.trainer.global_step,
      checkpoint_interval=self.params.trainer.checkpoint_interval,
      init_fn=self.trainer.initialize,
    )


def _run_orbit(config, task, mode, model_dir, strategy, results) -> None:
  """Model Garden's trainer and Orbit's controller, with our two actions."""
  with strategy.scope():
    trainer = train_utils.create_trainer(
      config,
      task,
      train='train' in mode,
      evaluate='eval' in mode,
      checkpoint_exporter=train_lib.maybe_create_best_ckpt_exporter(
        config, model_dir
      ),
    )
  results.set_global_step(trainer.global_step)
  train_actions = []
  if 'train' in mode:
    train_actions.append(
      progress.ProgressLogger(
        trainer,
        config.trainer.train_steps,
        config.task.train_data.global_batch_size,
        name=os.path.basename(os.path.normpath(model_dir)),
      )
    )
  _Runner(
    distribution_strategy=strategy,
    task=task,
    mode=mode,
    params=config,
    model_dir=model_dir,
    trainer=trainer,
    train_actions=train_actions,
    eval_actions=[results],
  ).run()


def run(
  experiment: experiment_lib.Experiment,
  mode: str,
  model_dir: str,
  strategy: tf.distribute.Strategy,
) -> Dict[str, float]:
  """Trains and/or evaluates one experiment; returns the last eval metrics.

  Raises:
    UndecodableRecordsError: an input image does not decode (names it).
    TrainingDivergedError: the loss went NaN / infinite.
  """
  config = experiment.config
  experiment.prepare()
  if experiment.seed is not None:
    # Python, numpy and TF's global seed: the model's initial weights and
    # the augmentation ops' draws; the data order follows the data
    # configs' `seed` (set by the same binding).
    tf_keras.utils.set_random_seed(experiment.seed)
    if experiment.deterministic:
      # Without it, tf.data's parallel augmentation draws from the seeded
      # streams in a varying order, and runs differ.
      tf.config.experimental.enable_op_determinism()
  if config.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(config.runtime.mixed_precision_dtype)
  tf.io.gfile.makedirs(model_dir)
  write_dir = worker_dir(model_dir, strategy)
  if 'train' in mode and write_dir == model_dir:
    write_configs(config, model_dir)
  with strategy.scope():
    task = task_factory.get_task(config.task, logging_dir=write_dir)
  results = progress.ResultsWriter(write_dir, filename=experiment.results_file)
  try:
    _run_orbit(config, task, mode, write_dir, strategy, results)
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
    lost = _worker_lost_error(model_dir, e) if _cluster_task(strategy) else None
    if lost is None:
      raise
    raise lost from e
  except tf.errors.InvalidArgumentError as e:
    named = _undecodable_records_error(config)
    if named is not None:
      raise named from e
    raise
  except RuntimeError as e:
    if 'loss value' in str(e):
      raise _diverged_error(model_dir, e) from e
    raise
  if _cluster_task(strategy) is not None:
    _barrier(strategy)
  if write_dir != model_dir:
    tf.io.gfile.rmtree(write_dir)  # the chief's files are the run's
  metrics = results.latest
  if not metrics and 'eval' in mode:
    # Orbit does not evaluate again when the run was already complete.
    logging.info('Nothing left to train; reporting the last evaluation.')
    metrics = results.last_recorded()
  if metrics:
    print(progress.format_metrics(metrics), flush=True)
  return metrics


def count_params(config) -> int:
  """Parameters of the model an experiment config's task builds (on CPU;
  nothing is trained or restored)."""
  with tf.device('/cpu:0'):
    model = task_factory.get_task(config.task).build_model()
    if not model.built:  # RetinaNet builds on its first call
      model(tf_keras.Input(list(config.task.model.input_size)), training=True)
    return model.count_params()


def describe_params(configs: Dict[str, object]) -> str:
  """`params: N` for a one-model job; one line per stage for a pipeline."""
  counts = {name: count_params(config) for name, config in configs.items()}
  if len(counts) == 1:
    return f'params: {next(iter(counts.values()))}'
  return '\n'.join(f'{name} params: {n}' for name, n in counts.items())
