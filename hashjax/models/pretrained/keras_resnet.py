"""Keras ImageNet ResNet-50 weights as Flax variables.

Read from either
* a ``.safetensors`` file keyed by Keras weight names
  (``res2a_branch2a/kernel``, ``bn2a_branch2a/moving_mean``, ...), or
* a Keras 2 ``save_weights`` ``.h5`` file, with either the Caffe-era layer
  names above (``fchollet/deep-learning-models`` v0.2) or the ``tf.keras``
  names (``conv2_block1_1_conv``, ...) of the official file,

and returned as ``{'params': ..., 'batch_stats': ...}`` for
``ResNet50(layout='keras')``.
"""
import pathlib
import re
from typing import Any, Mapping, Optional

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import resnet
from hashjax.models.pretrained import cache
from hashjax.models.pretrained import graft

PathLike = cache.PathLike
_HDF5_MAGIC = cache._HDF5_MAGIC  # pylint: disable=protected-access


def _corrupt(path: pathlib.Path, error: Exception) -> ValueError:
  return ValueError(
      f'Could not read weight file {path}: {error}. The file is probably '
      'truncated or corrupt; delete it and download it again.')


def _read_safetensors(path: pathlib.Path) -> dict:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return load_file(path)
  except Exception as e:  # SafetensorError is not exported; catch it all.
    raise _corrupt(path, e) from e


def _read_h5(path: pathlib.Path) -> dict:
  """Reads a Keras 2 ``save_weights`` file as {'layer/weight': array}."""
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, 'r') as f:
      # Full-model files (model.save) nest the weights one level down.
      root = f['model_weights'] if 'model_weights' in f else f
      tensors = {}
      for layer, group in root.items():
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in group.attrs.get('weight_names', [])]
        for weight_name in names:
          # 'res2a_branch2a/kernel:0' -> 'kernel'.
          weight = weight_name.rsplit('/', 1)[-1].split(':')[0]
          tensors[f'{layer}/{weight}'] = np.asarray(group[weight_name])
  except (OSError, KeyError, ValueError, RuntimeError) as e:
    raise _corrupt(path, e) from e
  return tensors


def read_tensors(path: PathLike) -> dict:
  """Reads every tensor of a ``.safetensors`` or Keras ``.h5`` file.

  Args:
    path: the file; HDF5 is recognised by its signature, anything else is
      read as safetensors.

  Returns:
    {'layer/weight': np.ndarray}, e.g. 'res2a_branch2a/kernel'.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'Weight file {path} does not exist.')
  with open(path, 'rb') as f:
    is_h5 = f.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
  return _read_h5(path) if is_h5 else _read_safetensors(path)


# tf.keras (resnet.py) names -> Caffe names: conv{S}_block{N}_{K}_{conv,bn}.
_TF_KERAS_BLOCK = re.compile(r'conv(\d)_block(\d+)_(\d)_(conv|bn)')
_TF_KERAS_BRANCH = {'0': 'branch1', '1': 'branch2a', '2': 'branch2b',
                    '3': 'branch2c'}
_TF_KERAS_LAYERS = {'conv1_conv': 'conv1', 'conv1_bn': 'bn_conv1',
                    'probs': 'fc1000', 'predictions': 'fc1000'}
# tf.keras' ResNet50 uses BatchNorm epsilon 1.001e-5, ours (Caffe) 1e-3.
_TF_KERAS_BN_EPSILON = 1.001e-5


def _caffe_layer_name(layer: str) -> tuple[str, bool]:
  """Maps a Keras layer name to its Caffe name; flags tf.keras names."""
  if layer in _TF_KERAS_LAYERS:
    return _TF_KERAS_LAYERS[layer], True
  match = _TF_KERAS_BLOCK.fullmatch(layer)
  if not match:
    return layer, False
  stage, block, branch, kind = match.groups()
  # pylint: disable-next=protected-access
  letter = resnet._block_letter(int(block) - 1)
  prefix = 'res' if kind == 'conv' else 'bn'
  return f'{prefix}{stage}{letter}_{_TF_KERAS_BRANCH[branch]}', True


# Keras weight -> (Flax collection, Flax variable).
_KERAS_WEIGHTS = {
    'kernel': ('params', 'kernel'),
    'bias': ('params', 'bias'),
    'gamma': ('params', 'scale'),
    'beta': ('params', 'bias'),
    'moving_mean': ('batch_stats', 'mean'),
    'moving_variance': ('batch_stats', 'var'),
}


def keras_to_flax(name: str) -> tuple[str, str, str]:
  """Maps a Keras ResNet weight name to its ``ResNet`` variable path.

  Args:
    name: 'layer/weight', e.g. 'bn2a_branch2a/moving_mean'.

  Returns:
    (collection, module, variable), e.g. ('batch_stats', 'bn2a_branch2a',
    'mean'). The classifier 'fc1000' maps to module 'fc'.
  """
  layer, weight = name.rsplit('/', 1)
  layer, _ = _caffe_layer_name(layer)
  if weight not in _KERAS_WEIGHTS:
    raise ValueError(f'Unexpected Keras weight {name!r}.')
  collection, variable = _KERAS_WEIGHTS[weight]
  return collection, 'fc' if layer == 'fc1000' else layer, variable


def _to_variables(tensors: Mapping[str, np.ndarray], path: Any) -> dict:
  """Nests {'layer/weight': array} as Flax variables."""
  flat = {}
  for name, value in tensors.items():
    if '/' not in name or name.rsplit('/', 1)[1] not in _KERAS_WEIGHTS:
      raise ValueError(f'{path}: unexpected tensor {name!r}; not a Keras '
                       'ResNet weight file?')
    value = np.asarray(value, np.float32)
    layer, weight = name.rsplit('/', 1)
    if weight == 'moving_variance' and _caffe_layer_name(layer)[1]:
      # Folds tf.keras' epsilon into the variance so that our epsilon gives
      # the same var + eps, i.e. the exact tf.keras outputs.
      value = value + np.float32(_TF_KERAS_BN_EPSILON - 1e-3)
    flat[keras_to_flax(name)] = value
  return traverse_util.unflatten_dict(flat)


def load_keras_resnet50(name_or_path: PathLike = 'resnet50_keras_imagenet',
                        num_classes: Optional[int] = None,
                        allow_download: bool = True) -> dict:
  """Loads Keras/Caffe ImageNet ResNet-50 weights.

  Args:
    name_or_path: a weight file (.safetensors or Keras .h5) or a name known
      to ``resolve``.
    num_classes: the ``num_classes`` of the target
      ``ResNet50(layout='keras')``: 1000 keeps the ImageNet classifier
      (``fc``), None drops it (backbone only, e.g. for hashing).
    allow_download: passed to ``resolve``.

  Returns:
    {'params': ..., 'batch_stats': ...} of float32 jax arrays.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: the file is corrupt or its tensors do not fit ResNet-50.
  """
  if num_classes not in (None, 1000):
    raise ValueError(f'ImageNet weights have 1000 classes, not {num_classes}; '
                     'use num_classes=None and train a new classifier.')
  path = cache.resolve(name_or_path, allow_download=allow_download)
  variables = _to_variables(read_tensors(path), path)
  if num_classes is None:
    variables['params'].pop('fc', None)
  model = resnet.ResNet50(layout='keras', num_classes=num_classes)
  # Abstract init: shapes only, no compute.
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                         train=False))
  graft.check_tree(expected, variables, path)
  return jax.tree.map(jnp.asarray, variables)
