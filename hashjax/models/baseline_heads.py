"""Hash heads of the deep baselines (hashjax/methods/{dpsh,dsh,hashnet,cibhash}.py).

Same layout as heads.HashModel (an `encoder` submodule, a dense layer named
'hash'), so pretrained encoders load the same way, with other activations:

  ScaledHashModel   u = z (DPSH, DSH: real-valued outputs) or
                    u = tanh(scale * z) (HashNet's continuation, `scale` a
                    call argument set per step).
  TwoViewHashModel  CIBHash: in training, two random views of every image
                    (in-graph augmentation, the 'dropout' rng), Bernoulli
                    probabilities p = sigmoid(z) and stochastic +-1 codes
                    with a straight-through gradient; in evaluation,
                    u = 2 p - 1 (whose sign is sign(z)).
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashjax.models.heads import TorchDense


class ScaledHashModel(nn.Module):
  """encoder -> dense 'hash' -> identity ('linear') or tanh(scale * z)."""
  encoder: nn.Module
  normalize: Any
  bits: int
  activation: str = 'tanh'    # 'tanh' | 'linear'

  @nn.compact
  def __call__(self, images, train: bool = False, scale=1.0):
    x = self.normalize(images.astype(jnp.float32))
    features = self.encoder(x, train=train)['features']
    z = TorchDense(self.bits, name='hash')(features)
    if self.activation == 'linear':
      u = z
    elif self.activation == 'tanh':
      u = jnp.tanh(scale * z)
    else:
      raise ValueError(f"activation must be 'tanh' or 'linear', got "
                       f'{self.activation!r}.')
    return {'features': features, 'z': z, 'u': u}


def straight_through_sign(x):
  """sign(x) (0 -> +1) forward, identity gradient backward."""
  return x + jax.lax.stop_gradient(jnp.where(x >= 0, 1.0, -1.0) - x)


class TwoViewHashModel(nn.Module):
  """CIBHash's network: two views in training, one in evaluation.

  Attributes:
    augment: fn(key, images float [B, H, W, 3] in [0, 255]) -> one random
      view of each image, same shape.
  """
  encoder: nn.Module
  normalize: Any
  bits: int
  augment: Callable

  @nn.compact
  def __call__(self, images, train: bool = False):
    images = images.astype(jnp.float32)
    dense = TorchDense(self.bits, name='hash')
    if not train:
      features = self.encoder(self.normalize(images), train=False)['features']
      p = jax.nn.sigmoid(dense(features))
      return {'features': features, 'u': 2.0 * p - 1.0, 'p': p}
    key = self.make_rng('dropout')
    k_i, k_j, k_noise = jax.random.split(key, 3)
    views = jnp.concatenate([self.augment(k_i, images),
                             self.augment(k_j, images)])
    features = self.encoder(self.normalize(views), train=True)['features']
    p = jax.nn.sigmoid(dense(features))
    # Stochastic binary codes: sign(p - eps), eps ~ U(0, 1), i.e. +1 with
    # probability p (the released code's hash layer).
    z = straight_through_sign(p - jax.random.uniform(k_noise, p.shape))
    b = images.shape[0]
    return {'features': features[:b], 'u': 2.0 * p[:b] - 1.0,
            'p_i': p[:b], 'p_j': p[b:], 'z_i': z[:b], 'z_j': z[b:]}
