r"""Spectral Hashing: Y. Weiss, A. Torralba and R. Fergus, "Spectral
Hashing", NIPS 2008.

An unsupervised frozen-feature baseline like PCA-ITQ (hashjax/fit.py runs
it; docs/methods/baselines.md §6). No label is read. The paper relaxes

  min sum_ij W_ij ||y_i - y_j||^2  s.t.  y_i in {-1, 1}^k,
      sum_i y_i = 0,  (1/n) sum_i y_i y_i^T = I,   W_ij = exp(-||x_i - x_j||^2 / eps^2),

and, for data uniform on a box, solves it with the analytical
eigenfunctions of the weighted Laplace-Beltrami operator: along a direction
of extent [a, b], the k-th one is

  Phi_k(x) = sin(pi/2 + k pi (x - a) / (b - a)),
  lambda_k = 1 - exp(-eps^2/2 |k pi / (b - a)|^2),

so a smaller eigenvalue is a smaller k pi / (b - a). The algorithm (the
authors' trainSH.m / compressSH.m):
  1. PCA of the training features to min(bits, D) directions;
  2. a, b = min and max of each direction over the training set;
  3. for every direction d and mode k = 1, 2, ..., up to
     ceil((bits + 1) R_d / max R) (R = b - a), the frequency k pi / R_d;
     keep the `bits` (d, k) pairs of smallest frequency (the paper's
     smallest eigenvalues; ties in the order of the direction then k);
  4. bit j of x: sign(sin(pi/2 + k_j pi (x_{d_j} - a_{d_j}) / R_{d_j})).
"""
import numpy as np


def pca(features, directions):
  """(mean [D], projection [D, directions]) onto the top components."""
  x = np.asarray(features, np.float64)
  mean = x.mean(0)
  cov = np.cov(x - mean, rowvar=False)
  eigval, eigvec = np.linalg.eigh(np.atleast_2d(cov))   # ascending
  order = np.argsort(eigval, kind='stable')[::-1][:directions]
  return mean, eigvec[:, order]


def select_modes(extent, bits):
  """The `bits` (direction, mode) pairs of smallest frequency k pi / R_d.

  Args:
    extent: [d] R = max - min of each PCA direction.
  Returns:
    (dims [bits] int, modes [bits] int >= 1).
  """
  extent = np.asarray(extent, np.float64)
  max_mode = np.ceil((bits + 1) * extent / extent.max()).astype(int)
  dims, modes = [], []
  for d, top in enumerate(max_mode):
    for k in range(1, top):
      dims.append(d)
      modes.append(k)
  dims, modes = np.asarray(dims), np.asarray(modes)
  freq = (modes * np.pi / extent[dims]) ** 2
  order = np.argsort(freq, kind='stable')[:bits]
  if len(order) < bits:
    raise ValueError(f'Spectral hashing found {len(order)} modes for {bits} '
                     'bits.')
  return dims[order], modes[order]


def fit(features, *, bits, seed, hp):
  """{'mean', 'projection', 'low', 'extent', 'dims', 'modes'}; no labels."""
  del seed, hp       # deterministic, no hyper-parameter.
  x = np.asarray(features, np.float64)
  directions = min(bits, x.shape[1], x.shape[0])
  mean, w = pca(x, directions)
  v = (x - mean) @ w
  eps = np.finfo(np.float64).eps
  low, high = v.min(0) - eps, v.max(0) + eps
  extent = high - low
  dims, modes = select_modes(extent, bits)
  return {'mean': mean, 'projection': w, 'low': low, 'extent': extent,
          'dims': dims, 'modes': modes}, {
              'modes_per_direction': np.bincount(
                  dims, minlength=directions).tolist()}


def encode(params, features):
  """[n, bits] eigenfunction values sin(pi/2 + k pi (x - a) / R); their
  sign is the code."""
  v = (np.asarray(features, np.float64) - params['mean']) @ params[
      'projection']
  d = params['dims']
  x = (v[:, d] - params['low'][d]) / params['extent'][d]
  return np.sin(np.pi / 2 + params['modes'] * np.pi * x)
