r"""CSQ: L. Yuan, T. Wang, X. Zhang, F. E. H. Tay, Z. Jie, W. Liu and J. Feng,
"Central Similarity Quantization for Efficient Image and Video Retrieval",
CVPR 2020 (arXiv:1908.00347).

A symmetric deep baseline (docs/methods/baselines.md §4). Every class gets
a fixed hash centre c_k in {-1, 1}^K, far from the others in Hamming
distance: the rows of [H_K; -H_K] (H_K the Hadamard matrix) when K = bits
is a power of two and 2K >= C, else Bernoulli(0.5) bits (CSQ §3.2),
deterministic in (bits, num_classes, seed). An image's centre c'_i is its
class's centre; with several labels, the centroid of their centres,
binarised (ties from a fixed random vector). The relaxed code u = tanh(.)
is pulled to its centre (Eq. 6 with the quantization term):

  L = (1 / (n K)) sum_i sum_k -[c~_ik log u~_ik + (1 - c~_ik) log(1 - u~_ik)]
      + lam (1 / (n K)) sum_i || |u_i| - 1 ||_2^2,
  u~ = (u + 1) / 2,  c~ = (c' + 1) / 2,

with lam = 1e-4 (DeepHash-pytorch's CSQ; hashjax/losses/baselines.py:csq_loss).
"""
import jax.numpy as jnp

from hashjax.losses import baselines
from hashjax.models import encoders
from hashjax.models import heads


def make_model(config, ctx):
  """encoder -> tanh hash layer, no classifier."""
  del ctx
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return heads.HashModel(encoder=encoder, normalize=normalize,
                         bits=config.bits, num_classes=None)


def init_state(config, ctx):
  """The hash centres [C, bits] and the multi-label tie-break vector."""
  centres, fallback = baselines.csq_centres(config.bits, ctx.num_classes,
                                            config.seed)
  return {'centres': jnp.asarray(centres), 'fallback': jnp.asarray(fallback)}


def loss_fn(outputs, batch, state, hp):
  targets = baselines.csq_targets(batch['label'], state['centres'],
                                  state['fallback'])
  return baselines.csq_loss(outputs['u'], targets, batch['mask'], lam=hp.lam)
