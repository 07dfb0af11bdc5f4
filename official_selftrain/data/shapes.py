"""Shapes-Det and Shapes-Cls: the embedded stand-ins for COCO and ImageNet.

The paper's setting in miniature (DESIGN.md, "Embedded data"):

* **Shapes-Det** plays COCO: non-iconic scenes of several objects of
  `DET_CLASSES`, of varied size (down to a few pixels), colour, rotation and
  aspect, overlapping each other, on textured backgrounds with unlabelled
  clutter. Each object has a box, a visible-area instance mask, and the scene has
  a semantic map (0 = background).
* **Shapes-Cls** plays ImageNet: iconic images, one large object per image, drawn
  from `CLS_CLASSES`, a superset of the detection classes. Used with labels for
  backbone pre-training and with labels discarded as the unlabelled pool.

Every image is a pure function of `(seed, split, index)`, so generation is
deterministic, can be split over processes, and a partial run can be redone.
Images are drawn with numpy + PIL; no TF here, so generation is cheap to import.
"""

import dataclasses
import math
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw

# Class names; the label of class i is i + 1 (0 is background, as in COCO).
DET_CLASSES = ('circle', 'triangle', 'square', 'star', 'cross', 'ring')
# ImageNet is a superset of COCO's concepts; so is Shapes-Cls of Shapes-Det.
CLS_CLASSES = DET_CLASSES + (
  'pentagon',
  'hexagon',
  'diamond',
  'arrow',
  'crescent',
  'trapezoid',
)

_SPLIT_IDS = {'train': 1, 'val': 2, 'test': 3, 'unlabeled': 4}


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """How Shapes-Det scenes are drawn. The defaults keep a small detector busy."""

  image_size: int = 128
  min_objects: int = 2
  max_objects: int = 7
  # Object extent as a fraction of the image side; small objects are the hard
  # part of COCO and of these scenes too.
  min_object_size: float = 0.07
  max_object_size: float = 0.38
  # Objects covered by others below this visible fraction are dropped from the
  # labels (they are still drawn, as clutter would be).
  min_visible_fraction: float = 0.35
  min_visible_pixels: int = 12
  # Unlabelled distractor strokes and blobs per image.
  max_clutter: int = 6
  classes: Tuple[str, ...] = DET_CLASSES


@dataclasses.dataclass
class Scene:
  """One generated image and its ground truth.

  Attributes:
    image: uint8 [H, W, 3].
    boxes: float32 [N, 4] as (ymin, xmin, ymax, xmax) in pixels, from the
      visible mask (inclusive-exclusive).
    classes: int32 [N], 1-based labels into the spec's class tuple.
    masks: uint8 [N, H, W] visible instance masks (0/1).
    semantic: uint8 [H, W] class label per pixel, 0 for background.
  """

  image: np.ndarray
  boxes: np.ndarray
  classes: np.ndarray
  masks: np.ndarray
  semantic: np.ndarray


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def _regular_polygon(n: int, phase: float = 0.0) -> np.ndarray:
  angles = phase + 2 * math.pi * np.arange(n) / n
  return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
  angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
  radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
  return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


_A = 0.33  # half width of the cross's arms
# Outline polygons of each shape in [-1, 1]^2; later ones are holes.
# fmt: off
_POINTS = {
  'cross': [(-_A, -1), (_A, -1), (_A, -_A), (1, -_A), (1, _A), (_A, _A),
            (_A, 1), (-_A, 1), (-_A, _A), (-1, _A), (-1, -_A), (-_A, -_A)],
  'diamond': [(0, -1), (0.55, 0), (0, 1), (-0.55, 0)],
  'arrow': [(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6),
            (0.2, 0.25), (-1, 0.25)],
  'trapezoid': [(-1, 0.6), (1, 0.6), (0.5, -0.6), (-0.5, -0.6)],
}
_OUTLINES = {
  'circle': lambda: [_regular_polygon(40)],
  'triangle': lambda: [_regular_polygon(3, -math.pi / 2)],
  'square': lambda: [_regular_polygon(4, math.pi / 4) * math.sqrt(2) * 0.85],
  'star': lambda: [_star()],
  'cross': lambda: [np.array(_POINTS['cross'])],
  'ring': lambda: [_regular_polygon(40), _regular_polygon(40) * 0.55],
  'pentagon': lambda: [_regular_polygon(5, -math.pi / 2)],
  'hexagon': lambda: [_regular_polygon(6)],
  'diamond': lambda: [np.array(_POINTS['diamond'])],
  'arrow': lambda: [np.array(_POINTS['arrow'])],
  'crescent': lambda: [
    _regular_polygon(40), _regular_polygon(40) * 0.85 + (0.35, -0.1)
  ],
  'trapezoid': lambda: [np.array(_POINTS['trapezoid'])],
}
# fmt: on


