"""Encoders by name, with their input normalisation and pretrained weights.

Two ways to start an encoder from pretrained weights (``config.model``):

* ``pretrained``: a source checkpoint, converted at every start. resnet50:
  a Keras ImageNet weight name or file (``weights.resolve``); resnet*_tv: a
  torchvision/timm ``.pth``/``.safetensors`` (``resnet_convert``); swin_*: a
  timm or official Microsoft checkpoint (``swin_convert``).
* ``init_from``: a file written once by ``python -m hashjax.convert``: a
  ``.safetensors`` file or an orbax checkpoint directory holding the
  encoder's Flax variables. Names and shapes are checked on load.
"""
import functools
import json
import logging
import pathlib

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import resnet
from hashjax.models import swin
from hashjax.models import weights

# Metadata tag of the files written by `save_variables`.
FORMAT = 'hashjax-encoder-v1'
# In an orbax directory: {'format': FORMAT, 'encoder': name}.
_ORBAX_META = 'hashjax_encoder.json'


def _resnet(factory, layout):
  return lambda size, c: factory(layout=layout, bn_momentum=c.bn_momentum)


def _swin(factory):
  return lambda size, c: factory(img_size=size,
                                 drop_path_rate=c.drop_path_rate)


_KERAS = functools.partial(resnet.normalize, layout='keras')
_TORCHVISION = functools.partial(resnet.normalize, layout='torchvision')

# name: (module factory(image_size, model_config), normalize fn)
ENCODERS = {
    # Caffe/Keras ResNet v1 (the ImageNet weights of ../weights).
    'resnet50': (_resnet(resnet.ResNet50, 'keras'), _KERAS),
    # torchvision/timm ResNet v1.5.
    'resnet50_tv': (_resnet(resnet.ResNet50, 'torchvision'), _TORCHVISION),
    'resnet18_tv': (_resnet(resnet.ResNet18, 'torchvision'), _TORCHVISION),
    'resnet_tiny': (_resnet(resnet.ResNetTiny, 'keras'), _KERAS),
    **{name: (_swin(factory), swin.normalize) for name, factory in (
        ('swin_t', swin.SwinT), ('swin_s', swin.SwinS),
        ('swin_b', swin.SwinB), ('swin_tiny', swin.SwinTiny))},
}


def build(model_config, image_size):
  """Returns (encoder module, normalize fn) for `config.model`."""
  name = model_config.encoder
  if name not in ENCODERS:
    raise ValueError(f'Unknown encoder {name!r}; known: '
                     f'{", ".join(sorted(ENCODERS))}.')
  factory, normalize = ENCODERS[name]
  return factory(image_size, model_config), normalize


def convert_pretrained(name, source, encoder):
  """Reads a source checkpoint as the Flax variables of `encoder`.

  Args:
    name: the encoder's name (a key of ENCODERS).
    source: a weight file, or for resnet50 a known weight name.
    encoder: the module from `build` (Swin's relative position tables are
      resized to its windows).

  Returns:
    ({'params': ..., ['batch_stats': ...]}, resolved path).
  """
  path = weights.resolve(source)
  if name == 'resnet50':
    return weights.load_keras_resnet50(path, num_classes=None), path
  if name in ('resnet50_tv', 'resnet18_tv'):
    from hashjax.models import resnet_convert  # pylint: disable=g-import-not-at-top
    return resnet_convert.load(path, encoder), path
  if name.startswith('swin_'):
    from hashjax.models import swin_convert  # pylint: disable=g-import-not-at-top
    return {'params': swin_convert.load(path, encoder)}, path
  raise ValueError(
      f'No pretrained weights for encoder {name!r}; set '
      '--config.model.pretrained="" to train from scratch.')


def save_variables(variables, path, name):
  """Writes encoder variables as .safetensors (a file) or orbax (a dir)."""
  path = pathlib.Path(path).expanduser().resolve()
  if path.suffix == '.safetensors':
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    flat = traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.asarray(v, np.float32) for k, v in flat.items()},
              str(path), metadata={'format': FORMAT, 'encoder': name})
  else:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(path, variables)
    # Orbax's standard handler stores arrays only; the tag goes beside them.
    (path / _ORBAX_META).write_text(json.dumps(
        {'format': FORMAT, 'encoder': name}))
  return path


def read_variables(path):
  """Reads a `save_variables` file: (variables, encoder name)."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    meta_path = path / _ORBAX_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get('format') != FORMAT:
      raise ValueError(f'init_from={path}: not written by hashjax.convert '
                       f'(no {_ORBAX_META} in the directory).')
    try:
      with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(path.resolve())
    except Exception as e:  # orbax raises many types for a bad directory.
      raise ValueError(f'init_from={path}: not a readable orbax checkpoint '
                       f'({e}).') from e
    return tree, meta['encoder']
  if not path.is_file():
    raise FileNotFoundError(
        f'init_from={path} does not exist. Write it with python -m '
        'hashjax.convert (see README, "Pretrained weights").')
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(str(path), framework='numpy') as f:
      meta = f.metadata() or {}
      flat = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # SafetensorError is not exported.
    raise ValueError(f'init_from={path}: not a readable safetensors file '
                     f'({e}).') from e
  if meta.get('format') != FORMAT:
    raise ValueError(
        f'init_from={path} was not written by hashjax.convert (a source '
        'checkpoint goes in --config.model.pretrained instead).')
  return traverse_util.unflatten_dict(flat, sep='/'), meta['encoder']


def load_pretrained(variables, model_config, encoder):
  """Replaces the encoder's variables per `model_config` (module docstring).

  Args:
    variables: the hash model's initial variables; the encoder sits under
      'encoder' in every collection.
    model_config: `config.model` (encoder, pretrained, init_from).
    encoder: the encoder module from `build`.

  `init_from`, when set, takes precedence over `pretrained`.

  Returns:
    The variables with the encoder's replaced, or unchanged when neither
    `pretrained` nor `init_from` is set.
  """
  init_from = model_config.get('init_from', '')
  if init_from:
    if model_config.pretrained:
      logging.info('model.init_from is set: model.pretrained=%r is not read.',
                   model_config.pretrained)
    loaded, name = read_variables(init_from)
    if name != model_config.encoder:
      raise ValueError(
          f'init_from={init_from} holds a {name!r} encoder, but the config '
          f'builds {model_config.encoder!r} (--config.model.encoder={name}?).')
    return weights.load_into(variables, 'encoder',
                             jax.tree.map(jnp.asarray, loaded), init_from)
  if not model_config.pretrained:
    return variables
  loaded, path = convert_pretrained(model_config.encoder,
                                    model_config.pretrained, encoder)
  return weights.load_into(variables, 'encoder', loaded, path)
