"""Locating, reading and checking pretrained backbone weights.

Weights live in a user cache, ``cache_dir()``: ``$HASHJAX_WEIGHTS_DIR`` if set,
else ``~/.cache/hashjax/weights``. ``resolve`` turns a weight name or a path
into a file, downloading the official file into the cache when allowed (never
when ``HASHJAX_OFFLINE=1``).

Keras ResNet-50 weights are read from either
* a ``.safetensors`` file keyed by Keras weight names
  (``res2a_branch2a/kernel``, ``bn2a_branch2a/moving_mean``, ...), or
* a Keras 2 ``save_weights`` ``.h5`` file, with either the Caffe-era layer
  names above (``fchollet/deep-learning-models`` v0.2) or the ``tf.keras``
  names (``conv2_block1_1_conv``, ...) of the file at ``KNOWN_WEIGHTS``' URL.

and returned as a Flax variables dict ``{'params': ..., 'batch_stats': ...}``
for ``ResNet50(layout='keras')``. ``load_into`` puts such a dict into the
variables of a bigger model (e.g. a hash model with the backbone under
``'encoder'``), checking names and shapes.
"""

import dataclasses
import logging
import os
import pathlib
import re
import tempfile
import urllib.request
from typing import Any, Mapping, Optional, Sequence, Union

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import resnet

PathLike = Union[str, os.PathLike]
Variables = Mapping[str, Any]

_CACHE_ENV = 'HASHJAX_WEIGHTS_DIR'
_OFFLINE_ENV = 'HASHJAX_OFFLINE'
_HDF5_MAGIC = b'\x89HDF\r\n\x1a\n'
# Errors listing names show at most this many.
_MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
  """A known pretrained weight file.

  Attributes:
    filenames: names accepted in the cache directory, in order of preference.
    url: official download location; saved under its own basename.
  """
  filenames: Sequence[str]
  url: str


KNOWN_WEIGHTS = {
    'resnet50_keras_imagenet': WeightsInfo(
        filenames=('resnet50_keras_imagenet.safetensors',
                   'resnet50_weights_tf_dim_ordering_tf_kernels.h5'),
        url=('https://storage.googleapis.com/tensorflow/keras-applications/'
             'resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5')),
    # Microsoft's ImageNet-1k Swin-T (DGSSH's `swin_pre.pth`), for swin_t.
    'swin_tiny_patch4_window7_224': WeightsInfo(
        filenames=('swin_tiny_patch4_window7_224.pth',
                   'swin_tiny_patch4_window7_224.safetensors'),
        url=('https://github.com/SwinTransformer/storage/releases/download/'
             'v1.0.0/swin_tiny_patch4_window7_224.pth')),
    # torchvision IMAGENET1K_V1, for resnet50_tv / resnet18_tv.
    'resnet50_tv_imagenet': WeightsInfo(
        filenames=('resnet50-0676ba61.pth',),
        url='https://download.pytorch.org/models/resnet50-0676ba61.pth'),
    'resnet18_tv_imagenet': WeightsInfo(
        filenames=('resnet18-f37072fd.pth',),
        url='https://download.pytorch.org/models/resnet18-f37072fd.pth'),
}


