r"""DPSH: W.-J. Li, S. Wang and W.-C. Kang, "Feature Learning based Deep
Supervised Hashing with Pairwise Labels", IJCAI 2016 (arXiv:1511.03855).

A symmetric deep baseline (docs/methods/baselines.md §1): the network's
real-valued output u_i = W^T phi(x_i) + v (no tanh) is the relaxed code and
b_i = sign(u_i) the binary code; database codes are the network's
(DATABASE_CODES = 'encoder'). The paper's objective (Eq. 5):

  min  J = - sum_{s_ij in S} (s_ij theta_ij - log(1 + e^{theta_ij}))
           + eta sum_i ||b_i - u_i||_2^2,          theta_ij = u_i^T u_j / 2,

with s_ij = 1 when images i and j share a label. Pairs are formed between
the batch and the whole training set through a bank U [n, bits] of the last
relaxed code of every training image (as the authors' DPSH-pytorch and
DeepHash-pytorch do): the batch's rows of U are the current u (no gradient
through the bank), rows not yet seen are 0. Both terms are divided by n b
(hashjax/losses/baselines.py:dpsh_loss), which keeps eta's meaning.
"""
import jax
import jax.numpy as jnp

from hashjax.losses import baselines
from hashjax.losses import similarity
from hashjax.methods._bank import update_state  # pylint: disable=unused-import
from hashjax.models import baseline_heads
from hashjax.models import encoders


def make_model(config, ctx):
  """encoder -> linear hash layer (u real-valued), no classifier."""
  del ctx
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return baseline_heads.ScaledHashModel(encoder=encoder, normalize=normalize,
                                        bits=config.bits, activation='linear')


def init_state(config, ctx):
  """U: the bank of relaxed codes (zeros), and the training labels."""
  return {'U': jnp.zeros((ctx.num_train, config.bits), jnp.float32),
          'labels': jnp.asarray(ctx.train_labels, jnp.float32)}


def loss_fn(outputs, batch, state, hp):
  """DPSH's likelihood of the batch x training-set pairs + eta * quant."""
  u, mask = outputs['u'], batch['mask']
  n = state['U'].shape[0]
  rows = jnp.where(mask > 0, batch['index'], n)     # n: padding, dropped.
  bank = state['U'].at[rows].set(jax.lax.stop_gradient(u), mode='drop')
  sim = similarity.label_similarity(batch['label'], state['labels'])
  return baselines.dpsh_loss(u, bank, sim, mask, eta=hp.eta)