def _unit_outlines(name: str) -> List[np.ndarray]:
  """Outline polygons of a shape in [-1, 1]^2; later ones are holes."""
  if name not in _OUTLINES:
    raise ValueError(f'Unknown shape {name!r}; known: {CLS_CLASSES}')
  return _OUTLINES[name]()


def _draw_shape_mask(
  name: str,
  size: int,
  center: Tuple[float, float],
  radius: Tuple[float, float],
  angle: float,
) -> np.ndarray:
  """Rasterises one rotated, stretched shape to a 0/1 uint8 mask."""
  rot = np.array(
    [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
  )
  canvas = Image.new('L', (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  for k, outline in enumerate(_unit_outlines(name)):
    pts = (outline * np.array(radius)) @ rot.T + np.array(center)
    draw.polygon([tuple(p) for p in pts], fill=0 if k else 1)
  return np.asarray(canvas, dtype=np.uint8)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  return rng.integers(0, 256, size=3).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """A textured background: gradient, stripes or checks, plus noise."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  c0, c1 = _random_colour(rng), _random_colour(rng)
  kind = rng.integers(0, 3)
  if kind == 0:  # linear gradient at a random angle
    theta = rng.uniform(0, 2 * math.pi)
    t = math.cos(theta) * xx + math.sin(theta) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  elif kind == 1:  # stripes
    theta = rng.uniform(0, math.pi)
    freq = rng.uniform(3, 12)
    t = 0.5 + 0.5 * np.sin(
      2 * math.pi * freq * (math.cos(theta) * xx + math.sin(theta) * yy)
    )
  else:  # checks
    n = rng.integers(3, 10)
    t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
  # Low-contrast backgrounds so that shapes stay visible but not trivially so.
  contrast = rng.uniform(0.2, 0.6)
  base = c0 + (c1 - c0) * contrast * t[..., None]
  noise = rng.normal(0, rng.uniform(4, 20), size=(size, size, 3))
  return base + noise


def _add_clutter(rng: np.random.Generator, image: np.ndarray, count: int):
  """Unlabelled strokes and blobs: they look like parts of objects, are not."""
  size = image.shape[0]
  canvas = Image.new('L', (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  for _ in range(count):
    canvas.paste(0, (0, 0, size, size))
    if rng.random() < 0.6:
      pts = [tuple(rng.uniform(0, size, 2)) for _ in range(rng.integers(2, 4))]
      draw.line(pts, fill=1, width=int(rng.integers(1, 4)))
    else:
      r = rng.uniform(1.5, 4.0)
      cx, cy = rng.uniform(0, size, 2)
      draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
    mask = np.asarray(canvas, dtype=bool)
    image[mask] = _random_colour(rng)


def _shade(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
  """Fill colour for an object: flat or with a gentle gradient."""
  size = mask.shape[0]
  colour = _random_colour(rng)
  if rng.random() < 0.5:
    return np.broadcast_to(colour, (size, size, 3))
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  return colour + (
    rng.uniform(-60, 60, size=3) * (xx if rng.random() < 0.5 else yy)[..., None]
  )


def _mask_box(mask: np.ndarray) -> Tuple[float, float, float, float]:
  ys = np.flatnonzero(mask.any(axis=1))
  xs = np.flatnonzero(mask.any(axis=0))
  return float(ys[0]), float(xs[0]), float(ys[-1] + 1), float(xs[-1] + 1)


def _compose(
  rng: np.random.Generator,
  size: int,
  objects: Sequence[Tuple[str, np.ndarray]],
  classes: Tuple[str, ...],
  clutter: int,
  min_visible_fraction: float,
  min_visible_pixels: int,
) -> Scene:
  """Paints objects back to front and derives visible masks and boxes."""
  image = _background(rng, size)
  _add_clutter(rng, image, clutter // 2)
  owner = np.full((size, size), -1, dtype=np.int32)
  for k, (_, mask) in enumerate(objects):
    on = mask.astype(bool)
    image[on] = _shade(rng, mask)[on]
    owner[on] = k
  _add_clutter(rng, image, clutter - clutter // 2)
  image = np.clip(image + rng.normal(0, 3, size=image.shape), 0, 255)

  boxes, labels, masks = [], [], []
  semantic = np.zeros((size, size), dtype=np.uint8)
  for k, (name, mask) in enumerate(objects):
    visible = owner == k
    full = int(mask.sum())
    seen = int(visible.sum())
    if seen < min_visible_pixels or seen < min_visible_fraction * full:
      continue
    boxes.append(_mask_box(visible))
    labels.append(classes.index(name) + 1)
    masks.append(visible.astype(np.uint8))
    semantic[visible] = classes.index(name) + 1
  return Scene(
    image=image.astype(np.uint8),
    boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
    classes=np.array(labels, dtype=np.int32),
    masks=np.array(masks, dtype=np.uint8).reshape(-1, size, size),
    semantic=semantic,
  )


def det_scene(
  seed: int, split: str, index: int, spec: SceneSpec = SceneSpec()
) -> Scene:
  """Draws Shapes-Det image `index` of `split`: several objects, clutter."""
  rng = _rng(seed, split, index)
  size = spec.image_size
  objects = []
  for _ in range(rng.integers(spec.min_objects, spec.max_objects + 1)):
    name = spec.classes[rng.integers(len(spec.classes))]
    # Log-uniform sizes: as many small objects as large ones.
    extent = size * math.exp(
      rng.uniform(
        math.log(spec.min_object_size), math.log(spec.max_object_size)
      )
    )
    aspect = math.exp(rng.uniform(-0.3, 0.3))
    radius = (extent / 2 * aspect, extent / 2 / aspect)
    center = tuple(rng.uniform(0.05 * size, 0.95 * size, 2))
    mask = _draw_shape_mask(
      name, size, center, radius, rng.uniform(0, 2 * math.pi)
    )
    if mask.sum() > 0:
      objects.append((name, mask))
  return _compose(
    rng,
    size,
    objects,
    spec.classes,
    int(rng.integers(0, spec.max_clutter + 1)),
    spec.min_visible_fraction,
    spec.min_visible_pixels,
  )


def cls_image(
  seed: int,
  split: str,
  index: int,
  image_size: int = 128,
  classes: Tuple[str, ...] = CLS_CLASSES,
) -> Scene:
  """Draws Shapes-Cls image `index`: one iconic object, as in ImageNet."""
  rng = _rng(seed, split, index)
  name = classes[rng.integers(len(classes))]
  extent = image_size * rng.uniform(0.4, 0.85)
  aspect = math.exp(rng.uniform(-0.2, 0.2))
  jitter = rng.uniform(-0.1, 0.1, 2) * image_size
  center = tuple(image_size / 2 + jitter)
  mask = _draw_shape_mask(
    name,
    image_size,
    center,
    (extent / 2 * aspect, extent / 2 / aspect),
    rng.uniform(0, 2 * math.pi),
  )
  return _compose(
    rng, image_size, [(name, mask)], classes, int(rng.integers(0, 3)), 0.0, 1
  )


def scene_label(scene: Scene) -> Optional[int]:
  """The image-level label of an iconic Shapes-Cls image."""
  return int(scene.classes[0]) if len(scene.classes) else None


def instance_id_map(masks, threshold: float = 0.5) -> np.ndarray:
  """[N, H, W] instance masks -> [H, W] uint8 label map, object k as k + 1,
  0 elsewhere (a later mask wins where masks overlap)."""
  masks = np.asarray(masks)
  ids = np.zeros(masks.shape[1:], np.uint8)
  for k, mask in enumerate(masks):
    ids[mask > threshold] = k + 1
  return ids
