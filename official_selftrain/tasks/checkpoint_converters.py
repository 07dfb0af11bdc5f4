"""Variable-name converters for published checkpoints of other code bases.

A converter takes a checkpoint's variable names and returns {checkpoint name:
our checkpoint key} for the ones it maps; `init_restore` restores through it
and reports the rest as unused.

`efficientnet_tf1`: the published EfficientNet checkpoints (ImageNet with
AutoAugment, and Noisy Student: PAPER.md's ImageNet and ImageNet++ Inits),
written by the TF1 `efficientnet_model.py` of tensorflow/tpu, into Model
Garden's EfficientNet backbone. Their names follow Keras' per-scope
numbering: in a block with an expansion, `conv2d` / `tpu_batch_normalization`
are the expansion, `depthwise_conv2d` / `..._1` the depthwise, `se/conv2d` /
`se/conv2d_1` squeeze-and-excitation, `conv2d_1` / `..._2` the projection;
without expansion (expand ratio 1) the projection is `conv2d` / `..._1`. Model
Garden's functional backbone holds stem conv and BN, one
`InvertedBottleneckBlock` per block, head conv and BN, in that order. Where a
checkpoint keeps exponential moving averages (`.../ExponentialMovingAverage`,
the values the published accuracies were measured with), those are taken.
"""

import re
from typing import Callable
from typing import Dict
from typing import Optional
from typing import Sequence
from typing import Set

VALUE = '/.ATTRIBUTES/VARIABLE_VALUE'
EMA = '/ExponentialMovingAverage'

# Model Garden's backbone: layers with weights 0, 1 are the stem's conv and
# batch norm; block i is layer 2 + i; then the head's conv and batch norm.
_FIRST_BLOCK = 2

_WITH_EXPANSION = {
  'conv2d': '_conv0',
  'batch_normalization': '_norm0',
  'depthwise_conv2d': '_conv1',
  'batch_normalization_1': '_norm1',
  'se/conv2d': '_squeeze_excitation/_se_reduce',
  'se/conv2d_1': '_squeeze_excitation/_se_expand',
  'conv2d_1': '_conv2',
  'batch_normalization_2': '_norm2',
}
_WITHOUT_EXPANSION = {
  'depthwise_conv2d': '_conv1',
  'batch_normalization': '_norm1',
  'se/conv2d': '_squeeze_excitation/_se_reduce',
  'se/conv2d_1': '_squeeze_excitation/_se_expand',
  'conv2d': '_conv2',
  'batch_normalization_1': '_norm2',
}
_BLOCK = re.compile(r'^[^/]+/blocks_(\d+)/(.+)/([^/]+)$')
_OUTER = re.compile(r'^[^/]+/(stem|head)/([^/]+)/([^/]+)$')


def _efficientnet_key(
  name: str, num_blocks: int, expanded: Set[int]
) -> Optional[str]:
  """Our backbone key of one TF1 EfficientNet variable (None: not ours)."""
  name = name.replace('tpu_batch_normalization', 'batch_normalization')
  block = _BLOCK.match(name)
  if block:
    index, layer, leaf = int(block.group(1)), block.group(2), block.group(3)
    table = _WITH_EXPANSION if index in expanded else _WITHOUT_EXPANSION
    if layer not in table:
      return None
    return f'layer_with_weights-{_FIRST_BLOCK + index}/{table[layer]}/{leaf}'
  outer = _OUTER.match(name)
  if not outer:
    return None
  part, layer, leaf = outer.groups()
  first = 0 if part == 'stem' else _FIRST_BLOCK + num_blocks
  offsets = {'conv2d': 0, 'batch_normalization': 1}
  if layer not in offsets:  # the head's classifier ('dense')
    return None
  return f'layer_with_weights-{first + offsets[layer]}/{leaf}'


def efficientnet_tf1(names: Sequence[str]) -> Dict[str, str]:
  """{TF1 EfficientNet name: our `backbone/...` key}; see the module doc."""
  averaged = {n[: -len(EMA)] for n in names if n.endswith(EMA)}
  blocks = {int(m.group(1)) for m in map(_BLOCK.match, names) if m}
  expanded = {
    i for i in blocks if any(f'/blocks_{i}/conv2d_1/' in n for n in names)
  }
  mapping = {}
  for name in names:
    base = name[: -len(EMA)] if name.endswith(EMA) else name
    if base in averaged and not name.endswith(EMA):
      continue  # its moving average is restored instead
    ours = _efficientnet_key(base, len(blocks), expanded)
    if ours is not None:
      mapping[name] = f'backbone/{ours}{VALUE}'
  return mapping


def same_names(names: Sequence[str]) -> Dict[str, str]:
  """A checkpoint in Model Garden's own layout."""
  return {n: n for n in names}


CONVERTERS: Dict[str, Callable[[Sequence[str]], Dict[str, str]]] = {
  '': same_names,
  'efficientnet_tf1': efficientnet_tf1,
}
