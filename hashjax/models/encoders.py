"""Encoders by name, with their input normalisation.

Pretrained weights for them: hashjax/models/pretrained/.
"""
import functools


from hashjax.models import resnet
from hashjax.models import swin



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
