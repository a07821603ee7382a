"""AHCL: Asymmetric Hash Code Learning (Song et al., TGRS 2022).

docs/methods/ahcl.md explains the paper and the released code. Query codes are sign(u) of the network;
database codes V are learned directly (DATABASE_CODES = 'bank'):
  * loss (§1.5): ADSH pair + quantization loss against V, normalised by
    n * b, plus gamma * softmax CE of a classifier on u (a sigmoid CE per
    class on multi-label data);
  * soft similarity S in {1, -r}, r = #similar / #dissimilar in the sampled
    block (§1.4; `soft_similarity=False` gives the ADSH paper's {1, -1});
  * rounds = ADSH outer iterations (§1.6): a sampled subset Omega visited
    `epochs_per_round` times in one order; U collects the network outputs of
    the round (from the forward pass before each step, last pass wins);
  * after each round, one DCC sweep updates V (hashjax/solvers/dcc.py, §1.7).
V starts at zero (§4 item 5), so the pair term is inactive in round 0.
The training set is the database (§1.2): V has one row per training image.
"""
import jax.numpy as jnp

from hashjax.losses import pairwise
from hashjax.losses import similarity
# The learned database codes, shared with DGSSH (hashjax/methods/_bank.py):
# V, U, r; U rows written in the step (§1.6); r per round (§1.4); one DCC
# sweep per round (§1.7). make_model: the default encoder -> tanh hash +
# classifier.
from hashjax.methods._bank import (  # pylint: disable=unused-import
    DATABASE_CODES, database_codes, end_round, init_state, start_round,
    update_state)


def asymmetric_loss(outputs, batch, state, hp):
  """ADSH's pair + quantization loss of u against V (§1.5), with the soft
  similarity of the sampled block: (loss, its parts)."""
  rows = jnp.clip(batch['index'], 0)
  s0 = similarity.label_similarity(batch['label'], state['labels'])
  sim = similarity.soft_similarity(s0, state['r'])
  return pairwise.asymmetric_loss(
      outputs['u'], state['V'], sim, state['V'][rows], batch['mask'],
      lam=hp.lam, num_database=state['V'].shape[0])


def loss_fn(outputs, batch, state, hp):
  """ADSH pair + quantization loss against V, plus gamma * CE (§1.5)."""
  mask = batch['mask']
  lp, parts = asymmetric_loss(outputs, batch, state, hp)
  ce = pairwise.classification_loss(outputs['logits'], batch['label'], mask,
                                    multi_label=hp.multi_label)
  loss = lp + hp.gamma * ce
  return loss, dict(parts, ce=ce, r=state['r'])
