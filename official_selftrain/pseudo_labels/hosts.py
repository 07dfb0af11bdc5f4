"""Which shards of a pseudo-label export each host of a cluster labels.

A cluster of H hosts splits an export of N shards: host h labels shards
h, h + H, h + 2H, ... The hosts are numbered from `--num_hosts/--host_index`
(or one explicit `--shard_index`), or from `TF_CONFIG`, the variable every
worker of a MultiWorkerMirroredStrategy cluster is started with: the chief
(if any) first, then the workers in order, so the chief and worker 0 are two
hosts, not one. Evaluator and parameter-server tasks label nothing.
"""

import dataclasses
import json
import os
from typing import List
from typing import Optional

# The task types of TF_CONFIG that label, in numbering order.
_LABELLING_TASKS = ('chief', 'worker')


@dataclasses.dataclass(frozen=True)
class Host:
  """Host `index` of `count`."""

  index: int = 0
  count: int = 1

  def __post_init__(self):
    if self.count < 1 or not 0 <= self.index < self.count:
      raise ValueError(
        f'host index {self.index} is not in [0, {self.count}) hosts.'
      )

  def shards(self, num_shards: int) -> List[int]:
    """The shards of `num_shards` this host labels."""
    return list(range(self.index, num_shards, self.count))

  def describe(self) -> str:
    return f'host {self.index} of {self.count}'


def from_tf_config(tf_config: Optional[str] = None) -> Optional[Host]:
  """This host by `TF_CONFIG` (default: the environment's); None without one
  or with a cluster of one task.

  Raises:
    ValueError: TF_CONFIG is not JSON, or names a task that does not label
      (evaluator, ps) or is not in its cluster.
  """
  if tf_config is None:
    tf_config = os.environ.get('TF_CONFIG', '')
  if not tf_config.strip():
    return None
  try:
    config = json.loads(tf_config)
  except json.JSONDecodeError as e:
    raise ValueError(f'TF_CONFIG is not JSON ({e}): {tf_config[:200]!r}') from e
  cluster = config.get('cluster') or {}
  task = config.get('task') or {}
  order = [
    (kind, i)
    for kind in _LABELLING_TASKS
    for i in range(len(cluster.get(kind) or []))
  ]
  if len(order) <= 1 and not task:
    return None
  me = (task.get('type'), int(task.get('index', 0)))
  if me[0] not in _LABELLING_TASKS:
    raise ValueError(
      f'TF_CONFIG task {me[0]!r} labels no shard: run the export on the '
      f'{" and ".join(_LABELLING_TASKS)} tasks.'
    )
  if me not in order:
    raise ValueError(
      f'TF_CONFIG task {me[0]}:{me[1]} is not in its cluster {cluster}.'
    )
  if len(order) == 1:
    return None
  return Host(order.index(me), len(order))


def default_num_shards(host: Optional[Host], at_least: int = 8) -> int:
  """`at_least` shards rounded up to a multiple of the hosts, so each host
  labels as many."""
  count = host.count if host else 1
  return -(-at_least // count) * count
