"""Frozen encoder features of an ImageSet, cached in the run's workdir.

Used by the frozen-feature methods (LSH, ITQ; hashjax/fit.py) and by
MrHash's stages. The encoder is the config's (ImageNet ResNet-50 by
default) in eval mode, batched over all devices.
"""
import os

import jax
import numpy as np

from hashjax import inference
from hashjax import parallel
from hashjax import workdir as workdir_lib
from hashjax.models import encoders
from hashjax.models.pretrained import load as pretrained


def extract_features(config, image_set, mesh, view=None):
  """[len(image_set), D] float32 features of the frozen encoder.

  `view`, if given, maps the float [0, 255] images before normalisation
  (a synthetic second source, hashjax/data/views.py).
  """
  view = view or (lambda x: x)
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  size = config.input.image_size
  dummy = np.zeros((1, size, size, 3), np.float32)
  variables = encoder.init(jax.random.key(config.seed), dummy, train=False)
  variables = pretrained.load_pretrained(
      {k: {'encoder': v} for k, v in variables.items()}, config.model,
      encoder)
  variables = {k: v['encoder'] for k, v in variables.items()}
  step = jax.jit(
      lambda v, x: encoder.apply(v, normalize(view(x.astype(np.float32))),
                                 train=False)['features'],
      in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
      out_shardings=parallel.replicated(mesh))
  return inference.infer(step, variables, image_set,
                         np.arange(len(image_set)), config.input, mesh,
                         what=f'frozen {config.model.encoder} features')


def cached_features(config, image_set, mesh, workdir, source=0, view=None,
                    view_name=''):
  """Features of one source from <workdir>/features[_s<k>].npz, made once.

  Returns (features, True if read from the cache).
  """
  name = 'features.npz' if source == 0 else f'features_s{source}.npz'
  path = os.path.join(workdir, name)
  cached = workdir_lib.load_npz(path)
  if cached:
    cached_view = str(cached['view']) if 'view' in cached else ''
    if (list(cached['names']) == list(image_set.names) and
        cached_view == view_name):
      return cached['features'], True
    raise ValueError(f'{path} was computed for other images or another '
                     'view; delete it.')
  print(f'extracting frozen {config.model.encoder} features of '
        f'{len(image_set):,} images{" (" + view_name + ")" if view_name else ""}'
        f' -> {path}', flush=True)
  features = extract_features(config, image_set, mesh, view)
  workdir_lib.save_npz(path, features=features,
                       names=np.asarray(image_set.names),
                       view=np.asarray(view_name))
  return features, False
