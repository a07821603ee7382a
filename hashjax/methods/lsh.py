"""Sign random projections (LSH; Charikar, STOC 2002) of frozen features.

An unsupervised, data-independent baseline beside MrHash and PCA-ITQ: the
code is sign((x - mean) W) with W [D, bits] i.i.d. standard normal (seeded);
only the mean of the training features is learned, so that the hyperplanes
pass through the data. hashjax/fit.py runs the pipeline.
"""
import numpy as np


def fit(features, *, bits, seed, hp):
  """{'mean', 'projection'} for training features [n, D]; no labels."""
  del hp
  x = np.asarray(features, np.float64)
  w = np.random.default_rng(seed).standard_normal((x.shape[1], bits))
  return {'mean': x.mean(0), 'projection': w}, {}


def encode(params, features):
  """Real-valued projections [n, bits]; their sign is the code."""
  return (np.asarray(features, np.float64) - params['mean']) @ params[
      'projection']
