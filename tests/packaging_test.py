"""A built wheel holds every module of the package, its gin configs and tools.

The wheel is built from the checkout and installed into a folder; a fresh
process with only that folder on its path (not the source tree) imports every
module and resolves the bundled gin files.
"""

import os
import subprocess
import sys
import zipfile

from helpers import REPO
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Every module of official_selftrain/tools is a tool, to be installed.
TOOLS = sorted(
  name[:-3]
  for name in os.listdir(os.path.join(REPO, 'official_selftrain', 'tools'))
  if name.endswith('.py') and name != '__init__.py'
)


def _source_modules():
  names = []
  top = os.path.join(REPO, 'official_selftrain')
  for root, dirs, files in os.walk(top):
    dirs[:] = [d for d in dirs if d != '__pycache__']
    for name in files:
      if name.endswith('.py'):
        rel = os.path.relpath(os.path.join(root, name), REPO)[:-3]
        names.append(rel.replace(os.sep, '.').removesuffix('.__init__'))
  return sorted(names)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp('wheel')
  built = subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'wheel',
      '--no-deps',
      '--no-build-isolation',
      '--quiet',
      '--wheel-dir',
      str(out),
      REPO,
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert built.returncode == 0, built.stderr[-3000:]
  (path,) = [p for p in out.iterdir() if p.suffix == '.whl']
  return path


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
  target = tmp_path_factory.mktemp('installed')
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'install',
      '--no-deps',
      '--quiet',
      '--target',
      str(target),
      str(wheel),
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return target


def _run_installed(target, code, cwd):
  """Runs `code` with only the installed copy of the package importable."""
  return subprocess.run(
    [
      sys.executable,
      '-c',
      f'import sys; sys.path[:0] = [{str(target)!r}]\n{code}',
    ],
    capture_output=True,
    text=True,
    cwd=str(cwd),
    timeout=300,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
  )


def test_wheel_holds_every_module(wheel):
  with zipfile.ZipFile(wheel) as archive:
    files = set(archive.namelist())
  missing = [
    m
    for m in _source_modules()
    if m.replace('.', '/') + '.py' not in files
    and m.replace('.', '/') + '/__init__.py' not in files
  ]
  assert not missing, missing


def test_wheel_declares_every_tool_as_a_console_script(wheel):
  assert len(TOOLS) >= 5, TOOLS
  with zipfile.ZipFile(wheel) as archive:
    (name,) = [n for n in archive.namelist() if n.endswith('entry_points.txt')]
    entry_points = archive.read(name).decode()
    files = set(archive.namelist())
  assert 'official_selftrain_train = official_selftrain.train:entry' in (
    entry_points
  )
  for tool in TOOLS:
    assert (
      f'official_selftrain_{tool} = official_selftrain.tools.{tool}:entry'
      in entry_points
    )
    assert f'official_selftrain/tools/{tool}.py' in files


def test_every_library_module_imports_from_the_installed_wheel(
  installed, tmp_path
):
  """All but the tools in one process (each tool defines its own flags, so
  two tools do not share a process; they are run below); the bundled gin
  files and the released demo teacher resolve inside the installed copy."""
  modules = [
    m
    for m in _source_modules()
    if not m.startswith('official_selftrain.tools.')
  ]
  code = (
    'import importlib, os\n'
    f'for name in {modules!r}:\n'
    '  module = importlib.import_module(name)\n'
    f'  assert module.__file__.startswith({str(installed)!r}), module.__file__\n'
    'import official_selftrain.config_files as c\n'
    "print(c.resolve('coco_s4.gin'))\n"
    "print(c.resolve('common/retinanet_coco.gin'))\n"
    'import official_selftrain.released_teachers as r\n'
    "release = r.resolve('released/shapes_demo_teacher')\n"
    'r.read(release)\n'
    'print(release)\n'
  )
  result = _run_installed(installed, code, tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.split()
  assert lines and all(line.startswith(str(installed)) for line in lines), lines


@pytest.mark.parametrize('tool', TOOLS)
def test_installed_tool_entry_runs(tool, installed, tmp_path):
  """The console script's target, `official_selftrain.tools.NAME:entry`,
  from the wheel: it parses its flags and prints its help (absl exits 1
  after --helpfull)."""
  code = (
    'import importlib\n'
    f"tool = importlib.import_module('official_selftrain.tools.{tool}')\n"
    "print('FILE', tool.__file__, flush=True)\n"
    f"sys.argv = ['{tool}', '--helpfull']\n"
    'tool.entry()\n'
  )
  result = _run_installed(installed, code, tmp_path)
  expected = os.path.join(str(installed), 'official_selftrain', 'tools', tool)
  assert f'FILE {expected}.py' in result.stdout, result.stderr[-2000:]
  assert f'USAGE: {tool} [flags]' in result.stdout, result.stdout[-2000:]
