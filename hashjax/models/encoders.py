"""Encoders by name, with their input normalisation and pretrained weights."""
import functools

from hashjax.models import resnet
from hashjax.models import swin
from hashjax.models import weights


def _resnet(factory):
  return lambda size, c: factory(layout='keras', bn_momentum=c.bn_momentum)


def _swin(factory):
  return lambda size, c: factory(img_size=size,
                                 drop_path_rate=c.drop_path_rate)


_KERAS = functools.partial(resnet.normalize, layout='keras')

# name: (module factory(image_size, model_config), normalize fn)
ENCODERS = {
    'resnet50': (_resnet(resnet.ResNet50), _KERAS),
    'resnet_tiny': (_resnet(resnet.ResNetTiny), _KERAS),
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


def load_pretrained(variables, model_config, encoder):
  """Replaces the encoder's variables with `model_config.pretrained`.

  resnet50: a Keras ImageNet weight name or file (weights.resolve).
  swin_*: a timm / official Microsoft checkpoint file (.pth or
  .safetensors; swin_convert.load), relative-position tables resized to the
  model's windows.
  """
  if not model_config.pretrained:
    return variables
  name = model_config.encoder
  if name == 'resnet50':
    path = weights.resolve(model_config.pretrained)
    loaded = weights.load_keras_resnet50(path, num_classes=None)
  elif name.startswith('swin_') and name != 'swin_tiny':
    from hashjax.models import swin_convert  # pylint: disable=g-import-not-at-top
    path = weights.resolve(model_config.pretrained)
    loaded = {'params': swin_convert.load(path, encoder)}
  else:
    raise ValueError(
        f'No pretrained weights for encoder {name!r}; set '
        '--config.model.pretrained="" to train from scratch.')
  return weights.load_into(variables, 'encoder', loaded, path)
