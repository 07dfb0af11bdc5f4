"""Starting a model from a checkpoint, with a report of what was restored.

Model Garden's tasks restore an init checkpoint with `tf.train.Checkpoint.read`
and `assert_existing_objects_matched`, which says nothing of what it restored
and passes when a checkpoint holds none of the requested variables, so a wrong
path trains from scratch without a word. Here the variables the requested
modules expect are listed by their checkpoint keys (the paths
`tf.train.Checkpoint` writes), matched to the checkpoint's own list, and
assigned one by one; the match is reported (log and `init_restore.json` in the
model dir): restored, left at their initialisation, unused in the checkpoint,
mismatched in shape, skipped on purpose. Nothing restored, or a shape
mismatch, is an error that names the checkpoint and the variables.

A skip pattern (a regular expression on the keys) keeps some of the requested
variables at their initialisation, e.g. the late stages of a backbone, to see
which of its layers carry what pre-training gave: Model Garden's restore takes
whole modules only.

A checkpoint written by another code base (TF1 EfficientNet, SimCLR) uses
other names; a converter maps its keys to ours (`CONVERTERS`).
"""

import collections
import dataclasses
import hashlib
import json
import os
import re
from typing import Callable
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple

from absl import logging
import tensorflow as tf

from official_selftrain.tasks import checkpoint_converters

REPORT_FILE = 'init_restore.json'
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
# Keys a training checkpoint holds besides the model's weights.
_BOOKKEEPING = ('_CHECKPOINTABLE_OBJECT_GRAPH', 'save_counter', 'global_step')


class InitCheckpointError(ValueError):
  """An init checkpoint is missing, restores nothing, or does not fit."""


# Checkpoint names -> {checkpoint name: our key}; see `checkpoint_converters`.
Converter = Callable[[Sequence[str]], Dict[str, str]]
CONVERTERS = checkpoint_converters.CONVERTERS


def _escape(name: str) -> str:
  # As tf.train.Checkpoint escapes an object's local name in its keys.
  return name.replace('.', '..').replace('/', '.S')


def expected_variables(items: Mapping[str, object]) -> Dict[str, tf.Variable]:
  """{checkpoint key: variable} of `tf.train.Checkpoint(**items)`.

  Walks the object graph breadth first, as the checkpoint writer does, so a
  variable reachable along several paths gets the key of the first.
  """
  root = tf.train.Checkpoint(**items)
  view = tf.train.TrackableView(root)
  paths = {id(root): ''}
  queue = collections.deque([root])
  found = {}
  while queue:
    node = queue.popleft()
    for name, child in view.children(node).items():
      if id(child) in paths:
        continue
      path = f'{paths[id(node)]}{_escape(name)}'
      paths[id(child)] = path + '/'
      if isinstance(child, tf.Variable):
        found[path + _VALUE_SUFFIX] = child
      else:
        queue.append(child)
  return found


@dataclasses.dataclass
class RestoreReport:
  """What an init checkpoint gave the model (keys without the value suffix)."""

  checkpoint: str
  modules: str
  # Which checkpoint, beyond its path: a pre-training rerun rewrites the same
  # path with other weights (`checkpoint_fingerprint`).
  fingerprint: str
  restored: List[str]
  left_at_init: List[str]
  unused_in_checkpoint: List[str]
  shape_mismatches: List[Tuple[str, List[int], List[int]]]
  # Kept at their initialisation by the skip pattern (`init_checkpoint_skip`).
  skipped: List[str] = dataclasses.field(default_factory=list)
  skip_pattern: str = ''

  def counts(self) -> Dict[str, int]:
    return {
      'restored': len(self.restored),
      'left_at_init': len(self.left_at_init),
      'unused_in_checkpoint': len(self.unused_in_checkpoint),
      'shape_mismatches': len(self.shape_mismatches),
      'skipped': len(self.skipped),
    }

  def summary(self) -> str:
    counts = ', '.join(f'{k} {v}' for k, v in self.counts().items())
    return f'Init checkpoint {self.checkpoint} ({self.modules}): {counts}.'

  def write(self, model_dir: str) -> str:
    path = os.path.join(model_dir, REPORT_FILE)
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(path, 'w') as f:
      json.dump(
        dict(dataclasses.asdict(self), counts=self.counts()), f, indent=1
      )
    return path


