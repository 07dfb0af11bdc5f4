"""Single- vs multi-scale segmentation labelling: speed and label quality.

The paper's PASCAL teacher labels at six scales (PAPER.md); this measures what
that costs and buys on one pool, through the exporter end to end: images/s of
each labeller in alternating passes (`timing.alternating_pairs`) and each
one's label quality from its manifest (`pseudo_labels.manifest`). Run it with
`tools/benchmark.py --what=seg_labeller`.
"""

import os
import shutil
import statistics
import tempfile

from official_selftrain import timing
from official_selftrain.pseudo_labels import export
from official_selftrain.pseudo_labels import segmentation_teacher

_QUALITY_KEYS = (
  'pixel_accuracy',
  'pixel_miou',
  'pixel_iou',
  'foreground_labelled_fraction',
  'ignored_pixel_fraction',
  'pixels_compared',
)


def _labellers(teacher_dir, threshold, **multi_scale):
  """{'single_scale', 'multi_scale'}: restored segmentation teachers;
  `multi_scale`: the second one's `scales`, `flip`, `sliding_window`."""
  return {
    'single_scale': segmentation_teacher.SegmentationTeacher(
      teacher_dir, scales=(1.0,), threshold=threshold
    ),
    'multi_scale': segmentation_teacher.SegmentationTeacher(
      teacher_dir, threshold=threshold, **multi_scale
    ),
  }


def _report(wall, cpu, manifests, multi_scale, threshold):
  images = manifests['single_scale']['images_written']
  return {
    'what': 'seg_labeller',
    'num_images': images,
    'pixel_threshold': threshold,
    'multi_scale': {k: manifests['multi_scale'][k] for k in multi_scale},
    'images_per_second': {
      'single_scale': images / statistics.median(wall['model_garden']),
      'multi_scale': images / statistics.median(wall['ours']),
    },
    # Speed of multi-scale over single-scale, per pair (wall and CPU).
    'multi_over_single_speed': statistics.median(timing.ratios(wall)),
    'cpu_multi_over_single_speed': statistics.median(timing.ratios(cpu)),
    'quality': {
      name: {k: manifest[k] for k in _QUALITY_KEYS}
      for name, manifest in manifests.items()
    },
    'cpu_count': os.cpu_count(),
  }


def benchmark_seg_labeller(
  teacher_dir,
  pool,
  batch_size,
  repeats,
  flip,
  threshold=0.5,
  scales=segmentation_teacher.PAPER_SCALES,
  sliding_window=False,
):
  """Exporter images/s and pseudo-label quality, single- vs multi-scale
  (`scales`, `flip`, `sliding_window`; the paper's six scales by default)."""
  work = tempfile.mkdtemp(prefix='benchmark_seg_labeller_')
  multi_scale = dict(
    scales=tuple(scales), flip=flip, sliding_window=sliding_window
  )
  try:
    labellers = _labellers(teacher_dir, threshold, **multi_scale)
    manifests = {}

    def run(name):
      out_dir = os.path.join(work, name)
      shutil.rmtree(out_dir, ignore_errors=True)
      manifests[name] = export.export_pseudo_labels(
        teacher_dir=teacher_dir,
        pool=pool,
        output_dir=out_dir,
        num_shards=1,
        batch_size=batch_size,
        teacher=labellers[name],
      )

    for name in labellers:
      run(name)  # warm-up: traces each scale's model, fills file caches
    # Alternating passes; the `ours` slot is the multi-scale labeller.
    wall, cpu = timing.alternating_pairs(
      run, 'multi_scale', 'single_scale', repeats
    )
    report = _report(wall, cpu, manifests, multi_scale, threshold)
    report.update(
      teacher_dir=teacher_dir, batch_size=batch_size, repeats=repeats
    )
    return report
  finally:
    shutil.rmtree(work, ignore_errors=True)
