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

`simclr_tf2`: the SimCLR ResNet-50 checkpoints of google-research/simclr's
TF2 code (PAPER.md Table 4's SimCLR Init) into Model Garden's ResNet-50 (a
config that names it binds `retinanet_model.backbone = 'resnet'` and
`backbone_params = {'model_id': 50}`). Their object graph: under
`resnet_model`, the stem list `initial_conv_relu_max_pool` (0: conv, 2: batch
norm), then `block_groups/<g>/layers/<b>`, each bottleneck block with
`projection_layers` (0: conv, 1: batch norm; first block of a group) and
`conv_relu_dropblock_layers` (0, 3, 6: the 1x1, 3x3, 1x1 convs; 1, 4, 7: their
batch norms; 2, 5, 8: DropBlock). The projection and supervised heads are not
backbone weights.
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


_SIMCLR_STEM = {'0/conv2d': 0, '2/bn': 1}
_SIMCLR_BLOCK = {
  'projection_layers/0/conv2d': '_shortcut',
  'projection_layers/1/bn': '_norm0',
  'conv_relu_dropblock_layers/0/conv2d': '_conv1',
  'conv_relu_dropblock_layers/1/bn': '_norm1',
  'conv_relu_dropblock_layers/3/conv2d': '_conv2',
  'conv_relu_dropblock_layers/4/bn': '_norm2',
  'conv_relu_dropblock_layers/6/conv2d': '_conv3',
  'conv_relu_dropblock_layers/7/bn': '_norm3',
}
_SIMCLR = re.compile(
  r'(?:^|/)resnet_model/(?:initial_conv_relu_max_pool/(?P<stem>\d+/\w+)|'
  r'block_groups/(?P<group>\d+)/layers/(?P<block>\d+)/(?P<layer>.+))'
  r'/(?P<leaf>[^/]+)' + re.escape(VALUE) + '$'
)


def simclr_tf2(names: Sequence[str]) -> Dict[str, str]:
  """{SimCLR TF2 key: our `backbone/...` key}; see the module doc."""
  matches = {n: _SIMCLR.search(n) for n in names}
  blocks = {}
  for m in filter(None, matches.values()):
    if m.group('group') is not None:
      group, block = int(m.group('group')), int(m.group('block'))
      blocks[group] = max(blocks.get(group, 0), block + 1)
  # Block b of group g is Model Garden's layer 2 + (blocks before g) + b.
  first = {}
  for group in sorted(blocks):
    first[group] = _FIRST_BLOCK + sum(blocks[g] for g in blocks if g < group)
  mapping = {}
  for name, m in matches.items():
    if m is None:
      continue
    if m.group('stem') is not None:
      if m.group('stem') not in _SIMCLR_STEM:
        continue
      layer = f'layer_with_weights-{_SIMCLR_STEM[m.group("stem")]}'
    else:
      if m.group('layer') not in _SIMCLR_BLOCK:
        continue
      index = first[int(m.group('group'))] + int(m.group('block'))
      layer = f'layer_with_weights-{index}/{_SIMCLR_BLOCK[m.group("layer")]}'
    mapping[name] = f'backbone/{layer}/{m.group("leaf")}{VALUE}'
  return mapping


def same_names(names: Sequence[str]) -> Dict[str, str]:
  """A checkpoint in Model Garden's own layout."""
  return {n: n for n in names}


CONVERTERS: Dict[str, Callable[[Sequence[str]], Dict[str, str]]] = {
  '': same_names,
  'efficientnet_tf1': efficientnet_tf1,
  'simclr_tf2': simclr_tf2,
}
