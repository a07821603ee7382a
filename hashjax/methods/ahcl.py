"""AHCL: Asymmetric Hash Code Learning (Song et al., TGRS 2022).

Spec: ../shared/specs/ahcl.md. Query codes are sign(u) of the network;
database codes V are learned directly (DATABASE_CODES = 'bank'):
  * loss (§1.5): ADSH pair + quantization loss against V, normalised by
    n * b, plus gamma * softmax CE of a classifier on u;
  * soft similarity S in {1, -r}, r = #similar / #dissimilar in the sampled
    block (§1.4; `soft_similarity=False` gives the ADSH paper's {1, -1});
  * rounds = ADSH outer iterations (§1.6): a sampled subset Omega visited
    `epochs_per_round` times in one order; U collects the network outputs of
    the round (from the forward pass before each step, last pass wins);
  * after each round, one DCC sweep updates V (hashjax/bank.py, §1.7).
V starts at zero (§4 item 5), so the pair term is inactive in round 0.
The training set is the database (§1.2): V has one row per training image.
"""
import jax.numpy as jnp

from hashjax import bank as bank_lib
from hashjax.losses import pairwise
from hashjax.losses import similarity

DATABASE_CODES = 'bank'


def loss_fn(outputs, batch, state, *, lam, gamma, soft_similarity=True,
            **unused):
  del unused
  u, mask = outputs['u'], batch['mask']
  rows = jnp.clip(batch['index'], 0)
  s0 = similarity.label_similarity(batch['label'], state['labels'])
  sim = similarity.soft_similarity(s0, state['r'])
  lp, parts = pairwise.asymmetric_loss(
      u, state['V'], sim, state['V'][rows], mask, lam=lam,
      num_database=state['V'].shape[0])
  ce = pairwise.softmax_cross_entropy(outputs['logits'], batch['label'], mask)
  loss = lp + gamma * ce
  return loss, dict(parts, ce=ce, r=state['r'])


# The bank hooks are shared with DGSSH (hashjax/bank.py): V, U, r; U rows
# written in the step (§1.6); r per round (§1.4); one DCC sweep per round
# (§1.7).
init_state = bank_lib.init_state
update_state = bank_lib.update_state
start_round = bank_lib.start_round
end_round = bank_lib.end_round
database_codes = bank_lib.database_codes