def cache_dir() -> pathlib.Path:
  """Directory holding downloaded or user-provided weight files."""
  env = os.environ.get(_CACHE_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path('~/.cache/hashjax/weights').expanduser()


def _offline() -> bool:
  return os.environ.get(_OFFLINE_ENV, '').lower() in ('1', 'true', 'yes')


def _download(url: str, dest: pathlib.Path, timeout: float = 30.0) -> None:
  """Downloads url to dest atomically (temp file in dest's dir + rename)."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix='.part')
  try:
    with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(
        url, timeout=timeout) as response:
      while chunk := response.read(1 << 20):
        f.write(chunk)
    # Guards against proxies answering with an HTML page.
    with open(tmp, 'rb') as f:
      head = f.read(len(_HDF5_MAGIC))
      if dest.suffix == '.h5' and head != _HDF5_MAGIC:
        raise OSError(f'{url} did not return an HDF5 file')
      if dest.suffix == '.pth' and not head.startswith(b'PK'):
        raise OSError(f'{url} did not return a torch (zip) checkpoint')
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _not_found(name: str, info: WeightsInfo, reason: str) -> FileNotFoundError:
  paths = '\n'.join(f'  {cache_dir() / f}' for f in info.filenames)
  return FileNotFoundError(
      f'Pretrained weights {name!r} not found ({reason}). Put the file at one '
      f'of:\n{paths}\ndownloading it from\n  {info.url}\nor pass its path '
      f'directly. Set ${_CACHE_ENV} to use another cache directory.')


def resolve(name_or_path: PathLike,
            allow_download: bool = True) -> pathlib.Path:
  """Finds a weight file from a path or a ``KNOWN_WEIGHTS`` name.

  Args:
    name_or_path: an existing file path, or a key of ``KNOWN_WEIGHTS``.
    allow_download: download a known file missing from the cache. Ignored
      (no download) when the environment has ``HASHJAX_OFFLINE=1``.

  Returns:
    Path of an existing file.

  Raises:
    FileNotFoundError: with the cache paths and URL to fetch the file from.
  """
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return path
  name = str(name_or_path)
  if name not in KNOWN_WEIGHTS:
    raise FileNotFoundError(
        f'{name!r} is neither an existing file nor a known weight name '
        f'({", ".join(sorted(KNOWN_WEIGHTS))}).')
  info = KNOWN_WEIGHTS[name]
  for filename in info.filenames:
    if (cache_dir() / filename).is_file():
      return cache_dir() / filename
  if not allow_download or _offline():
    raise _not_found(name, info, 'downloads disabled')
  dest = cache_dir() / info.url.rsplit('/', 1)[-1]
  logging.info('Downloading %s to %s', info.url, dest)
  try:
    _download(info.url, dest)
  except OSError as e:  # URLError, timeouts and disk errors are all OSErrors.
    raise _not_found(name, info, f'download failed: {e}') from e
  return dest


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


def _listed(names: Sequence[str]) -> str:
  more = len(names) - _MAX_LISTED
  return ', '.join(names[:_MAX_LISTED]) + (f' and {more} more' if more > 0
                                           else '')


def check_tree(expected: Variables, loaded: Variables, path: Any) -> None:
  """Checks that loaded has exactly the names and shapes of expected.

  Args:
    expected: nested dict of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
      ``jax.eval_shape(model.init, ...)``).
    loaded: nested dict of arrays.
    path: the file the weights came from, for error messages.

  Raises:
    ValueError: naming the file and the first missing or unexpected
      variables, or the first variable with a different shape.
  """
  want = traverse_util.flatten_dict(expected, sep='/')
  have = traverse_util.flatten_dict(loaded, sep='/')
  missing = sorted(set(want) - set(have))
  if missing:
    raise ValueError(f'{path}: {len(missing)} variables missing: '
                     f'{_listed(missing)}.')
  unexpected = sorted(set(have) - set(want))
  if unexpected:
    raise ValueError(f'{path}: {len(unexpected)} unexpected variables: '
                     f'{_listed(unexpected)}.')
  for name in sorted(want):
    if tuple(want[name].shape) != tuple(np.shape(have[name])):
      raise ValueError(
          f'{path}: shape mismatch for {name}: expected '
          f'{tuple(want[name].shape)}, found {tuple(np.shape(have[name]))}.')


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
  path = resolve(name_or_path, allow_download=allow_download)
  variables = _to_variables(read_tensors(path), path)
  if num_classes is None:
    variables['params'].pop('fc', None)
  model = resnet.ResNet50(layout='keras', num_classes=num_classes)
  # Abstract init: shapes only, no compute.
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                         train=False))
  check_tree(expected, variables, path)
  return jax.tree.map(jnp.asarray, variables)


def load_into(variables: Variables,
              subtree_key: Optional[Union[str, Sequence[str]]],
              loaded: Variables,
              path: Any = '<loaded weights>') -> dict:
  """Replaces a sub-tree of a model's variables with loaded weights.

  For a hash model whose backbone is the submodule 'encoder',
  ``load_into(model.init(...), 'encoder', load_keras_resnet50(path), path)``
  returns the initial variables with ``params['encoder']`` and
  ``batch_stats['encoder']`` replaced and every other variable (hash and
  classifier heads) kept.

  Args:
    variables: the initialised variables, {collection: tree}.
    subtree_key: key (or path of keys) of the sub-model inside every
      collection; None replaces whole collections.
    loaded: {collection: tree} for the sub-model, e.g. from
      ``load_keras_resnet50``. Each of its collections must exist in
      variables.
    path: the file the weights came from, for error messages.

  Returns:
    A new variables dict; loaded arrays are cast to the dtypes they replace.

  Raises:
    ValueError: names or shapes of loaded differ from the sub-tree's.
  """
  keys = () if subtree_key is None else (
      (subtree_key,) if isinstance(subtree_key, str) else tuple(subtree_key))
  variables = flax.core.unfreeze(variables)
  result = dict(variables)
  for collection, tree in loaded.items():
    target = variables.get(collection, {})
    for key in keys:
      target = target.get(key, {})
    check_tree({collection: target}, {collection: tree}, path)
    tree = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), tree,
                        target)
    result[collection] = _replace(result[collection], keys, tree)
  return result


def _replace(tree: Mapping, keys: Sequence[str], value: Any) -> Any:
  """Copy of tree with tree[keys[0]][keys[1]]... set to value."""
  if not keys:
    return value
  out = dict(tree)
  out[keys[0]] = _replace(tree[keys[0]], keys[1:], value)
  return out
