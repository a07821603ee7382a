"""Metric-learning losses: batch-hard triplets and the corrective triplet loss.

DGSSH (docs/methods/dgssh.md §1.4.4) uses the corrective triplet loss
of Yu et al., "Correcting the Triplet Selection Bias for Triplet Loss", ECCV
2018: L = L_triplet + lam * L_match, where L_match pulls the per-class mean
of the mined hardest positives/negatives toward the per-class mean of the
batch. The released code computes L_match in numpy on detached tensors (no
gradient) and counts every anchor: one without a positive with d_ap = 0, one
without a negative (a batch of a single class) with d_an = max_j d_ij, i.e.
a hinge of exactly the margin. Here L_match is differentiable and such
anchors are excluded unless `no_positive='released'` asks for the code's
behaviour (see `batch_hard_triplet_loss`).

All functions take the *global* batch; labels are multi-hot [B, C] and two
samples are the same class when they share a label. `mask` [B] excludes
padding rows as anchors and as candidates.
"""
import jax
import jax.numpy as jnp

from hashjax.losses import similarity


def pairwise_distances(emb, squared=False):
  """[B, B] Euclidean distances with a finite gradient at d = 0.

  Args:
    emb: [B, D] embeddings.
    squared: return squared distances.
  """
  sq = jnp.sum(emb ** 2, -1)
  d2 = jnp.maximum(sq[:, None] - 2.0 * emb @ emb.T + sq[None, :], 0.0)
  if squared:
    return d2
  zero = d2 == 0.0
  # sqrt'(0) is infinite: take sqrt of 1 there and zero the result after.
  return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, d2)))


def hardest_triplets(labels, dist, mask=None):
  """Batch-hard mining: hardest positive and hardest negative per anchor.

  Args:
    labels: [B, C] multi-hot. dist: [B, B] distances. mask: [B] or None.

  Returns:
    dict with 'pos' [B] index of the farthest same-class sample (j != i),
    'neg' [B] index of the closest other-class sample, 'has_pos' and
    'has_neg' [B] bool (False where the batch offers none, or for padding).
    Where there is none, the indices are the released code's: 'pos' the
    first unpadded row (its argmax over an all-zero row), 'neg' the anchor
    itself (its argmin of d_ij + max_j d_ij, at d_ii = 0).
  """
  b = dist.shape[0]
  mask = jnp.ones(b, bool) if mask is None else mask > 0
  same = similarity.label_similarity(labels, labels) > 0
  valid = mask[None, :] & mask[:, None]
  pos_ok = same & ~jnp.eye(b, dtype=bool) & valid
  neg_ok = ~same & valid
  has_pos = pos_ok.any(1) & mask
  has_neg = neg_ok.any(1) & mask
  pos = jnp.argmax(jnp.where(pos_ok, dist, -jnp.inf), axis=1)
  pos = jnp.where(pos_ok.any(1), pos, jnp.argmax(mask))
  neg = jnp.argmin(jnp.where(neg_ok, dist, jnp.inf), axis=1)
  neg = jnp.where(neg_ok.any(1), neg, jnp.arange(b))
  return {'pos': pos, 'neg': neg, 'has_pos': has_pos, 'has_neg': has_neg}


