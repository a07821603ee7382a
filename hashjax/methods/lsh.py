"""Sign random projections (LSH; Charikar, STOC 2002) of frozen features.

An unsupervised, data-independent baseline beside MrHash and PCA-ITQ: the
code is sign((x - mean) W) with W [D, bits] i.i.d. standard normal (seeded);
only the mean of the training features is learned, so that the hyperplanes
pass through the data. See hashjax/frozen.py for the pipeline.
"""
import numpy as np

KIND = 'frozen_features'
DATABASE_CODES = 'encoder'


def fit(features, *, bits, seed, **unused):
  """{'mean', 'projection'} for training features [n, D]; no labels."""
  del unused
  x = np.asarray(features, np.float64)
  w = np.random.default_rng(seed).standard_normal((x.shape[1], bits))
  return {'mean': x.mean(0), 'projection': w}, {}


def encode(params, features):
  """Real-valued projections [n, bits]; their sign is the code."""
  return (np.asarray(features, np.float64) - params['mean']) @ params[
      'projection']
