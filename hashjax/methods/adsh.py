r"""ADSH: Q.-Y. Jiang and W.-J. Li, "Asymmetric Deep Supervised Hashing",
AAAI 2018 (arXiv:1707.08325).

AHCL without its classification term (docs/methods/baselines.md §5,
docs/methods/ahcl.md §1.4-1.7): query codes are sign(u) of the network
(u = tanh(.)), database codes V are learned directly, one DCC sweep per
outer iteration (round), from the shared bank (hashjax/methods/_bank.py).
The objective (Eq. 3), with the released code's normalisation by n b:

  min_{Theta, V} sum_{i in Omega} sum_{j=1..n} (u_i^T v_j - c S_ij)^2
                 + gamma sum_{i in Omega} ||v_i - u_i||_2^2,

S_ij in {1, -1} (`soft_similarity=False`; True gives AHCL's {1, -r}) and
gamma = 200 (the config's `lam`: AHCL's name for the same weight).
"""
from hashjax.methods import ahcl
# The learned database codes V, U, r and the DCC sweep: AHCL's.
from hashjax.methods._bank import (  # pylint: disable=unused-import
    DATABASE_CODES, database_codes, end_round, init_state, start_round,
    update_state)
from hashjax.models import encoders
from hashjax.models import heads


def make_model(config, ctx):
  """encoder -> tanh hash layer; no classifier (ADSH has no CE term)."""
  del ctx
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return heads.HashModel(encoder=encoder, normalize=normalize,
                         bits=config.bits, num_classes=None)


def loss_fn(outputs, batch, state, hp):
  """ADSH's pair + quantization loss against V (AHCL's, gamma = 0)."""
  loss, parts = ahcl.asymmetric_loss(outputs, batch, state, hp)
  return loss, dict(parts, r=state['r'])
