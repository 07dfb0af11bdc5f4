"""Weighted box fusion: one set of boxes from a detector's several views.

A detection teacher that labels an image and its mirror (test-time
augmentation, an option beyond the paper: the paper labels detection at one
scale, segmentation at several) gets two sets of boxes for one image. Fusing
them by NMS would keep the higher score of each pair and every box seen in
one view only; weighted box fusion (Solovyev et al., "Weighted boxes fusion",
2019) instead clusters the boxes of one class that overlap, averages each
cluster's corners weighted by score, and scores it by the sum of its scores
over the number of views: a box both views agree on keeps its score, a box
one view alone saw is halved. That is what a pseudo label needs: agreement
between views is evidence, a single view's box is a guess.

Neither Model Garden nor TF ships weighted box fusion (Model Garden's NMS ops
keep or drop boxes, they never average them), hence this module. It runs on
the host, per image, on the few boxes left after each view's NMS.
"""

from typing import List
from typing import Sequence
from typing import Tuple

import numpy as np

from official_selftrain.pseudo_labels import quality

View = Tuple[
  np.ndarray, np.ndarray, np.ndarray
]  # boxes [n, 4], classes, scores


def _clusters(boxes, classes, scores, iou_threshold):
  """(indices per cluster, fused box per cluster): each box, highest score
  first, joins the cluster of its class whose fused box overlaps it most (IoU
  above the threshold), or starts one; a fused box is its members' corners
  averaged, weighted by score."""
  clusters: List[List[int]] = []
  fused = np.zeros((0, 4))
  fused_class = np.zeros((0,), classes.dtype)
  for i in np.argsort(-scores, kind='stable'):
    iou = quality.iou_matrix(boxes[i][None], fused)[0]
    overlap = np.where(fused_class == classes[i], iou, -1.0)
    best = int(np.argmax(overlap)) if len(overlap) else -1
    if best >= 0 and overlap[best] > iou_threshold:
      clusters[best].append(i)
      members = clusters[best]
      weights = scores[members][:, None]
      fused[best] = (boxes[members] * weights).sum(0) / weights.sum()
    else:
      clusters.append([i])
      fused = np.concatenate([fused, boxes[i][None]])
      fused_class = np.concatenate([fused_class, classes[i : i + 1]])
  return clusters, fused


def fuse(
  views: Sequence[View],
  iou_threshold: float = 0.55,
  score_floor: float = 0.0,
  max_detections: int = 100,
) -> View:
  """The fused boxes, classes and scores of `views` (one image), highest
  score first; clusters scored below `score_floor` are dropped.

  A cluster's score is the sum of its scores over max(number of views,
  cluster size): the mean score when every view saw the box once.
  """
  boxes = np.concatenate([np.reshape(v[0], (-1, 4)) for v in views])
  classes = np.concatenate([np.reshape(v[1], (-1,)) for v in views])
  scores = np.concatenate([np.reshape(v[2], (-1,)) for v in views])
  boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
  out_boxes, out_classes, out_scores = [], [], []
  clusters, fused = _clusters(boxes, classes, scores, iou_threshold)
  for members, box in zip(clusters, fused):
    weights = scores[members]
    out_boxes.append(box)
    out_classes.append(classes[members[0]])
    out_scores.append(weights.sum() / max(len(views), len(members)))
  order = [
    i
    for i in np.argsort(-np.asarray(out_scores), kind='stable')
    if out_scores[i] >= score_floor
  ][:max_detections]
  return (
    np.asarray([out_boxes[i] for i in order], np.float32).reshape(-1, 4),
    np.asarray([out_classes[i] for i in order], classes.dtype),
    np.asarray([out_scores[i] for i in order], np.float32),
  )


def mirror(boxes: np.ndarray) -> np.ndarray:
  """Boxes normalised to [0, 1] of a left-right flipped image, in the
  image's own coordinates (and back)."""
  boxes = np.asarray(boxes)
  return np.stack(
    [boxes[..., 0], 1.0 - boxes[..., 3], boxes[..., 2], 1.0 - boxes[..., 1]],
    axis=-1,
  )
