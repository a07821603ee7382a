r"""DSH: H. Liu, R. Wang, S. Shan and X. Chen, "Deep Supervised Hashing for
Fast Image Retrieval", CVPR 2016.

A symmetric deep baseline (docs/methods/baselines.md §3). The network's
real-valued outputs b (no tanh; the codes are sign(b)) are trained with a
contrastive loss over every pair of the batch (the paper's online pair
generation) and a regulariser pulling each output towards +-1 (Eq. 4):

  L_r(b_1, b_2, y) = 1/2 (1 - y) ||b_1 - b_2||_2^2
                   + 1/2 y max(m - ||b_1 - b_2||_2^2, 0)
                   + alpha (|| |b_1| - 1 ||_1 + || |b_2| - 1 ||_1),

y = 0 for similar and 1 for dissimilar pairs, margin m = 2 k (k = bits)
and alpha = 0.01, averaged over the batch's pairs
(hashjax/losses/baselines.py:dsh_loss).
"""
from hashjax.losses import baselines
from hashjax.losses import similarity
from hashjax.models import baseline_heads
from hashjax.models import encoders


def make_model(config, ctx):
  """encoder -> linear hash layer (real-valued outputs), no classifier."""
  del ctx
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return baseline_heads.ScaledHashModel(encoder=encoder, normalize=normalize,
                                        bits=config.bits, activation='linear')


def loss_fn(outputs, batch, state, hp):
  del state
  u = outputs['u']
  sim = similarity.label_similarity(batch['label'], batch['label'])
  margin = hp.margin_per_bit * u.shape[-1]
  return baselines.dsh_loss(u, sim, batch['mask'], margin=margin,
                            alpha=hp.alpha)
