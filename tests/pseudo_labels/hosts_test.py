"""Hosts of a cluster: numbered from TF_CONFIG without collision."""

import json
import os

import pytest

from official_selftrain import pipeline
from official_selftrain.pseudo_labels import hosts

CLUSTER = {
  'chief': ['h:1'],
  'worker': ['h:2', 'h:3'],
  'evaluator': ['h:4'],
}


def _config(kind, index, cluster=CLUSTER):
  return json.dumps(
    {'cluster': cluster, 'task': {'type': kind, 'index': index}}
  )


def test_chief_and_workers_are_distinct_hosts():
  found = [
    hosts.from_tf_config(_config(kind, i))
    for kind, i in (('chief', 0), ('worker', 0), ('worker', 1))
  ]
  assert found == [hosts.Host(0, 3), hosts.Host(1, 3), hosts.Host(2, 3)]
  shards = [h.shards(8) for h in found]
  assert shards == [[0, 3, 6], [1, 4, 7], [2, 5]]


def test_workers_without_chief_are_numbered_from_zero():
  cluster = {'worker': ['h:1', 'h:2']}
  assert hosts.from_tf_config(_config('worker', 1, cluster)) == hosts.Host(1, 2)


@pytest.mark.parametrize(
  'tf_config', ['', _config('worker', 0, {'worker': ['h']})]
)
def test_no_cluster_is_a_single_host(tf_config):
  assert hosts.from_tf_config(tf_config) is None


@pytest.mark.parametrize(
  'tf_config, message',
  [
    (_config('evaluator', 0), "'evaluator' labels no shard"),
    (_config('worker', 5), 'worker:5 is not in its cluster'),
    ('{"cluster": ', 'TF_CONFIG is not JSON'),
  ],
)
def test_bad_tf_config_is_named(tf_config, message):
  with pytest.raises(ValueError, match=message):
    hosts.from_tf_config(tf_config)


def test_host_index_out_of_range_is_an_error():
  with pytest.raises(ValueError, match=r'host index 3 is not in \[0, 3\)'):
    hosts.Host(3, 3)


def test_default_shards_are_a_multiple_of_the_hosts():
  assert hosts.default_num_shards(None) == 8
  assert hosts.default_num_shards(hosts.Host(0, 3)) == 9
  assert hosts.default_num_shards(hosts.Host(0, 16)) == 16


def test_pipeline_worker_labels_its_shards_and_waits(monkeypatch):
  monkeypatch.setenv('TF_CONFIG', _config('worker', 1))
  assert pipeline._host_shards({'num_shards': 6}, multi_worker=True) == {
    'shard_indices': [2, 5],
    'wait_for_all': True,
  }
  # TF_CONFIG set by a platform, the run not multi-worker: every shard here.
  assert pipeline._host_shards({'num_shards': 6}, multi_worker=False) == {}
  monkeypatch.delenv('TF_CONFIG')
  assert pipeline._host_shards({}, multi_worker=True) == {}


def _finish_shard(out, index, num_shards):
  from official_selftrain.pseudo_labels import manifest
  from official_selftrain.pseudo_labels import shard_files

  shard_files.atomic_write_bytes(
    shard_files.shard_path(out, index, num_shards), b''
  )
  manifest.write_shard_stats(
    out, index, num_shards, manifest.ShardStats(0.5, 3), {'pool': 'p'}
  )


def test_a_host_waits_for_the_others_shards(tmp_path):
  import threading

  from official_selftrain.pseudo_labels import export

  out = str(tmp_path)
  _finish_shard(out, 0, 3)
  with pytest.raises(TimeoutError, match=r'Shards \[1, 2\] .* not finished'):
    export._wait_for_shards(out, 3, timeout_seconds=0.2, poll=0.05)
  # The other hosts finish theirs while this one waits.
  others = threading.Timer(
    0.3, lambda: [_finish_shard(out, k, 3) for k in (1, 2)]
  )
  others.start()
  export._wait_for_shards(out, 3, timeout_seconds=30, poll=0.05)
  others.join()


def test_another_shard_count_in_the_output_dir_is_refused(tmp_path):
  from official_selftrain.pseudo_labels import export

  out = str(tmp_path)
  _finish_shard(out, 0, 8)
  with pytest.raises(
    ValueError, match=r'shards of \[8\] part\(s\).*--num_shards=8'
  ):
    export.export_pseudo_labels(
      teacher_dir=None, pool=None, output_dir=out, num_shards=9, merge_only=True
    )
  # --merge of a partial export writes it, marked incomplete.
  written = export.export_pseudo_labels(
    teacher_dir=None, pool=None, output_dir=out, num_shards=8, merge_only=True
  )
  assert written['finished_shards'] == [0] and not written['complete']
  assert os.path.exists(os.path.join(out, 'manifest.json'))
