"""The names of a self-training pipeline's stages: its dirs and summary keys.

One place for the rule, read by the pipeline that writes the dirs, by the
SavedModel exporter that finds a stage's checkpoint and by the seed study
that adds up a run's steps.
"""

import re

# The first warm start stage of the teacher; stage k > 1 is
# `teacher_warm_start_k`.
WARM_START = 'teacher_warm_start'
# Every stage a pipeline's model_dir can hold; the last three are per round
# (`round<n>/<stage>`), the warm start stages may be more than one.
PIPELINE_STAGES = (
  WARM_START,
  'teacher',
  'student',
  'supervised_same_steps',
  'supervised_total_steps',
)
# The stage names a user may give, for messages and flag help.
CHOICES = f'{", ".join(PIPELINE_STAGES)} or {WARM_START}_<k>'


def warm_start_name(index: int) -> str:
  """The dir (and summary key) of the teacher's warm start stage `index`
  (0-based)."""
  return WARM_START if index == 0 else f'{WARM_START}_{index + 1}'


def is_warm_start(name: str) -> bool:
  """Whether `name` is a warm start stage's dir (`warm_start_name`'s
  image)."""
  match = re.fullmatch(rf'{WARM_START}(?:_(\d+))?', name)
  return bool(match) and (match.group(1) is None or int(match.group(1)) > 1)


def is_stage(name: str) -> bool:
  """Whether `name` names a pipeline stage (a warm start stage of any
  index included)."""
  return name in PIPELINE_STAGES or is_warm_start(name)
