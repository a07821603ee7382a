"""Starting an encoder from pretrained weights (``config.model``).

* ``pretrained``: a source checkpoint, converted at every start. resnet50:
  a Keras ImageNet weight name or file (``cache.resolve``); resnet*_tv: a
  torchvision/timm ``.pth``/``.safetensors`` (``torch_resnet``); swin_*: a
  timm or official Microsoft checkpoint (``timm_swin``).
* ``init_from``: a file written once by ``python -m hashjax.convert``
  (``converted``).
"""
import logging

import jax
import jax.numpy as jnp

from hashjax.models.pretrained import cache
from hashjax.models.pretrained import converted
from hashjax.models.pretrained import graft
from hashjax.models.pretrained import keras_resnet


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
  path = cache.resolve(source)
  if name == 'resnet50':
    return keras_resnet.load_keras_resnet50(path, num_classes=None), path
  if name in ('resnet50_tv', 'resnet18_tv'):
    from hashjax.models.pretrained import torch_resnet  # pylint: disable=g-import-not-at-top
    return torch_resnet.load(path, encoder), path
  if name.startswith('swin_'):
    from hashjax.models.pretrained import timm_swin  # pylint: disable=g-import-not-at-top
    return {'params': timm_swin.load(path, encoder)}, path
  raise ValueError(
      f'No pretrained weights for encoder {name!r}; set '
      '--config.model.pretrained="" to train from scratch.')


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
    loaded, name = converted.read_variables(init_from)
    if name != model_config.encoder:
      raise ValueError(
          f'init_from={init_from} holds a {name!r} encoder, but the config '
          f'builds {model_config.encoder!r} (--config.model.encoder={name}?).')
    return graft.load_into(variables, 'encoder',
                             jax.tree.map(jnp.asarray, loaded), init_from)
  if not model_config.pretrained:
    return variables
  loaded, path = convert_pretrained(model_config.encoder,
                                    model_config.pretrained, encoder)
  return graft.load_into(variables, 'encoder', loaded, path)
