"""Gin files by bundled name or path; includes found without false errors."""

import logging
import os

import pytest

from official_selftrain import config_files
from official_selftrain.configs import experiment as experiment_lib

pytestmark = pytest.mark.usefixtures('clear_gin')


def test_bundled_name_resolves_with_or_without_extension():
  assert config_files.resolve('coco_s4') == config_files.resolve('coco_s4.gin')


def test_bundled_include_logs_no_error(caplog):
  """gin tries the working directory first; that miss is no error."""
  with caplog.at_level(logging.INFO):
    config_files.parse(['shapes_s1.gin'], [])
  assert not [r for r in caplog.records if 'Path not found' in r.getMessage()]
  assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_include_found_nowhere_is_still_an_error(tmp_path):
  bad = tmp_path / 'bad.gin'
  bad.write_text("include 'common/no_such_file.gin'\n")
  with pytest.raises(config_files.GinConfigError, match='no_such_file.gin'):
    config_files.parse([str(bad)], [])


def test_wrong_binding_is_named():
  with pytest.raises(config_files.GinConfigError, match='retinanet_model.fpn'):
    config_files.parse(['shapes_s1.gin'], ['retinanet_model.fpn_filterz = 8'])


def _shipped_gin_files():
  directory = config_files.bundled_dirs()[0]  # the package's own first
  return sorted(n for n in os.listdir(directory) if n.endswith('.gin'))


@pytest.mark.parametrize('name', _shipped_gin_files())
def test_every_shipped_gin_file_builds_its_job(name):
  config_files.parse([name], [])
  job = experiment_lib.build()
  # A pipeline's teacher or the experiment itself: a Model Garden config.
  experiment = getattr(job, 'teacher', job)
  assert experiment.config.task.model.num_classes > 1
