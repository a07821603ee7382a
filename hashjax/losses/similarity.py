"""Label similarity for supervised hashing.

Relevance and similarity share one rule: two images are similar when their
multi-hot labels share a class (`a @ b.T > 0`).
"""
import jax.numpy as jnp


def label_similarity(labels_a, labels_b):
  """S0[i, j] = 1 if labels_a[i] and labels_b[j] share a class, else 0.

  Args:
    labels_a: [A, C] multi-hot. labels_b: [B, C] multi-hot.
  Returns:
    [A, B] float32 in {0, 1}.
  """
  return (labels_a @ labels_b.T > 0).astype(jnp.float32)


def similar_ratio(labels_rows, labels_db, row_mask=None):
  """r = #similar / #dissimilar pairs in the (rows x database) block.

  ADSH's soft constraint (AHCL spec §1.4) recomputes r per sampled block.
  Computed from per-class counts when labels are one-hot (O(n C), so
  n = 10^6 costs nothing); the multi-hot case falls back to the dense block.

  Args:
    labels_rows: [m, C]; labels_db: [n, C]; row_mask: optional [m] weights
      selecting the rows that belong to the block.
  """
  if row_mask is None:
    row_mask = jnp.ones(labels_rows.shape[0], jnp.float32)
  one_hot = jnp.all(labels_rows.sum(1) == 1) & jnp.all(labels_db.sum(1) == 1)
  counts = (row_mask @ labels_rows) @ labels_db.sum(0)
  dense = row_mask @ label_similarity(labels_rows, labels_db).sum(1) \
      if labels_rows.shape[0] * labels_db.shape[0] <= 1 << 26 else counts
  pos = jnp.where(one_hot, counts, dense)
  total = row_mask.sum() * labels_db.shape[0]
  return pos / jnp.maximum(total - pos, 1.0)


def soft_similarity(s0, r):
  """ADSH's soft similarity: +1 for similar pairs, -r for dissimilar ones.

  AHCL spec §1.4: S = S0 (1 + r) - r. With r = 1 this is the {-1, +1}
  similarity of the ADSH paper.
  """
  return s0 * (1.0 + r) - r
