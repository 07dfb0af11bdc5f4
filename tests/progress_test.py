"""One progress line for training, export and data generation."""

import re

from official_selftrain import progress


def _progress(**kwargs):
  lines = []
  line_of = lambda fmt, *args: lines.append(fmt % args)  # noqa: E731
  return progress.Progress(log_fn=line_of, **kwargs), lines


def test_first_update_has_no_rate_and_no_eta():
  """Its time includes start-up (tracing), so it gives no rate."""
  status, lines = _progress(name='teacher', unit='steps', total=100)
  status.update(10)
  assert lines == ['teacher: 10/100 steps (10%)']


def test_rate_and_eta_from_the_first_update_on(monkeypatch):
  clock = iter([100.0, 102.0])
  monkeypatch.setattr(progress.time, 'time', lambda: next(clock))
  status, lines = _progress(
    name='teacher', unit='steps', total=100, per_unit={'images': 32}
  )
  status.update(10)
  status.update(30, details='loss 1.0')  # 20 steps in 2 s
  assert lines[-1] == (
    'teacher: 30/100 steps (30%) | 10.00 steps/s | 320.0 images/s | '
    'loss 1.0 | ETA 0m07s'
  )


def test_unknown_total_gives_count_and_rate_without_eta(monkeypatch):
  clock = iter([0.0, 4.0])
  monkeypatch.setattr(progress.time, 'time', lambda: next(clock))
  status, lines = _progress(name='pseudo labels', unit='images')
  status.add(8)
  status.add(40)
  assert lines[-1] == 'pseudo labels: 48 images | 10.00 images/s'


def test_logs_at_most_every_period_unless_forced(monkeypatch):
  clock = iter([0.0, 1.0, 2.0, 3.0])
  monkeypatch.setattr(progress.time, 'time', lambda: next(clock))
  status, lines = _progress(name='data', unit='images', every_seconds=10)
  status.update(1)
  status.update(2)
  status.update(3)
  status.update(4, force=True)
  assert len(lines) == 2 and lines[-1].startswith('data: 4 images')


def test_duration_format():
  assert progress.duration(59) == '0m59s'
  assert progress.duration(3723) == '1h02m03s'
  assert re.fullmatch(r'\dm\d\ds', progress.duration(-5))
