"""MrHash's networks (docs/methods/mrhash.md §1.2, §1.4), Flax Linen.

MultiSourceAE, the multisource autoencoder:

One MLP encoder reads source-1 features only; one decoder per source
reconstructs that source's features from the shared latent (cross-source
reconstruction, no fusion), so the latent stays computable from source 1
alone at query time. Widths as the released code: d1 -> 512 -> 512 -> 256
-> 256 -> latent (linear output), each decoder the mirror image; ReLU
between layers, no normalisation or dropout.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from hashjax.losses import clustering
from hashjax.models import heads


class MLP(nn.Module):
  """Dense layers with ReLU between them and a linear output."""
  widths: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths):
      x = nn.Dense(w, name=f'dense_{i}')(x)
      if i < len(self.widths) - 1:
        x = nn.relu(x)
    return x


class MultiSourceAE(nn.Module):
  """z = Enc(x_1); returns (z, [Dec_s(z) for each source s]).

  Attributes:
    source_dims: feature size of each source (source 1 first).
    hidden: encoder widths before the latent (the decoders mirror them).
    latent: latent size (64 in the released code).
  """
  source_dims: Sequence[int]
  latent: int
  hidden: Sequence[int] = (512, 512, 256, 256)

  def setup(self):
    self.encoder = MLP(tuple(self.hidden) + (self.latent,))
    self.decoders = [MLP(tuple(reversed(self.hidden)) + (d,))
                     for d in self.source_dims]

  def encode(self, x1):
    return self.encoder(x1)

  def __call__(self, x1):
    z = self.encoder(x1)
    return z, [dec(z) for dec in self.decoders]


class MrHashModel(nn.Module):
  """The hashing network: encoder -> tanh hash u -> bias-free projection to
  the latent space -> Student's-t Q_h on the shared centres; and the
  autoencoder on the source features -> Q_f (§1.4).

  At query time only the image path runs (`sources=None`): one source.
  """
  encoder: nn.Module
  normalize: Any
  bits: int
  source_dims: Sequence[int]
  latent: int
  clusters: int
  alpha: float

  @nn.compact
  def __call__(self, images, train=False, sources=None):
    x = self.normalize(images.astype(jnp.float32))
    features = self.encoder(x, train=train)['features']
    u = jnp.tanh(heads.TorchDense(self.bits, name='hash')(features))
    proj = nn.Dense(self.latent, use_bias=False, name='to_latent')(u)
    centres = self.param('centres', nn.initializers.xavier_normal(),
                         (self.clusters, self.latent))
    out = {'features': features, 'u': u,
           'q_h': clustering.soft_assignment(proj, centres, self.alpha)}
    ae = MultiSourceAE(tuple(self.source_dims), latent=self.latent, name='ae')
    if sources is None and self.is_initializing():
      sources = [jnp.zeros((1, d)) for d in self.source_dims]
    if sources is not None:
      z, recons = ae(sources[0])
      out.update(q_f=clustering.soft_assignment(z, centres, self.alpha),
                 recons=recons)
    return out
