"""Converts torchvision / timm ResNet state dicts to ``resnet.ResNet``.

torchvision's ``resnet18``/``resnet50`` and timm's plain ``resnet18``/
``resnet50`` (every ``.a1_in1k``-style tag: same module names) are ResNet
"v1.5": the stride on the 3x3 conv, no conv bias, BatchNorm epsilon 1e-5, so
they load into ``ResNet(layout='torchvision')``. Their names map onto our
Caffe-style module names:

=============================  ================================
torch                          Flax (``ResNet``)
=============================  ================================
conv1 / bn1                    conv1 / bn_conv1
layer{L}.{i}.conv{1,2,3}       res{L+1}{a,b,..}_branch2{a,b,c}
layer{L}.{i}.bn{1,2,3}         bn{L+1}{a,b,..}_branch2{a,b,c}
layer{L}.{i}.downsample.0 / 1  res{L+1}{..}_branch1 / bn{L+1}{..}_branch1
fc                             fc
=============================  ================================

Variants with other stems or blocks (``resnet50d``, SE, ...) have keys this
table does not know and are refused by name.
"""

import re
from typing import Any, Dict, Mapping, Optional

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import resnet
from hashjax.models.pretrained import torch_io
from hashjax.models.pretrained import graft

_BRANCH2 = {'1': 'branch2a', '2': 'branch2b', '3': 'branch2c'}
_BN = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
       'running_mean': ('batch_stats', 'mean'),
       'running_var': ('batch_stats', 'var')}
_BLOCK = re.compile(r'layer(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)')
_DOWNSAMPLE = re.compile(r'layer(\d)\.(\d+)\.downsample\.([01])\.(\w+)')


def _block_target(stage, block, kind, branch, leaf):
  """(collection, module, variable) of a block's conv or BN weight, or None."""
  # pylint: disable-next=protected-access
  name = f'{int(stage) + 1}{resnet._block_letter(int(block))}_{branch}'
  if kind == 'conv' and leaf == 'weight':
    return 'params', f'res{name}', 'kernel'
  if kind == 'bn' and leaf in _BN:
    collection, variable = _BN[leaf]
    return collection, f'bn{name}', variable
  return None


def torch_to_flax(key: str) -> Optional[tuple[str, str, str]]:
  """Maps a torchvision/timm ResNet key to (collection, module, variable).

  Returns None for keys that carry no weights (``num_batches_tracked``).

  Raises:
    ValueError: the key is not part of a plain v1.5 ResNet.
  """
  if key.endswith('num_batches_tracked'):
    return None
  if key in ('conv1.weight',):
    return 'params', 'conv1', 'kernel'
  if key in ('fc.weight', 'fc.bias'):
    return 'params', 'fc', 'kernel' if key == 'fc.weight' else 'bias'
  if key.startswith('bn1.') and key[4:] in _BN:
    collection, variable = _BN[key[4:]]
    return collection, 'bn_conv1', variable
  m = _BLOCK.fullmatch(key)
  if m:
    stage, block, kind, k, leaf = m.groups()
    target = _block_target(stage, block, kind, _BRANCH2[k], leaf)
  elif m := _DOWNSAMPLE.fullmatch(key):
    stage, block, index, leaf = m.groups()
    target = _block_target(stage, block, ('conv', 'bn')[int(index)],
                           'branch1', leaf)
  else:
    target = None
  if target:
    return target
  raise ValueError(f'{key!r} is not a weight of a plain torchvision/timm '
                   'ResNet (v1.5); other variants are not supported.')


def from_torch(state_dict: Mapping[str, Any], model: resnet.ResNet,
               path: Any = '<state dict>') -> Dict[str, Any]:
  """Converts a torchvision/timm ResNet state dict to ``model``'s variables.

  Args:
    state_dict: {key: torch.Tensor or numpy array}, possibly wrapped (see
      ``torch_io.unwrap``).
    model: a ``ResNet(layout='torchvision')`` of the same depth. With
      ``num_classes=None`` the checkpoint's classifier ``fc`` is dropped.
    path: where the weights came from, for error messages.

  Returns:
    {'params': ..., 'batch_stats': ...} of float32 jax arrays.

  Raises:
    ValueError: unknown keys, or names/shapes that do not fit ``model``.
  """
  if model.layout != 'torchvision':
    raise ValueError('torchvision/timm ResNet weights are v1.5: load them '
                     "into ResNet(layout='torchvision'), not "
                     f'layout={model.layout!r}.')
  flat = {}
  for key, value in torch_io.unwrap(state_dict).items():
    target = torch_to_flax(key)
    if target is None or (target[1] == 'fc' and model.num_classes is None):
      continue
    v = np.asarray(value, np.float32)
    if target[2] == 'kernel':
      # conv [O, I, kh, kw] -> [kh, kw, I, O]; linear [out, in] -> [in, out].
      v = v.transpose(2, 3, 1, 0) if v.ndim == 4 else v.T
    flat[target] = v
  variables = traverse_util.unflatten_dict(flat)
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                         train=False))
  graft.check_tree(expected, variables, path)
  return jax.tree.map(jnp.asarray, variables)


def load(path: Any, model: resnet.ResNet) -> Dict[str, Any]:
  """Reads a ``.pth`` or ``.safetensors`` ResNet checkpoint; see from_torch."""
  return from_torch(torch_io.read_state_dict(path), model, path)
