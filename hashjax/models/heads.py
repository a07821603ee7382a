"""Hash and class heads on top of an encoder: `HashModel`.

The model takes uint8-range images and normalises them for its encoder
(the encoder's pretrained weights fix the normalisation), then returns a dict
`{'features', 'u', 'logits'}`: `u` is the relaxed code tanh(W f + b) in
(-1, 1)^bits and `logits` the class scores computed from `u` (docs/methods/ahcl.md §1.3:
the classifier sits on the tanh output, not on the features).
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp


def torch_linear_init(scale=1.0):
  """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return nn.initializers.variance_scaling(scale / 3.0, 'fan_in', 'uniform')


class TorchDense(nn.Module):
  """Dense layer with PyTorch's default init for weight *and* bias."""
  features: int

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    bound = 1.0 / jnp.sqrt(fan_in)
    kernel = self.param('kernel', torch_linear_init(), (fan_in, self.features))
    bias = self.param(
        'bias', lambda k, s: nn.initializers.uniform(2 * bound)(k, s) - bound,
        (self.features,))
    return x @ kernel + bias


class HashModel(nn.Module):
  """encoder -> features -> tanh hash layer (u) -> optional classifier.

  Attributes:
    encoder: a Linen module returning {'features': [B, D]}.
    normalize: function mapping float images in [0, 255] to encoder input.
    bits: code length.
    num_classes: classifier outputs on u; None = no classifier.
  """
  encoder: nn.Module
  normalize: Any
  bits: int
  num_classes: Optional[int] = None

  @nn.compact
  def __call__(self, images, train: bool = False):
    x = self.normalize(images.astype(jnp.float32))
    features = self.encoder(x, train=train)['features']
    u = jnp.tanh(TorchDense(self.bits, name='hash')(features))
    out = {'features': features, 'u': u}
    if self.num_classes:
      out['logits'] = TorchDense(self.num_classes, name='cls')(u)
    return out
