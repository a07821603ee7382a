"""Per-query Hamming-ranking scores in JAX, for accelerators.

The same quantities as the NumPy path of `ranking.retrieval_metrics`
(see ranking.py for the definitions), computed by sorting rather than
counting, which is what accelerators do well:

1. Distances ``(bits - q @ db.T) / 2`` (float32 matmul, exact for ±1 codes
   at ``Precision.HIGHEST``) and shared-label counts ``q_labels @
   db_labels.T`` (0/1 labels, exact) for a chunk of queries.
2. One `jax.lax.sort` of ``(distance, index, gain)`` with the first two as
   keys: the ranking by ascending distance, ties by lower database index,
   with each item's gain carried along.
3. Running sums over the ranking give, at every position, the relevant
   hits and cumulative gain; AP, wAP, ACG, NDCG, P@K, PR by radius (a
   `searchsorted` of the radii in the sorted distances) and by count are
   reductions of those.

Chunks of ``chunk`` queries are padded to a fixed size so the function
compiles once; memory is ``O(chunk * N)``. Integer results (hits,
retrieved counts) equal the NumPy ones exactly; the float sums run in
float64 (`jax.enable_x64`) but in XLA's summation order, so they may
differ from NumPy's sequential sums in the last bits.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Bytes per (query, database item) pair of one chunk's working arrays
# (distance, index, gain, ranked copies, running sums in 64-bit).
BYTES_PER_PAIR = 64


@functools.partial(jax.jit, static_argnames=('topk', 'cuts', 'bits'))
def _chunk(q_codes, q_labels, db_codes, db_labels, *, topk, cuts, bits):
  """Per-query scores of one chunk (see the module docstring)."""
  num_db = db_codes.shape[0]
  dot = jnp.matmul(q_codes, db_codes.T, precision=jax.lax.Precision.HIGHEST)
  dist = ((bits - dot) / 2).astype(jnp.int32)
  gain = jnp.matmul(q_labels, db_labels.T,
                    precision=jax.lax.Precision.HIGHEST).astype(jnp.int32)
  index = jax.lax.broadcasted_iota(jnp.int32, dist.shape, 1)
  dist, _, gain = jax.lax.sort((dist, index, gain), dimension=1, num_keys=2)
  rel = gain > 0
  hits = jnp.cumsum(rel.astype(jnp.int64), axis=1)
  hits0 = jnp.pad(hits, ((0, 0), (1, 0)))  # hits0[:, m]: hits in top m.
  num_rel = hits[:, -1]
  position = jnp.arange(1, num_db + 1, dtype=jnp.float64)
  precision = jnp.where(rel, hits / position, 0.0)
  cum_gain = jnp.cumsum(gain.astype(jnp.int64), axis=1)
  acg = jnp.where(rel, cum_gain / position, 0.0)
  prec_sum = jnp.pad(jnp.cumsum(precision, axis=1), ((0, 0), (1, 0)))
  acg_sum = jnp.pad(jnp.cumsum(acg, axis=1), ((0, 0), (1, 0)))
  gain_sum = jnp.pad(cum_gain, ((0, 0), (1, 0)))

  def mean_over_hits(sums, m):
    h = hits0[:, m]
    return jnp.where(h > 0, sums[:, m] / jnp.maximum(h, 1), 0.0)

  out = {
      'ap_all': mean_over_hits(prec_sum, num_db),
      'wap_all': mean_over_hits(acg_sum, num_db),
      'num_relevant': num_rel,
      'hits': hits0[:, np.asarray(cuts)],
  }
  radii = jnp.arange(bits + 1, dtype=jnp.int32)
  retrieved = jax.vmap(
      lambda d: jnp.searchsorted(d, radii, side='right'))(dist)
  out['retrieved'] = retrieved.astype(jnp.int64)
  out['relevant_retrieved'] = jnp.take_along_axis(hits0, retrieved, axis=1)
  if topk:
    top = max(min(k, num_db) for k in topk)
    discount = 1.0 / jnp.log2(jnp.arange(top, dtype=jnp.float64) + 2.0)
    dcg_sum = jnp.pad(jnp.cumsum(
        (2.0**gain[:, :top] - 1.0) * discount, axis=1), ((0, 0), (1, 0)))
    ideal = -jnp.sort(-gain, axis=1)[:, :top]
    idcg_sum = jnp.pad(jnp.cumsum(
        (2.0**ideal - 1.0) * discount, axis=1), ((0, 0), (1, 0)))
    for k in topk:
      kk = min(k, num_db)
      out[f'ap@{k}'] = mean_over_hits(prec_sum, kk)
      out[f'wap@{k}'] = mean_over_hits(acg_sum, kk)
      out[f'gain@{k}'] = gain_sum[:, kk]  # ACG = this / kk, on the host.
      idcg = idcg_sum[:, kk]
      out[f'ndcg@{k}'] = jnp.where(
          idcg > 0, dcg_sum[:, kk] / jnp.where(idcg > 0, idcg, 1.0), 0.0)
  return out


def per_query_scores(q_codes: np.ndarray, db_codes: np.ndarray,
                     q_labels: np.ndarray, db_labels: np.ndarray, *,
                     topk: list[int], cuts: np.ndarray,
                     memory_budget: int = 1 << 30) -> dict[str, Any]:
  """Per-query scores as NumPy arrays, keyed like `ranking`'s chunks.

  Args:
    q_codes: ``[Q, bits]`` ±1 codes (validated by the caller).
    db_codes: ``[N, bits]`` ±1 codes.
    q_labels: ``[Q, C]`` non-negative labels.
    db_labels: ``[N, C]`` labels.
    topk: cut-offs for AP@K, wAP@K, ACG@K, NDCG@K.
    cuts: ascending cut-offs (each ``<= N``) at which to count hits.
    memory_budget: bytes for one chunk's working arrays.

  Returns:
    Dict of NumPy arrays over queries: ``'ap_all'``, ``'wap_all'``,
    ``'ap@K'``, ``'wap@K'``, ``'acg@K'``, ``'ndcg@K'`` (float64),
    ``'num_relevant'`` ``[Q]``, ``'hits'`` ``[Q, len(cuts)]``,
    ``'retrieved'`` and ``'relevant_retrieved'`` ``[Q, bits + 1]``
    (int64).
  """
  num_queries, bits = q_codes.shape
  num_db = db_codes.shape[0]
  chunk = int(min(num_queries, 1024,
                  max(1, memory_budget // (num_db * BYTES_PER_PAIR))))
  with jax.enable_x64(True):
    db_c = jnp.asarray(db_codes, jnp.float32)
    db_l = jnp.asarray(db_labels > 0, jnp.float32)
    q_c = np.asarray(q_codes, np.float32)
    q_l = np.asarray(q_labels > 0, np.float32)
    parts = []
    for start in range(0, num_queries, chunk):
      stop = min(start + chunk, num_queries)
      pad = chunk - (stop - start)
      qc = np.pad(q_c[start:stop], ((0, pad), (0, 0)), constant_values=1)
      ql = np.pad(q_l[start:stop], ((0, pad), (0, 0)))
      res = _chunk(jnp.asarray(qc), jnp.asarray(ql), db_c, db_l,
                   topk=tuple(topk), cuts=tuple(int(c) for c in cuts),
                   bits=bits)
      parts.append({k: np.asarray(v)[:stop - start] for k, v in res.items()})
  out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  # Integer sums are divided here, in NumPy, so that ACG is bit-identical
  # to the NumPy backend (XLA may rewrite a division by a constant).
  for k in topk:
    out[f'acg@{k}'] = out.pop(f'gain@{k}') / min(k, num_db)
  return out
