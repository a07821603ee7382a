"""Exact Hamming top-k over bit-packed codes: XOR + popcount, select by
counting.

Ranking rule (the same as evaluation, hashjax/evaluation/ranking.py):
ascending Hamming distance, ties by database index, lower first.

A sort over 10^6 distances is hopeless on XLA:CPU (../shared/STACK.md:
lax.top_k runs at 3-4 queries/s), but a distance is a small integer
(0..bits), so the k-th smallest can be found by counting. For a block of
queries against the database:

  1. distances to every code are reduced, in the same fused loop, to the
     minimum per group of `group` consecutive codes (cmin: [B, N/group]);
  2. t = the k-th smallest group minimum, by a histogram of cmin. The k
     groups below it hold >= k codes within distance t, so the k-th nearest
     distance D_k <= t, and every code at distance <= D_k lies in a group
     with cmin <= t;
  3. every group with cmin < t (fewer than k) and then the lowest-index
     groups with cmin == t, `max_groups` groups in all, are gathered in
     index order and their distances recomputed. Each holds a code within
     t, so they hold >= k codes that are closer than t, or at t and below
     the last group taken: the top k are among them, ties included. The
     exact top-k of the candidates is found by a histogram again, ties to
     the lower index.
No sort touches more than k entries. tests/search_test.py checks the
result against a stable sort, duplicates and ties included.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _distances(q, db):
  """[B, W] x [..., W] uint32 -> int32 popcount(q ^ db) summed over words."""
  x = jax.lax.population_count(q[(slice(None),) + (None,) * (db.ndim - 1)]
                               ^ db[None])
  return x.sum(-1, dtype=jnp.int32)


def _bincount_rows(x, length):
  return jax.vmap(lambda r: jnp.bincount(r, length=length))(x)


def _first_k(dist, index, k, bits):
  """Exact top-k of each row of (dist, index): ascending distance, ties by
  index. `index` ascends along each row; invalid entries have dist > bits.
  Returns (dist [B, k], index [B, k]) sorted."""
  hist = _bincount_rows(dist, bits + 2)
  cum = jnp.cumsum(hist, axis=1)
  d_k = jnp.argmax(cum >= k, axis=1)                    # k-th distance
  below = jnp.where(d_k > 0, jnp.take_along_axis(
      cum, jnp.maximum(d_k - 1, 0)[:, None], 1)[:, 0], 0)
  at = dist == d_k[:, None]
  take = (dist < d_k[:, None]) | (at & (jnp.cumsum(at, axis=1)
                                        <= (k - below)[:, None]))
  pos = jax.vmap(lambda t: jnp.nonzero(t, size=k, fill_value=0)[0])(take)
  d = jnp.take_along_axis(dist, pos, 1)
  i = jnp.take_along_axis(index, pos, 1)
  # k entries in index order -> (distance, index) order; k is small.
  d, i = jax.lax.sort((d, i), dimension=1, num_keys=2)
  return d, i


@functools.partial(jax.jit, static_argnames=('k', 'bits', 'group',
                                             'max_groups'))
def topk_block(q, db, n_valid, *, k, bits, group=32, max_groups=128):
  """Exact top-k for a block of queries.

  Args:
    q: [B, W] uint32 packed queries.
    db: [N, W] uint32 packed database, N a multiple of `group` (pad with
      anything; rows >= n_valid never match).
    n_valid: number of real database rows (int32 scalar).
    k: results per query, k <= n_valid.
    bits: code length.
  Returns:
    (distances [B, k] int32, indices [B, k] int32), ascending.
  """
  n, w = db.shape
  g = n // group
  far = bits + 1
  valid = jnp.arange(n) < n_valid

  b = q.shape[0]
  m = max(max_groups, k)
  # One fused pass: distances reduced to their minimum per group.
  cmin = jnp.where(valid[None], _distances(q, db), far).reshape(
      b, g, group).min(-1)                                    # [B, G]
  cum = jnp.cumsum(_bincount_rows(cmin, bits + 2), axis=1)
  t = jnp.argmax(cum >= min(k, g), axis=1)                    # D_k <= t
  below = jnp.where(t > 0, jnp.take_along_axis(
      cum, jnp.maximum(t - 1, 0)[:, None], 1)[:, 0], 0)       # < k groups
  # Every group with cmin < t, then the lowest-index groups with cmin == t
  # up to m groups in all. Each holds >= 1 code within t, so the
  # candidates hold >= k codes that are either closer than t or at t and
  # below the last group taken: exactly the top k, ties by index.
  at = cmin == t[:, None]
  take = (cmin < t[:, None]) | (at & (jnp.cumsum(at, axis=1)
                                      <= (m - below)[:, None]))
  groups = jax.vmap(lambda tk: jnp.nonzero(tk, size=m, fill_value=g)[0])(
      take)                                                   # [B, m]
  rows = (groups[:, :, None] * group + jnp.arange(group)).reshape(b, -1)
  ok = (rows < n_valid) & (jnp.repeat(groups, group, axis=1) < g)
  safe = jnp.where(ok, rows, 0)
  cand = jax.vmap(lambda qq, r: _distances(qq[None], db[r])[0])(q, safe)
  cand = jnp.where(ok, cand, far)
  return _first_k(cand, jnp.where(ok, rows, n), k, bits)


def search(q_packed, db_packed, k, bits, *, query_block=32, group=32,
           max_groups=128):
  """Exact top-k of every query: (distances [Q, k], indices [Q, k]) numpy.

  k is clipped to the database size. Queries go in blocks of
  `query_block`.
  """
  db = np.asarray(db_packed, np.uint32)
  n = db.shape[0]
  k = int(min(k, n))
  if k < 1:
    raise ValueError('search needs a non-empty database and k >= 1.')
  pad = (-n) % group
  if pad:
    db = np.concatenate([db, np.zeros((pad, db.shape[1]), np.uint32)])
  db = jnp.asarray(db)
  q = np.asarray(q_packed, np.uint32)
  out_d, out_i = [], []
  for s in range(0, len(q), query_block):
    block = q[s:s + query_block]
    b = len(block)
    if b < query_block:   # one compiled shape
      block = np.concatenate([block, np.zeros((query_block - b, q.shape[1]),
                                              np.uint32)])
    d, i = topk_block(jnp.asarray(block), db, jnp.int32(n), k=k, bits=bits,
                      group=group, max_groups=max_groups)
    out_d.append(np.asarray(d)[:b])
    out_i.append(np.asarray(i)[:b])
  return np.concatenate(out_d), np.concatenate(out_i)
