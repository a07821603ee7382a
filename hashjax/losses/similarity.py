"""Label similarity for supervised hashing.

Relevance and similarity share one rule: two images are similar when their
multi-hot labels share a class (`a @ b.T > 0`).
"""
import jax
import jax.numpy as jnp


def label_similarity(labels_a, labels_b):
  """S0[i, j] = 1 if labels_a[i] and labels_b[j] share a class, else 0.

  Args:
    labels_a: [A, C] multi-hot. labels_b: [B, C] multi-hot.
  Returns:
    [A, B] float32 in {0, 1}.
  """
  return (labels_a @ labels_b.T > 0).astype(jnp.float32)


# Rows of a dense similarity block computed at once: bounds memory to about
# _BLOCK_ENTRIES floats whatever the database size.
_BLOCK_ENTRIES = 1 << 24


def is_one_hot(*labels):
  """True when every row of every [*, C] label array has exactly one 1."""
  return jnp.all(jnp.stack([jnp.all(l.sum(1) == 1) for l in labels]))


def _chunked(labels_rows, labels_db, values, init, step):
  """Scans row chunks of S0 = sim(labels_rows, labels_db), O(chunk n) memory.

  Rows are padded with zero labels (similar to nothing) and zero values.
  `step(acc, s0_chunk, values_chunk)` returns the new accumulator.
  """
  m, n = labels_rows.shape[0], labels_db.shape[0]
  chunk = max(1, min(m, _BLOCK_ENTRIES // max(n, 1)))
  pad = -m % chunk
  rows = jnp.pad(labels_rows, ((0, pad), (0, 0))).reshape(
      -1, chunk, labels_rows.shape[1])
  vals = jnp.pad(values, ((0, pad),) + ((0, 0),) * (values.ndim - 1))
  vals = vals.reshape((-1, chunk) + values.shape[1:])

  def body(acc, xs):
    return step(acc, label_similarity(xs[0], labels_db), xs[1]), None

  return jax.lax.scan(body, init, (rows, vals))[0]


def similar_pairs(labels_rows, labels_db, row_weights):
  """sum_i w_i #{j : S0_ij = 1}: weighted count of similar pairs.

  One-hot labels use per-class counts (O((m + n) C)); multi-hot labels scan
  row chunks of S0 with bounded memory.
  """
  counts = (row_weights @ labels_rows) @ labels_db.sum(0)
  return jax.lax.cond(
      is_one_hot(labels_rows, labels_db), lambda: counts,
      lambda: _chunked(labels_rows, labels_db, row_weights,
                       jnp.zeros((), jnp.float32),
                       lambda acc, s0, w: acc + w @ s0.sum(1)))


def similarity_t_matmul(labels_rows, labels_db, u):
  """S0^T u: [n, c] for S0 = sim(labels_rows, labels_db), u: [m, c].

  One-hot: Y_db (Y_rows^T u), O((n + m) C c). Multi-hot: chunked scan.
  """
  factored = labels_db @ (labels_rows.T @ u)
  return jax.lax.cond(
      is_one_hot(labels_rows, labels_db), lambda: factored,
      lambda: _chunked(labels_rows, labels_db, u, jnp.zeros_like(factored),
                       lambda acc, s0, x: acc + s0.T @ x))


def similar_ratio(labels_rows, labels_db, row_mask=None):
  """r = #similar / #dissimilar pairs in the (rows x database) block.

  ADSH's soft constraint (docs/methods/ahcl.md §1.4) recomputes r per sampled block.

  Args:
    labels_rows: [m, C]; labels_db: [n, C]; row_mask: optional [m] weights
      selecting the rows that belong to the block.
  """
  if row_mask is None:
    row_mask = jnp.ones(labels_rows.shape[0], jnp.float32)
  pos = similar_pairs(labels_rows, labels_db, row_mask)
  total = row_mask.sum() * labels_db.shape[0]
  return pos / jnp.maximum(total - pos, 1.0)


def soft_similarity(s0, r):
  """ADSH's soft similarity: +1 for similar pairs, -r for dissimilar ones.

  docs/methods/ahcl.md §1.4: S = S0 (1 + r) - r. With r = 1 this is the {-1, +1}
  similarity of the ADSH paper.
  """
  return s0 * (1.0 + r) - r
