"""DGSSH: Deep Global Semantic Structure-preserving Hashing (Zhou et al.,
ESWA 238, 2024), paper-intent mode.

docs/methods/dgssh.md explains the paper and the released code. Encoder (Swin-T in the paper; any hashjax
encoder) -> tanh hash head u, classifier on u. Database codes V are a free
+-1 variable updated by one DCC sweep per round over the whole database
(§1.5; the hooks and the DCC are AHCL's, hashjax/methods/_bank.py). The network loss
(§1.4, §4 "paper intent"):

  L = alpha * CE_ls(logits, y)                       label smoothing (§1.4.3)
    + w_sim * L_sim(u)                               class-balanced DPSH (§1.4.1)
    + w_quant * mean_i ||v_i - u_i||^2 / c           pull toward V (§1.4.2)
    + w_asym * mean_ij (u_i.v_j - c S_ij)^2 / c^2    ADSH term, optional (§4)
    + w_triplet * (L_triplet + lam_match * L_match)  corrective triplet (§1.4.4)

The corrective triplet loss acts on L2-normalised features (the released
code's space, d <= 2) or codes, with a margin below 2 (0.6, the value of the
code's earlier version) and a differentiable L_match.

`reduction='released'` is what the released code trains (§1.4.2, §1.6):

  L = alpha * CE_ls + (L_sim' + beta * sum_i ||v_i - u_i||^2) / (N B)
      [+ 2 * L_ct with margin 10, gamma 10, no L_match gradient, when on]

where L_sim' is the class-balanced DPSH term with the code's
diagonal-gradient quirk (§1.4.1), beta = `lam` (200, the V step's weight
too) and N the database size; there is no u-V inner-product term.
configs/dgssh.py:released sets this up with the code's schedule.

Class-balanced batches (train.sampler='class_balanced', hashjax/data/sampling.py)
give every anchor a positive; the released code's random batches do not.
"""
import jax.numpy as jnp

from hashjax.losses import metric
from hashjax.losses import pairwise
from hashjax.losses import similarity
# The learned database codes V and their DCC update: AHCL's.
from hashjax.methods._bank import (  # pylint: disable=unused-import
    DATABASE_CODES, database_codes, end_round, init_state, start_round,
    update_state)


def _embedding(outputs, space):
  x = outputs['features'] if space == 'features' else outputs['u']
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def loss_fn(outputs, batch, state, hp):
  """The DGSSH objective (module docstring): paper intent or released."""
  u, mask, labels = outputs['u'], batch['mask'], batch['label']
  c = u.shape[-1]
  v = state['V']
  rows = jnp.clip(batch['index'], 0)
  b = jnp.maximum(mask.sum(), 1.0)
  ce = pairwise.classification_loss(outputs['logits'], labels, mask,
                                    multi_label=hp.multi_label,
                                    smoothing=hp.label_smoothing)
  released = hp.reduction == 'released'
  sim_loss = pairwise.class_balanced_pairwise_nll(
      u, labels, mask, diagonal_gradient=released)
  anchor = jnp.sum(((v[rows] - u) ** 2).sum(-1) * mask)  # sum_i ||v - u||^2
  if released:
    # §1.4.2: (L_sim + beta sum_i ||v - u||^2) / (N B); L_sim ~ 0 there.
    asy = (sim_loss + hp.lam * anchor) / (v.shape[0] * b)
    terms = {'ce': ce, 'sim': sim_loss, 'quant': anchor / (b * c), 'asy': asy}
    loss = hp.alpha * ce + asy
  elif hp.reduction == 'paper':
    quant = anchor / (b * c)
    terms = {'ce': ce, 'sim': sim_loss, 'quant': quant}
    loss = hp.alpha * ce + hp.w_sim * sim_loss + hp.w_quant * quant
  else:
    raise ValueError(f"loss.reduction must be 'paper' or 'released', got "
                     f'{hp.reduction!r}.')
  if hp.w_asym and not released:
    s = similarity.soft_similarity(
        similarity.label_similarity(labels, state['labels']), state['r'])
    _, parts = pairwise.asymmetric_loss(u, v, s, v[rows], mask, lam=0.0,
                                        num_database=v.shape[0])
    terms['asym'] = parts['pair'] / c ** 2
    loss += hp.w_asym * terms['asym']
  if hp.w_triplet:
    ct, parts = metric.corrective_triplet_loss(
        labels, _embedding(outputs, hp.triplet_space), margin=hp.margin,
        lam=hp.lam_match, mask=mask, match_grad=hp.match_grad,
        no_positive=hp.no_positive)
    terms.update(triplet=parts['triplet'], match=parts['match'])
    loss += hp.w_triplet * ct
  return loss, terms
