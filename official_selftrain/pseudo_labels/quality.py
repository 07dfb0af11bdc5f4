"""Pseudo-label precision and recall against ground truth held aside.

A pseudo box is a true positive when it has the class of a not-yet-matched
ground-truth box with IoU >= 0.5 (greedy, highest IoU first); precision and
recall are over all images. Needs pools whose labels were kept aside (the Shapes
pools); for other pools the counts stay empty.
"""

import dataclasses
from typing import Any
from typing import Dict

import numpy as np

IOU_THRESHOLD = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of boxes (ymin, xmin, ymax, xmax): [len(a), len(b)]."""
  if len(a) == 0 or len(b) == 0:
    return np.zeros((len(a), len(b)))
  ymin = np.maximum(a[:, None, 0], b[None, :, 0])
  xmin = np.maximum(a[:, None, 1], b[None, :, 1])
  ymax = np.minimum(a[:, None, 2], b[None, :, 2])
  xmax = np.minimum(a[:, None, 3], b[None, :, 3])
  inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match(boxes, classes, gt_boxes, gt_classes, iou_threshold=IOU_THRESHOLD):
  """Returns the number of true positives (one-to-one, same class)."""
  iou = iou_matrix(np.asarray(boxes), np.asarray(gt_boxes))
  iou[np.asarray(classes)[:, None] != np.asarray(gt_classes)[None, :]] = 0
  matched = 0
  while iou.size and iou.max() >= iou_threshold:
    i, j = np.unravel_index(np.argmax(iou), iou.shape)
    matched += 1
    iou[i, :] = 0
    iou[:, j] = 0
  return matched


@dataclasses.dataclass
class QualityCounts:
  """True positives, predictions and ground-truth objects, summed."""

  true_positives: int = 0
  predictions: int = 0
  ground_truth: int = 0
  images: int = 0

  @property
  def has_ground_truth(self) -> bool:
    return self.ground_truth > 0

  def add(self, boxes, classes, gt_boxes, gt_classes) -> None:
    self.true_positives += match(boxes, classes, gt_boxes, gt_classes)
    self.predictions += len(classes)
    self.ground_truth += len(gt_classes)
    self.images += 1

  def merge(self, other: 'QualityCounts') -> None:
    for field in dataclasses.fields(self):
      setattr(
        self, field.name, getattr(self, field.name) + getattr(other, field.name)
      )

  def as_dict(self) -> Dict[str, int]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, int]) -> 'QualityCounts':
    return cls(**d)

  def summary(self) -> Dict[str, Any]:
    """Precision, recall and objects per image; None without ground truth."""
    if not self.has_ground_truth:
      return {'available': False}
    return {
      'available': True,
      'iou_threshold': IOU_THRESHOLD,
      'precision': self.true_positives / max(self.predictions, 1),
      'recall': self.true_positives / self.ground_truth,
      'pseudo_boxes_per_image': self.predictions / max(self.images, 1),
      'true_objects_per_image': self.ground_truth / max(self.images, 1),
      **self.as_dict(),
    }
