"""MrHash's multisource autoencoder (mrhash spec §1.2), Flax Linen.

One MLP encoder reads source-1 features only; one decoder per source
reconstructs that source's features from the shared latent (cross-source
reconstruction, no fusion), so the latent stays computable from source 1
alone at query time. Widths as the released code: d1 -> 512 -> 512 -> 256
-> 256 -> latent (linear output), each decoder the mirror image; ReLU
between layers, no normalisation or dropout.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


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
  hidden: Sequence[int] = (512, 512, 256, 256)
  latent: int = 64

  def setup(self):
    self.encoder = MLP(tuple(self.hidden) + (self.latent,))
    self.decoders = [MLP(tuple(reversed(self.hidden)) + (d,))
                     for d in self.source_dims]

  def encode(self, x1):
    return self.encoder(x1)

  def __call__(self, x1):
    z = self.encoder(x1)
    return z, [dec(z) for dec in self.decoders]


def reconstruction_loss(recons, targets, weights):
  """sum_s weights[s] * mean((recon_s - x_s)^2) (torch MSE: mean over b*d).

  The released AE stage weighs (source 1, source 2) as (0.1, 1); the
  hashing stage as (1, 1) (§1.2, §1.5).
  """
  return sum(w * jnp.mean((r - t) ** 2)
             for r, t, w in zip(recons, targets, weights))
