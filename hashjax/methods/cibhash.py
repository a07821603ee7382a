r"""CIBHash: Z. Qiu, Q. Su, Z. Ou, J. Yu and C. Chen, "Unsupervised Hashing
with Contrastive Information Bottleneck", IJCAI 2021 (arXiv:2105.06138).

An unsupervised deep baseline (docs/methods/baselines.md §7); no label is
read. Two random views x^(1), x^(2) of each image are encoded into
Bernoulli probabilities p = sigmoid(W f(x) + v) and stochastic codes
b = sign(p - eps), eps ~ U(0, 1) (straight-through gradient). The loss
(the paper's Eq. 13, as the released code trains it):

  L = (1/2b) sum_{a in both views} -log( exp(cos(b_a, b_a+) / tau)
                                         / sum_{k != a} exp(cos(b_a, b_k) / tau) )
      + beta (KL(p^(1) || p^(2)) + KL(p^(2) || p^(1))) / 2,

NT-Xent between the codes of the two views plus the information
bottleneck's KL between the views' bit distributions (the second argument
without gradient), tau = 0.3, beta = 0.001 (the released defaults).

Two views per step with no trainer change: the model draws them in-graph
(hashjax/data/jax_augment.py) from the pipeline's image with the step's
'dropout' rng (hashjax/models/baseline_heads.py:TwoViewHashModel). The
codes of evaluation are sign(p - 1/2) of the un-augmented image.
"""
import functools

from hashjax.data import jax_augment
from hashjax.losses import baselines
from hashjax.models import baseline_heads
from hashjax.models import encoders


def make_model(config, ctx):
  del ctx
  hp = config.loss
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  augment = functools.partial(jax_augment.random_view, crop_min=hp.crop_min,
                              jitter=hp.jitter, jitter_p=hp.jitter_p,
                              gray_p=hp.gray_p)
  return baseline_heads.TwoViewHashModel(encoder=encoder, normalize=normalize,
                                         bits=config.bits, augment=augment)


def loss_fn(outputs, batch, state, hp):
  del state
  return baselines.cibhash_loss(
      outputs['z_i'], outputs['z_j'], outputs['p_i'], outputs['p_j'],
      batch['mask'], temperature=hp.temperature, weight=hp.weight)