def checkpoint_fingerprint(prefix: str) -> str:
  """The first 16 hex digits of the SHA-256 of a checkpoint's index file,
  which holds every tensor's shape, offset and CRC32: checkpoints of other
  weights differ in it (barring CRC32 collisions)."""
  with tf.io.gfile.GFile(prefix + '.index', 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def resolve_checkpoint(path: str, hint: str = '') -> str:
  """A checkpoint file prefix from a file prefix or a directory.

  Raises:
    InitCheckpointError: nothing there; `hint` says how to make it.
  """
  prefix = path
  if tf.io.gfile.isdir(path):
    prefix = tf.train.latest_checkpoint(path)
    indexes = tf.io.gfile.glob(os.path.join(path, '*.index'))
    if not prefix and len(indexes) == 1:  # written without a state file
      prefix = indexes[0][: -len('.index')]
  if not prefix or not tf.io.gfile.glob(prefix + '.index'):
    how = f'\n{hint}' if hint else ''
    raise InitCheckpointError(
      f'Init checkpoint {path!r} not found (no checkpoint file or directory '
      f'with one).{how}'
    )
  return prefix


def _strip(key: str) -> str:
  return key[: -len(_VALUE_SUFFIX)] if key.endswith(_VALUE_SUFFIX) else key


def _listing(keys, limit: int = 12) -> str:
  keys = list(keys)
  shown = '\n  '.join(keys[:limit])
  more = f'\n  ... and {len(keys) - limit} more' if len(keys) > limit else ''
  return f'\n  {shown}{more}'


def skip_variables(
  expected: Mapping[str, tf.Variable], pattern: str, checkpoint: str
) -> Tuple[Dict[str, tf.Variable], Set[str]]:
  """(`expected` without the keys `pattern` finds, those keys).

  Raises:
    InitCheckpointError: a pattern that is no regular expression, or finds
      none of the variables (a typo would otherwise restore everything).
  """
  if not pattern:
    return dict(expected), set()
  try:
    compiled = re.compile(pattern)
  except re.error as e:
    raise InitCheckpointError(
      f'init_checkpoint_skip={pattern!r} (init checkpoint {checkpoint!r}) is '
      f'not a regular expression: {e}'
    ) from e
  skipped = {k for k in expected if compiled.search(_strip(k))}
  if not skipped:
    raise InitCheckpointError(
      f'init_checkpoint_skip={pattern!r} (init checkpoint {checkpoint!r}) '
      'finds none of the variables to restore, which are e.g.:'
      f'{_listing(_strip(k) for k in expected)}'
    )
  kept = {k: v for k, v in expected.items() if k not in skipped}
  return kept, skipped


def match(
  expected: Mapping[str, tf.Variable],
  prefix: str,
  modules: str,
  converter: Converter = checkpoint_converters.same_names,
  skip: str = '',
) -> Tuple[RestoreReport, Dict[str, str]]:
  """Matches the checkpoint's variables to `expected`, less those whose key
  the regular expression `skip` finds (kept at their initialisation).

  Returns:
    (report, {our key: checkpoint key} of the variables to restore).
  """
  expected, skipped = skip_variables(expected, skip, prefix)
  stored = {}
  unused = []
  listed = [
    (key, shape)
    for key, shape in tf.train.list_variables(prefix)
    if key not in _BOOKKEEPING and _strip(key) not in _BOOKKEEPING
  ]
  mapping = converter([key for key, _ in listed])
  for key, shape in listed:
    ours = mapping.get(key)
    if ours in skipped:
      continue
    if ours is None or ours not in expected:
      if '.OPTIMIZER_SLOT' not in key and not key.startswith('optimizer/'):
        unused.append(_strip(key))
      continue
    stored[ours] = (key, list(shape))
  sources, mismatches, left = {}, [], []
  for key, variable in expected.items():
    if key not in stored:
      left.append(_strip(key))
      continue
    source, shape = stored[key]
    if list(variable.shape) != shape:
      mismatches.append((_strip(key), list(variable.shape), shape))
    else:
      sources[key] = source
  report = RestoreReport(
    checkpoint=prefix,
    modules=modules,
    fingerprint=checkpoint_fingerprint(prefix),
    restored=sorted(_strip(k) for k in sources),
    left_at_init=sorted(left),
    unused_in_checkpoint=sorted(unused),
    shape_mismatches=mismatches,
    skipped=sorted(_strip(k) for k in skipped),
    skip_pattern=skip,
  )
  return report, sources


def _check(report: RestoreReport, expected) -> None:
  if report.shape_mismatches:
    rows = [
      f'{k}: model {m}, checkpoint {c}' for k, m, c in report.shape_mismatches
    ]
    raise InitCheckpointError(
      f'{report.summary()}\nShapes differ (the checkpoint is of another '
      f'model or width):{_listing(rows)}'
    )
  if not report.restored:
    raise InitCheckpointError(
      f'{report.summary()}\nThe checkpoint holds none of the '
      f'{len(expected)} variables the model expects under {report.modules!r}, '
      f'e.g.:{_listing(_strip(k) for k in expected)}\nIt holds:'
      f'{_listing(report.unused_in_checkpoint)}\nIs it a checkpoint of this '
      'model, or does it need a converter (init_checkpoint_converter)?'
    )


def restore(
  items: Mapping[str, object],
  checkpoint: str,
  modules: str,
  converter: str = '',
  model_dir: Optional[str] = None,
  hint: str = '',
  skip: str = '',
) -> RestoreReport:
  """Restores `items` (e.g. {'backbone': model.backbone}) from `checkpoint`.

  Args:
    items: the modules to initialise, named as in the checkpoint.
    checkpoint: a checkpoint file prefix or a directory holding one.
    modules: how the modules were asked for (for the report).
    converter: name in `CONVERTERS` of the key mapping ('' = same keys).
    model_dir: where the JSON report goes (None: log only).
    hint: how to make a checkpoint that is missing (in the error).
    skip: a regular expression; the variables whose keys it finds keep their
      initialisation ('' = none).

  Returns:
    The report.

  Raises:
    InitCheckpointError: missing checkpoint, nothing restored, a shape
      mismatch, or a skip pattern that finds nothing; the model is left
      untouched.
  """
  if converter not in CONVERTERS:
    raise InitCheckpointError(
      f'Init checkpoint {checkpoint!r} needs the variable-name converter '
      f'{converter!r}, which this version does not have (known: '
      f"{sorted(CONVERTERS)}). Give a checkpoint in Model Garden's layout "
      '(detection_experiment.init = <path>) instead.'
    )
  prefix = resolve_checkpoint(checkpoint, hint)
  expected = expected_variables(items)
  report, sources = match(
    expected, prefix, modules, CONVERTERS[converter], skip
  )
  if model_dir:
    report.write(model_dir)
  _check(report, expected)
  reader = tf.train.load_checkpoint(prefix)
  for key, source in sources.items():
    variable = expected[key]
    variable.assign(tf.cast(reader.get_tensor(source), variable.dtype))
  logging.info('%s', report.summary())
  if report.left_at_init:
    logging.warning(
      'Left at their initialisation (not in the checkpoint):%s',
      _listing(report.left_at_init),
    )
  if report.skipped:
    logging.info(
      'Kept at their initialisation (init_checkpoint_skip=%r):%s',
      skip,
      _listing(report.skipped),
    )
  return report


def module_items(model, modules: str) -> Dict[str, object]:
  """The model's checkpoint items named by `modules`.

  Args:
    model: a Model Garden model with `checkpoint_items`.
    modules: 'all', or a comma list of item names ('backbone',
      'backbone,decoder').

  Raises:
    InitCheckpointError: a module the model does not have.
  """
  items = dict(model.checkpoint_items)
  if modules == 'all':
    return items
  names = [m.strip() for m in modules.split(',') if m.strip()]
  unknown = [n for n in names if n not in items]
  if unknown or not names:
    raise InitCheckpointError(
      f'init_checkpoint_modules={modules!r}: the model has {sorted(items)} '
      "(or 'all')."
    )
  return {n: items[n] for n in names}


def initialize(model, task_config, model_dir: Optional[str]) -> None:
  """A task's `initialize`: restores `task_config.init_checkpoint`, if any.

  Args:
    model: the built model (its `checkpoint_items` name the modules).
    task_config: a task config with `init_checkpoint`,
      `init_checkpoint_modules` and, optionally, `init_checkpoint_converter`,
      `init_checkpoint_hint` and `init_checkpoint_skip`.
    model_dir: where the report goes.
  """
  if not task_config.init_checkpoint:
    return
  modules = task_config.init_checkpoint_modules
  restore(
    module_items(model, modules),
    task_config.init_checkpoint,
    modules,
    converter=getattr(task_config, 'init_checkpoint_converter', ''),
    model_dir=model_dir,
    hint=getattr(task_config, 'init_checkpoint_hint', ''),
    skip=getattr(task_config, 'init_checkpoint_skip', ''),
  )
