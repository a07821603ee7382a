"""PCA-ITQ (Gong & Lazebnik, CVPR 2011) on frozen encoder features.

An unsupervised baseline beside MrHash (issue 4): no label is read. Features
of the training (= database) images are centred, projected on their top
`bits` principal directions, then rotated by the orthogonal R that
minimises the quantisation loss ||B - V R||_F^2 over B in {-1, 1}; ITQ
alternates B = sign(V R) and the orthogonal Procrustes solution R = U S^T
from the SVD of V^T B = U Sigma S^T. Codes: sign((x - mean) W R), 0 -> +1.

`fit` and `encode` are pure functions of arrays; hashjax/fit.py runs the
shared pipeline (cached frozen features, the shared exact evaluation).
"""
import numpy as np


def pca(features, bits):
  """(mean [D], projection [D, bits]) onto the top `bits` components."""
  x = np.asarray(features, np.float64)
  if bits > min(x.shape):
    raise ValueError(f'PCA-ITQ needs bits <= min(#images, feature size) = '
                     f'{min(x.shape)}, got {bits}.')
  mean = x.mean(0)
  cov = np.cov(x - mean, rowvar=False)
  eigval, eigvec = np.linalg.eigh(cov)            # ascending
  order = np.argsort(eigval)[::-1][:bits]
  return mean, eigvec[:, order]


def quantization_loss(v, r):
  """||sign(V R) - V R||_F^2 / n: what each ITQ iteration lowers."""
  vr = v @ r
  b = np.where(vr >= 0, 1.0, -1.0)
  return float(((b - vr) ** 2).sum() / len(v))


def itq_rotation(v, iterations, seed):
  """ITQ's orthogonal rotation for PCA-projected data v [n, bits].

  Returns (R [bits, bits], per-iteration quantisation losses).
  """
  bits = v.shape[1]
  rng = np.random.default_rng(seed)
  r, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
  losses = []
  for _ in range(iterations):
    b = np.where(v @ r >= 0, 1.0, -1.0)
    u, _, st = np.linalg.svd(v.T @ b)
    r = u @ st
    losses.append(quantization_loss(v, r))
  return r, losses


def fit(features, *, bits, seed, hp):
  """Learns {'mean', 'projection'} from training features [n, D]."""
  mean, w = pca(features, bits)
  v = (np.asarray(features, np.float64) - mean) @ w
  r, losses = itq_rotation(v, hp.itq_iterations, seed)
  return {'mean': mean, 'projection': w @ r}, {'quantization_loss': losses}


def encode(params, features):
  """Real-valued projections [n, bits]; their sign is the code."""
  return (np.asarray(features, np.float64) - params['mean']) @ params[
      'projection']
