"""A plain (non-editable) install ships the gin configs as package data."""

import os
import subprocess
import sys

from helpers import REPO


def test_installed_package_resolves_bundled_gin_files(tmp_path):
  target = tmp_path / 'installed'
  install = subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'install',
      '--no-deps',
      '--no-build-isolation',
      '--quiet',
      '--target',
      str(target),
      REPO,
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert install.returncode == 0, install.stderr[-3000:]
  probe = (
    'import official_selftrain, official_selftrain.config_files as c;'
    'print(official_selftrain.__file__);'
    "print(c.resolve('coco_s4.gin'));"
    "print(c.resolve('common/retinanet_coco.gin'))"
  )
  # Run from elsewhere, with only the installed copy on the path.
  result = subprocess.run(
    [
      sys.executable,
      '-c',
      f'import sys; sys.path[:0] = [{str(target)!r}]; {probe}',
    ],
    capture_output=True,
    text=True,
    cwd=str(tmp_path),
    timeout=60,
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.split()
  installed = os.path.join(str(target), 'official_selftrain')
  assert all(line.startswith(installed) for line in lines), lines
