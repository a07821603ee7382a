r"""HashNet: Z. Cao, M. Long, J. Wang and P. S. Yu, "HashNet: Deep Learning
to Hash by Continuation", ICCV 2017 (arXiv:1702.00758).

A symmetric deep baseline (docs/methods/baselines.md §2). The hash layer is
h = tanh(beta z); beta grows during training (continuation) so that h tends
to sign(z). The paper's weighted maximum likelihood (Eq. 5 with the
adaptive sigmoid sigma(alpha x)):

  min  sum_{s_ij in S} w_ij ( log(1 + exp(alpha <h_i, h_j>))
                              - alpha s_ij <h_i, h_j> ),
  w_ij = |S| / |S_1| if s_ij = 1,  |S| / |S_0| if s_ij = 0,

over the batch's pairs (i != j), divided by |S|
(hashjax/losses/baselines.py:hashnet_loss). alpha = 10 / bits is the
released code's `sigmoid_param`; beta = (1 + 0.005 step)^0.5 is the
released code's schedule (init_scale 1, gamma 0.005, power 0.5, per
iteration), with the step counted in the method state. The database codes
are sign(z) of the network (beta does not change a sign).
"""
import jax.numpy as jnp

from hashjax.losses import baselines
from hashjax.losses import similarity
from hashjax.models import baseline_heads
from hashjax.models import encoders


def make_model(config, ctx):
  """encoder -> dense z -> h = tanh(scale z); `scale` is beta."""
  del ctx
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return baseline_heads.ScaledHashModel(encoder=encoder, normalize=normalize,
                                        bits=config.bits, activation='tanh')


def init_state(config, ctx):
  """The continuation's step counter and beta (1 at step 0)."""
  del config, ctx
  return {'step': jnp.zeros((), jnp.int32), 'beta': jnp.ones((), jnp.float32)}


def beta(step, hp):
  """beta = init * (1 + gamma step)^power (the released code's scale)."""
  return hp.beta_init * (1.0 + hp.beta_gamma * step) ** hp.beta_power


def model_inputs(batch, state):
  del batch
  return {'scale': state['beta']}


def update_state(state, outputs, batch, hp):
  """step += 1; beta for the next step."""
  del outputs, batch
  step = state['step'] + 1
  return dict(state, step=step, beta=jnp.asarray(beta(step, hp), jnp.float32))


def loss_fn(outputs, batch, state, hp):
  """Class-balanced pairwise cross-entropy of h = tanh(beta z)."""
  sim = similarity.label_similarity(batch['label'], batch['label'])
  loss, parts = baselines.hashnet_loss(outputs['u'], sim, batch['mask'],
                                       alpha=hp.alpha)
  return loss, dict(parts, beta=state['beta'])
