"""Encoders by name, with their input normalisation and pretrained weights."""
import functools

from hashjax.models import resnet
from hashjax.models import weights

ENCODERS = {
    # name: (module factory, weight layout / normalisation)
    'resnet50': (functools.partial(resnet.ResNet50, layout='keras'), 'keras'),
    'resnet_tiny': (functools.partial(resnet.ResNetTiny, layout='keras'),
                    'keras'),
}


def build(model_config):
  """Returns (encoder module, normalize fn) for `config.model`."""
  name = model_config.encoder
  if name not in ENCODERS:
    raise ValueError(f'Unknown encoder {name!r}; known: '
                     f'{", ".join(sorted(ENCODERS))}.')
  factory, layout = ENCODERS[name]
  encoder = factory(num_classes=None, bn_momentum=model_config.bn_momentum)
  return encoder, functools.partial(resnet.normalize, layout=layout)


def load_pretrained(variables, model_config):
  """Replaces the encoder's variables with `model_config.pretrained`."""
  if not model_config.pretrained:
    return variables
  if model_config.encoder != 'resnet50':
    raise ValueError(
        f'No pretrained weights for encoder {model_config.encoder!r}; set '
        '--config.model.pretrained="" to train from scratch.')
  path = weights.resolve(model_config.pretrained)
  loaded = weights.load_keras_resnet50(path, num_classes=None)
  return weights.load_into(variables, 'encoder', loaded, path)