def batch_hard_triplet_loss(labels, emb, *, margin, squared=False, mask=None,
                            no_positive='skip'):
  """mean_i max(d(a_i, p_i) - d(a_i, n_i) + margin, 0) over valid anchors.

  Args:
    labels: [B, C]; emb: [B, D]; margin: hinge margin in the distance
      space of `emb` (for unit-norm embeddings d <= 2, so a margin >= 2, like
      the released code's 10, never lets the hinge close; §1.4.4).
    no_positive: what to do with anchors that lack a positive or a
      negative (padding rows are never anchors or candidates).
      'skip' (paper intent) drops them: the mean is over anchors with both,
        and a batch of one class (no negative) or of distinct labels (no
        positive) gives loss 0 with zero gradient.
      'released' reproduces the released code's `corrective_triplet_loss`
        / `batch_hard_triplet_loss`: every unpadded anchor counts and the
        mean is over the n unpadded rows (B in the code, which has no
        padding). Without a positive, d_ap = 0 (p = the first unpadded
        row); without a negative (single-label data: a batch of one
        class), d_an = max_j d_ij over the unpadded rows, so the hinge is
        max(d_ap - max_j d_ij + margin, 0) = margin with zero gradient,
        and n(i) = i. With both missing (n = 1) the hinge is the margin.

  Returns:
    (loss, aux) with aux = the mining dict plus 'd_ap', 'd_an', 'valid'.
  """
  dist = pairwise_distances(emb, squared)
  mined = hardest_triplets(labels, dist, mask)
  idx = jnp.arange(dist.shape[0])
  d_ap = jnp.where(mined['has_pos'], dist[idx, mined['pos']], 0.0)
  d_an = dist[idx, mined['neg']]
  if no_positive == 'skip':
    valid = mined['has_pos'] & mined['has_neg']
  elif no_positive == 'released':
    valid = jnp.ones(dist.shape[0], bool) if mask is None else mask > 0
    # The code adds max_k d_ik to same-class candidates; with no negative
    # the min over j is at j = i: d_an = 0 + max_k d_ik (gradient through
    # the farthest k).
    far = jnp.argmax(jnp.where(valid[None, :], dist, -jnp.inf), axis=1)
    d_an = jnp.where(mined['has_neg'], d_an, dist[idx, far])
  else:
    raise ValueError(f"no_positive must be 'skip' or 'released', got "
                     f'{no_positive!r}.')
  hinge = jnp.maximum(d_ap - d_an + margin, 0.0)
  count = jnp.maximum(valid.sum(), 1)
  loss = jnp.sum(jnp.where(valid, hinge, 0.0)) / count
  return loss, dict(mined, d_ap=d_ap, d_an=d_an, valid=valid)


def _class_means(labels, emb, weights):
  """Per-class weighted means [C, D] and the class counts [C]."""
  w = labels * weights[:, None]
  counts = w.sum(0)
  means = (w.T @ emb) / jnp.maximum(counts, 1e-12)[:, None]
  return means, counts


def distribution_match(labels, emb, mined, *, squared=False, mask=None):
  """L_match = sum_k ||mu_k - nu_k|| (docs/methods/dgssh.md §1.4.4), differentiable.

  mu_k: mean embedding of the batch samples of class k; nu_k: mean of the
  multiset of mined hardest positives and negatives of the valid anchors
  whose label is k. Sum over the classes present in that multiset.

  Args:
    labels: [B, C]; emb: [B, D]; mined: from `batch_hard_triplet_loss`
      (uses 'pos', 'neg', 'valid'); squared: squared norm instead.
  """
  mask = jnp.ones(emb.shape[0]) if mask is None else mask
  mu, _ = _class_means(labels, emb, mask)
  sel = jnp.concatenate([mined['pos'], mined['neg']])
  w_sel = jnp.tile(mined['valid'].astype(emb.dtype), 2)
  nu, counts = _class_means(labels[sel], emb[sel], w_sel)
  gap = jnp.sum((mu - nu) ** 2, -1)
  present = counts > 0
  if not squared:
    # Safe sqrt: a class whose means coincide contributes 0 with gradient 0.
    gap = jnp.where(gap > 0, jnp.sqrt(jnp.where(gap > 0, gap, 1.0)), 0.0)
  return jnp.sum(jnp.where(present, gap, 0.0))


def corrective_triplet_loss(labels, emb, *, margin, lam, squared=False,
                            mask=None, no_positive='skip', match_grad=True):
  """L_triplet + lam * L_match (Yu et al. 2018; docs/methods/dgssh.md §1.4.4).

  match_grad=False reproduces the released code, where L_match is a
  constant (no gradient). L_match uses the anchors `no_positive` keeps:
  with 'released', every unpadded anchor's p(i) and n(i), including the
  fallbacks (first unpadded row; the anchor itself), as the code does; with
  'skip', none in a batch of one class or of distinct labels (L_match = 0).

  Returns:
    (loss, {'triplet': ..., 'match': ..., 'valid_anchors': ...}).
  """
  tri, aux = batch_hard_triplet_loss(labels, emb, margin=margin,
                                     squared=squared, mask=mask,
                                     no_positive=no_positive)
  match = distribution_match(labels, emb, aux, squared=squared, mask=mask)
  if not match_grad:
    match = jax.lax.stop_gradient(match)
  return tri + lam * match, {'triplet': tri, 'match': match,
                             'valid_anchors': aux['valid'].sum()}
