"""Exact Hamming-ranking retrieval metrics shared by all hashing methods.

Definitions (``Q`` queries, ``N`` database items, ``bits``-bit ±1 codes,
``C`` classes):

* Relevance: database item ``j`` is relevant to query ``i`` iff the two
  share a label, ``q_labels[i] @ db_labels[j] > 0``. Labels are multi-hot
  ``[*, C]``; single-label data is passed one-hot.
* Ranking: the database is sorted by Hamming distance to the query,
  ascending, with **ties broken by database index, lower index first**
  (a stable sort). The reference implementations (DeepHash-pytorch and
  friends) use NumPy's default, unstable ``argsort``, so their scores on
  tied distances depend on the sort algorithm; fixing the tie rule makes
  every metric here a deterministic function of the codes and labels.
* ``map@all``: AP of a query is the mean, over its relevant items, of
  (rank of the item among the relevant items) / (its 1-based position).
  A query with no relevant database item scores 0 and still counts in the
  mean over queries.
* ``map@K``: DeepHash-pytorch's ``CalcTopMap``: the same mean restricted
  to the relevant items within the top ``K``; a query without a relevant
  item in its top ``K`` scores 0 and still counts. ``K > N`` is clipped.
* ``p@K``: fraction of relevant items among the top ``K`` (``K`` clipped
  to ``N``), mean over all queries.
* PR by Hamming radius ``r = 0..bits``: the retrieved set is every item at
  distance ``<= r``. Precision is averaged over the queries that retrieve
  at least one item at that radius; recall (relevant retrieved / relevant)
  over the queries with at least one relevant item.
* PR by retrieved count ``n`` (``pr_count_grid``: 1, 2, 5, 10, ..., N):
  precision@n = relevant among the top ``n`` / ``n``, averaged over all
  queries; recall@n = relevant among the top ``n`` / relevant, averaged
  over the queries with at least one relevant item.

Graded multi-label measures (Zhao et al., "Deep Semantic Ranking Based
Hashing for Multi-Label Image Retrieval", CVPR 2015, Sec. 5.2; see
docs/metrics.md). The gain of item ``j`` for query ``i`` is the number of
labels they share, ``r(j) = |labels_i & labels_j|``; ``r(p)`` is the gain
of the item at 1-based position ``p`` of the ranking above.

* ``acg@K``: ACG@K = (1/K) * sum_{p<=K} r(p), ``K`` clipped to ``N``.
  With one-hot labels it equals ``p@K``.
* ``ndcg@K``: NDCG@K = DCG@K / IDCG@K with DCG@K = sum_{p<=K}
  (2^r(p) - 1) / log2(1 + p) (DSRH's exponential gain) and IDCG@K the DCG
  of the ideal ranking (all gains in descending order); 0 for a query
  without a relevant item.
* ``wap@all``: weighted AP = mean over the relevant items (r > 0) of
  ACG at their position, i.e. AP with precision@p replaced by ACG@p;
  ``wap@K`` restricts the mean to the relevant items in the top ``K``
  (like ``map@K``). 0 without a relevant item. With one-hot labels wAP is
  AP.

Algorithms. ``method='sort'`` is the original implementation: float32
matmul distances, a relevance matmul, a stable radix argsort of every
chunk of queries and per-row reductions. ``method='count'`` (default)
uses that Hamming distances are small integers:

1. Codes are packed once to ``uint64`` words; a query's distances are
   ``bitwise_count(db ^ q)`` (one pass, no matmul); labels likewise, so
   multi-hot relevance and gains are ``bitwise_count(db_labels & q)``,
   and one-hot relevance is a class-id comparison.
2. The ranking is a counting sort on the distance buckets: NumPy's
   stable ``argsort`` of ``uint8`` distances is a one-pass radix sort,
   i.e. it computes for every item (#items in lower buckets) + (#items in
   its bucket with a lower index). Only the relevant items' positions
   ``pos`` are kept (relevance gathered in ranked order, then
   ``flatnonzero``).
3. Everything else touches only ``pos`` or the ``bits + 1`` bucket
   boundaries: AP terms (rank among relevant) / (position) with running
   sums in ranked order (mAP@K is a prefix); hits within any cut-off
   ``K`` (P@K, PR by count) are ``searchsorted(pos, K)``; the cumulative
   bucket sizes (PR by radius) come from a binary search of the radii in
   the ranked distances (``log2 N`` gathers), and the relevant ones from
   ``searchsorted(pos, bucket_end)``.

Per query that is one popcount pass, one radix argsort, one gather and
one nonzero over ``N`` items, on ``num_threads`` threads (NumPy releases
the GIL), with ``O(N)`` memory per thread. Explicit per-bucket prefix
counts (bincount on ``block * (bits + 1) + d`` plus a within-block term)
were measured 2x slower than the radix argsort in NumPy. The float sums
for mAP are done in the same order as the sort path, so its results are
bit-identical (tests/ranking_test.py; bench/eval_ranking.py checks it at
scale). ``backend='jax'`` (ranking_jax.py) computes the same per-query
quantities by one ``lax.sort`` per chunk on an accelerator.

Everything is computed exactly (integer distances, float64 averages),
over chunks of queries so that peak memory is ``O(chunk_size * N)``
rather than ``O(Q * N)``.
"""

from collections.abc import Sequence
from concurrent import futures
import numbers
import os
import sys
from typing import Any

import numpy as np

from hashjax import codes as codes_lib
from hashjax.evaluation import ranking_numba


def relevance(q_labels: Any, db_labels: Any) -> np.ndarray:
  """Query/database relevance from multi-hot labels.

  Args:
    q_labels: ``[Q, C]`` non-negative multi-hot (or one-hot) labels.
    db_labels: ``[N, C]`` labels in the same encoding.

  Returns:
    ``bool`` array ``[Q, N]``; ``[i, j]`` is True iff query ``i`` and item
    ``j`` share at least one label.
  """
  # For non-negative labels `q @ db > 0` iff some class is positive in
  # both, so 0/1 indicators give the same answer with exact float32 sums
  # (counts <= C), whatever the labels' dtype or scale.
  q_pos = (np.asarray(q_labels) > 0).astype(np.float32)
  db_pos = (np.asarray(db_labels) > 0).astype(np.float32)
  return (q_pos @ db_pos.T) > 0


def rank(distances: Any) -> np.ndarray:
  """Orders the database for each query by distance, ties by index.

  The sort is stable, so items at equal distance keep database order
  (lower index first); this is what makes the metrics deterministic.
  Non-negative integer distances below 2**16 (any Hamming distance for
  codes of up to 65535 bits) are sorted with NumPy's radix sort, which is
  linear in ``N`` -- the counting-sort-on-``(distance, index)`` idea
  without materialising the combined key.

  Args:
    distances: ``[Q, N]`` distances, e.g. from `codes.hamming_distance`.

  Returns:
    ``int64`` array ``[Q, N]``; row ``i`` lists database indices from
    nearest to farthest.
  """
  d = np.asarray(distances)
  if d.ndim != 2:
    raise ValueError(f'distances must be 2-D [Q, N], got shape {d.shape}.')
  if d.size and np.issubdtype(d.dtype, np.integer) and d.min() >= 0:
    # NumPy's 'stable' sort is a radix sort for <= 16-bit integer types
    # (~10x faster than the timsort it uses for int32 here).
    max_d = d.max()
    if max_d <= np.iinfo(np.uint8).max:
      d = d.astype(np.uint8, copy=False)
    elif max_d <= np.iinfo(np.uint16).max:
      d = d.astype(np.uint16, copy=False)
  return np.argsort(d, axis=1, kind='stable')


def ranked_relevance(distances: Any, relevant: Any) -> np.ndarray:
  """Relevance of the database items in ranked order.

  Args:
    distances: ``[Q, N]`` distances.
    relevant: ``[Q, N]`` boolean relevance (see `relevance`).

  Returns:
    ``bool`` array ``[Q, N]``; ``[i, p]`` is whether the item at 0-based
    position ``p`` of query ``i``'s ranking (see `rank`) is relevant.
  """
  relevant = np.asarray(relevant, bool)
  if relevant.shape != np.shape(distances):
    raise ValueError(
        f'relevant has shape {relevant.shape} but distances have shape '
        f'{np.shape(distances)}.')
  return np.take_along_axis(relevant, rank(distances), axis=1)


def _ap_terms(
    ranked_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per relevant item: its row, 0-based position, and precision there."""
  # np.nonzero walks in C order, so within a row the positions ascend and
  # an item's rank among the relevant items is its offset from the row's
  # first hit. This touches only the relevant entries, not all Q * N.
  rows, cols = np.nonzero(ranked_rel)
  per_row = np.bincount(rows, minlength=ranked_rel.shape[0])
  row_start = np.cumsum(per_row) - per_row
  rank_among_relevant = np.arange(1, rows.size + 1) - row_start[rows]
  return rows, cols, rank_among_relevant / (cols + 1.0)


def _ap_from_terms(rows: np.ndarray, cols: np.ndarray, precision: np.ndarray,
                   num_queries: int, k: int) -> np.ndarray:
  """AP@k per query from `_ap_terms`; k must already be clipped to N."""
  in_top = cols < k
  hits = np.bincount(rows[in_top], minlength=num_queries)
  total = np.bincount(
      rows[in_top], weights=precision[in_top], minlength=num_queries)
  # No relevant item in the top k: AP is 0 by definition (and 0/0 is
  # avoided by dividing by max(hits, 1)).
  return np.where(hits > 0, total / np.maximum(hits, 1), 0.0)


def _check_k(k: Any, name: str) -> int:
  if (isinstance(k, bool) or not isinstance(k, numbers.Integral) or
      k < 1):
    raise ValueError(f'{name} must be a positive integer, got {k!r}.')
  return int(k)


def _as_ranked(ranked_rel: Any) -> np.ndarray:
  """``ranked_rel`` as a 2-D boolean array, or a ValueError."""
  ranked_rel = np.asarray(ranked_rel, bool)
  if ranked_rel.ndim != 2:
    raise ValueError(
        f'ranked_rel must be 2-D [Q, N], got shape {ranked_rel.shape}.')
  return ranked_rel


def average_precision(ranked_rel: Any, k: int | None = None) -> np.ndarray:
  """Average precision of each query's ranking.

  With ``k=None`` this is AP over the full ranking; otherwise it is
  DeepHash-pytorch's AP@k (``CalcTopMap``): the mean over the relevant
  items within the top ``k`` of (rank among them / 1-based position).
  Either way a query with no relevant item (in the top ``k``) scores 0.
  Note AP@N equals AP over the full ranking.

  Args:
    ranked_rel: ``[Q, N]`` boolean relevance in ranked order (see
      `ranked_relevance`).
    k: cut-off, a positive integer, clipped to ``N``; None for no cut-off.

  Returns:
    ``float64`` array ``[Q]``.
  """
  ranked_rel = _as_ranked(ranked_rel)
  num_queries, num_db = ranked_rel.shape
  k = num_db if k is None else min(_check_k(k, 'k'), num_db)
  return _ap_from_terms(*_ap_terms(ranked_rel), num_queries, k)


def precision_at_k(ranked_rel: Any, k: int) -> np.ndarray:
  """Fraction of relevant items among each query's top ``k``.

  Args:
    ranked_rel: ``[Q, N]`` boolean relevance in ranked order.
    k: cut-off, a positive integer, clipped to ``N`` (so with ``k > N``
      the denominator is ``N``).

  Returns:
    ``float64`` array ``[Q]``.
  """
  ranked_rel = _as_ranked(ranked_rel)
  k = min(_check_k(k, 'k'), ranked_rel.shape[1])
  return np.count_nonzero(ranked_rel[:, :k], axis=1) / k


def radius_counts(distances: Any, relevant: Any,
                  bits: int) -> tuple[np.ndarray, np.ndarray]:
  """Retrieved and relevant-retrieved counts at every Hamming radius.

  Args:
    distances: ``[Q, N]`` integer Hamming distances in ``[0, bits]``.
    relevant: ``[Q, N]`` boolean relevance.
    bits: code length; radii run over ``0..bits``.

  Returns:
    Two ``int64`` arrays ``[Q, bits + 1]``: ``retrieved[i, r]``, the number
    of items within distance ``r`` of query ``i``, and
    ``relevant_retrieved[i, r]``, how many of those are relevant.
  """
  d = np.asarray(distances)
  relevant = np.asarray(relevant, bool)
  if d.ndim != 2 or relevant.shape != d.shape:
    raise ValueError(
        f'distances and relevant must both be [Q, N], got shapes {d.shape} '
        f'and {relevant.shape}.')
  if d.size and (d.min() < 0 or d.max() > bits):
    raise ValueError(f'distances must lie in [0, {bits}].')
  num_radii = bits + 1
  hist = np.zeros((d.shape[0], num_radii), np.int64)
  hist_rel = np.zeros((d.shape[0], num_radii), np.int64)
  # A per-row bincount keeps temporaries at O(N); offsetting the rows into
  # one flat bincount would need an int64 copy of the whole chunk.
  for i in range(d.shape[0]):
    hist[i] = np.bincount(d[i], minlength=num_radii)
    hist_rel[i] = np.bincount(d[i][relevant[i]], minlength=num_radii)
  return np.cumsum(hist, axis=1), np.cumsum(hist_rel, axis=1)


def _mean_or_none(values: np.ndarray, mask: np.ndarray) -> list[Any]:
  """Column means of `values` over rows where `mask`; None if no rows."""
  counts = mask.sum(axis=0)
  sums = np.where(mask, values, 0.0).sum(axis=0)
  return [float(s / c) if c else None for s, c in zip(sums, counts)]


def pr_by_radius(retrieved: Any, relevant_retrieved: Any,
                 num_relevant: Any) -> dict[str, list[Any]]:
  """Aggregates `radius_counts` into a precision-recall curve.

  Args:
    retrieved: ``[Q, R]`` cumulative retrieved counts, ``R = bits + 1``.
    relevant_retrieved: ``[Q, R]`` cumulative relevant retrieved counts.
    num_relevant: ``[Q]`` number of relevant database items per query.

  Returns:
    Dict of length-``R`` lists: ``'radius'`` (``0..bits``),
    ``'precision'`` (mean over the queries retrieving at least one item;
    None where no query does), ``'recall'`` (mean over the queries with at
    least one relevant item; None if there are none) and
    ``'queries_with_results'`` (how many queries retrieve at least one
    item).
  """
  retrieved = np.asarray(retrieved, np.int64)
  relevant_retrieved = np.asarray(relevant_retrieved, np.int64)
  num_relevant = np.asarray(num_relevant, np.int64)
  has_results = retrieved > 0
  precision = relevant_retrieved / np.maximum(retrieved, 1)
  has_relevant = np.broadcast_to(
      (num_relevant > 0)[:, None], retrieved.shape)
  recall = relevant_retrieved / np.maximum(num_relevant, 1)[:, None]
  return {
      'radius': list(range(retrieved.shape[1])),
      'precision': _mean_or_none(precision, has_results),
      'recall': _mean_or_none(recall, has_relevant),
      'queries_with_results': [int(n) for n in has_results.sum(axis=0)],
  }


def _row_blocks(x: np.ndarray, rows: int = 1 << 16):
  """Row blocks of ``x``, so that checks need only block-sized temporaries."""
  return (x[start:start + rows] for start in range(0, max(len(x), 1), rows))


def _validated(
    q_codes: Any, db_codes: Any, q_labels: Any, db_labels: Any,
    as_float: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Checks shapes and values; returns float32 (or as given) codes and
  NumPy labels."""
  arrays = {
      'q_codes': np.asarray(q_codes),
      'db_codes': np.asarray(db_codes),
      'q_labels': np.asarray(q_labels),
      'db_labels': np.asarray(db_labels),
  }
  for name, x in arrays.items():
    if x.ndim != 2:
      raise ValueError(f'{name} must be 2-D, got shape {x.shape}.'
                       + (' Pass labels one-hot / multi-hot [*, C].'
                          if 'labels' in name else ''))
  qc, dc, ql, dl = arrays.values()
  if qc.shape[0] == 0:
    raise ValueError('Empty query set: q_codes has 0 rows.')
  if dc.shape[0] == 0:
    raise ValueError('Empty database: db_codes has 0 rows.')
  if qc.shape[1] == 0:
    raise ValueError('Codes have 0 bits.')
  if qc.shape[1] != dc.shape[1]:
    raise ValueError(
        f'Code lengths differ: q_codes has {qc.shape[1]} bits, db_codes '
        f'has {dc.shape[1]}.')
  if ql.shape[0] != qc.shape[0]:
    raise ValueError(
        f'q_labels has {ql.shape[0]} rows but q_codes has {qc.shape[0]}.')
  if dl.shape[0] != dc.shape[0]:
    raise ValueError(
        f'db_labels has {dl.shape[0]} rows but db_codes has {dc.shape[0]}.')
  if ql.shape[1] != dl.shape[1]:
    raise ValueError(
        f'Label widths differ: q_labels has {ql.shape[1]} classes, '
        f'db_labels has {dl.shape[1]}.')
  for name, x in (('q_codes', qc), ('db_codes', dc)):
    if not all(np.all((b == 1) | (b == -1)) for b in _row_blocks(x)):
      raise ValueError(
          f'{name} must contain only +1/-1 (see hashjax.codes.binarize; '
          f'0/1 bits map to ±1 as 2 * b - 1).')
  for name, x in (('q_labels', ql), ('db_labels', dl)):
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
      raise ValueError(f'{name} must be numeric, got dtype {x.dtype}.')
    if not all(np.all(np.isfinite(b)) and not np.any(b < 0)
               for b in _row_blocks(x)):
      # Relevance is `q @ db > 0`, which only means "shares a label" for
      # non-negative labels; e.g. ±1 label encodings would silently give
      # wrong relevance.
      raise ValueError(f'{name} must be finite and non-negative.')
  if not as_float:
    return qc, dc, ql, dl
  return qc.astype(np.float32), dc.astype(np.float32), ql, dl


# Peak bytes per (query, database item) pair in one chunk: distances, the
# relevance mask, the ranking (int64) and the ranked relevance, measured by
# bench/eval_ranking.py.
BYTES_PER_PAIR = 12


def _reference_metrics(q_codes: Any,
                      db_codes: Any,
                      q_labels: Any,
                      db_labels: Any,
                      *,
                      topk: Sequence[int] = (),
                      precision_at: Sequence[int] = (),
                      chunk_size: int | None = None,
                      memory_budget: int = 1 << 30) -> dict[str, Any]:
  """The original sort-based `retrieval_metrics`, kept as the oracle.

  Computes only the keys the original function returned (``map@all``,
  ``map@K``, ``p@K``, ``pr_radius`` and the counts); tests and
  bench/eval_ranking.py check that `retrieval_metrics` reproduces them
  bit for bit.

  Args:
    q_codes: ``[Q, bits]`` ±1 query codes (NumPy or JAX, any dtype).
    db_codes: ``[N, bits]`` ±1 database codes.
    q_labels: ``[Q, C]`` non-negative multi-hot / one-hot query labels.
    db_labels: ``[N, C]`` database labels.
    topk: cut-offs ``K`` for ``'map@K'``; ``K > N`` is clipped to ``N`` (the
      key keeps the ``K`` given).
    precision_at: cut-offs ``K`` for ``'p@K'``, clipped likewise.
    chunk_size: queries processed at once; peak memory is roughly
      ``chunk_size * N * BYTES_PER_PAIR`` bytes. None: as many as fit in
      ``memory_budget`` (at most 512), so memory stays bounded whatever N
      (bench/eval_ranking.py measures it).
    memory_budget: bytes for one chunk's working arrays when chunk_size is
      None (default 1 GiB).

  Returns:
    JSON-serialisable dict:
      ``'num_queries'``, ``'num_database'``, ``'bits'``: ints.
      ``'num_queries_with_relevant'``: queries with >= 1 relevant item.
      ``'map@all'``: float.
      ``'map@K'`` for each ``K`` in ``topk``: float.
      ``'p@K'`` for each ``K`` in ``precision_at``: float.
      ``'pr_radius'``: dict of lists over radii ``0..bits`` -- ``'radius'``,
        ``'precision'``, ``'recall'``, ``'queries_with_results'`` (see
        `pr_by_radius`; precision is None at radii where no query
        retrieves anything).

  Raises:
    ValueError: on empty query set or database, mismatched shapes, codes
      that are not ±1, negative or non-finite labels, or non-positive
      ``topk`` / ``precision_at`` / ``chunk_size``.
  """
  q_codes, db_codes, q_labels, db_labels = _validated(
      q_codes, db_codes, q_labels, db_labels)
  topk = [_check_k(k, 'topk entries') for k in topk]
  precision_at = [_check_k(k, 'precision_at entries') for k in precision_at]
  num_queries, bits = q_codes.shape
  num_db = db_codes.shape[0]
  if chunk_size is None:
    chunk_size = int(min(512, max(1, memory_budget // (num_db *
                                                      BYTES_PER_PAIR))))
  chunk_size = _check_k(chunk_size, 'chunk_size')
  # Distances fit the radix-sortable dtype used by `rank`; storing them
  # that way also quarters the chunk's distance memory.
  dist_dtype = np.uint8 if bits <= np.iinfo(np.uint8).max else np.uint16
  if bits > np.iinfo(np.uint16).max:
    dist_dtype = np.int32

  ap_all = np.empty(num_queries)
  ap_top = {k: np.empty(num_queries) for k in topk}
  p_at = {k: np.empty(num_queries) for k in precision_at}
  retrieved = np.empty((num_queries, bits + 1), np.int64)
  relevant_retrieved = np.empty((num_queries, bits + 1), np.int64)
  num_relevant = np.empty(num_queries, np.int64)

  for start in range(0, num_queries, chunk_size):
    rows = slice(start, min(start + chunk_size, num_queries))
    n = rows.stop - rows.start
    dist = codes_lib.hamming_distance(q_codes[rows], db_codes)
    dist = dist.astype(dist_dtype)
    rel = relevance(q_labels[rows], db_labels)
    retrieved[rows], relevant_retrieved[rows] = radius_counts(dist, rel, bits)
    num_relevant[rows] = relevant_retrieved[rows, -1]
    ranked = ranked_relevance(dist, rel)
    del dist, rel  # Bound the chunk's peak memory before the AP terms.
    terms = _ap_terms(ranked)
    ap_all[rows] = _ap_from_terms(*terms, n, num_db)
    for k in topk:
      ap_top[k][rows] = _ap_from_terms(*terms, n, min(k, num_db))
    for k in precision_at:
      p_at[k][rows] = precision_at_k(ranked, k)
    del ranked, terms

  metrics = {
      'num_queries': int(num_queries),
      'num_database': int(num_db),
      'bits': int(bits),
      'num_queries_with_relevant': int(np.count_nonzero(num_relevant)),
      'map@all': float(np.mean(ap_all)),
  }
  for k in topk:
    metrics[f'map@{k}'] = float(np.mean(ap_top[k]))
  for k in precision_at:
    metrics[f'p@{k}'] = float(np.mean(p_at[k]))
  metrics['pr_radius'] = pr_by_radius(retrieved, relevant_retrieved,
                                      num_relevant)
  return metrics


def pr_count_grid(num_db: int) -> list[int]:
  """Retrieved counts ``n`` of the PR-by-count curve: 1, 2, 5, 10, ..., N.

  Args:
    num_db: database size ``N``.

  Returns:
    Ascending list of the values ``{1, 2, 5} * 10**e`` below ``N``, then
    ``N`` itself.
  """
  grid, scale = [], 1
  while scale < num_db:
    grid.extend(m * scale for m in (1, 2, 5) if m * scale < num_db)
    scale *= 10
  return grid + [int(num_db)]


def _pack_bits(x: np.ndarray) -> np.ndarray:
  """Positive entries of ``[M, B]`` -> ``uint64`` words ``[ceil(B / 64), M]``.

  Bit ``b`` of row ``m`` is set iff ``x[m, b] > 0`` (the word layout is
  irrelevant: only popcounts of XOR / AND of words are used). Packed in
  row blocks, so temporaries stay small whatever ``M``.
  """
  num_words = -(-x.shape[1] // 64)
  words = np.empty((num_words, x.shape[0]), np.uint64)
  padded = None
  for start in range(0, x.shape[0], 1 << 16):
    block = x[start:start + (1 << 16)] > 0
    if padded is None or len(padded) != len(block):
      padded = np.zeros((len(block), num_words * 64), bool)
    padded[:, :x.shape[1]] = block
    words[:, start:start + len(block)] = (
        np.packbits(padded, axis=1).view('>u8').T)
  return words


def _class_ids(labels: np.ndarray) -> np.ndarray | None:
  """Class index per row if every row has exactly one positive label."""
  # The narrowest dtype: the per-query class comparison reads all N ids.
  ids = np.empty(len(labels), np.uint8 if labels.shape[1] <= 256 else
                 np.int32)
  for start in range(0, len(labels), 1 << 16):
    positive = labels[start:start + (1 << 16)] > 0
    if not np.all(np.count_nonzero(positive, axis=1) == 1):
      return None
    ids[start:start + len(positive)] = np.argmax(positive, axis=1)
  return ids


def _popcount_sum(op, db_words, q_words, lo, hi, out, buf, count):
  """out[:] = sum over words w of popcount(op(db_words[w][lo:hi],
  q_words[w])): Hamming distances (op xor) or shared labels (op and).
  `buf` (uint64) and `count` hold one word's temporaries; a uint8 `out`
  takes the first word's popcounts directly."""
  for w, db_w in enumerate(db_words):
    op(db_w[lo:hi], q_words[w], out=buf)
    if w == 0 and out.dtype == np.uint8:
      np.bitwise_count(buf, out=out)
    elif w == 0:
      out[...] = np.bitwise_count(buf, out=count)
    else:
      out += np.bitwise_count(buf, out=count)


class _Prepared:
  """Database-side arrays shared by every query chunk (built once)."""

  def __init__(self, q_codes, db_codes, q_labels, db_labels, method):
    self.method = method
    self.num_db, self.bits = db_codes.shape
    self.num_classes = q_labels.shape[1]
    q_cls, db_cls = _class_ids(q_labels), _class_ids(db_labels)
    # One-hot data: relevance is a class comparison and every relevant item
    # has gain 1, so the shared-label counts need not be computed.
    self.one_hot = q_cls is not None and db_cls is not None
    if method == 'sort':
      self.q_codes, self.db_codes = q_codes, db_codes
      self.q_labels, self.db_labels = q_labels > 0, db_labels > 0
    else:
      self.q_words = _pack_bits(q_codes)
      self.db_words = _pack_bits(db_codes)
      self.q_cls, self.db_cls = q_cls, db_cls
    self.q_lab_words = _pack_bits(q_labels)
    self.db_lab_words = _pack_bits(db_labels)
    self.dist_dtype = (np.uint8 if self.bits <= np.iinfo(np.uint8).max else
                       np.uint16)

  def distances_and_relevance(self, rows: slice):
    """``[n, N]`` distances (radix-sortable dtype) and relevance."""
    if self.method == 'sort':
      dist = codes_lib.hamming_distance(self.q_codes[rows], self.db_codes)
      dist = dist.astype(self.dist_dtype)
      return dist, relevance(self.q_labels[rows], self.db_labels)
    n = rows.stop - rows.start
    dist = np.empty((n, self.num_db), self.dist_dtype)
    rel = np.empty((n, self.num_db), self.relevance_dtype)
    buf = np.empty(min(self.num_db, _BLOCK), np.uint64)
    count = np.empty(min(self.num_db, _BLOCK), np.uint8)
    for i in range(n):
      self.query_distances_and_relevance(rows.start + i, dist[i], rel[i],
                                         buf, count)
    return dist, rel if self.one_hot else rel != 0

  @property
  def relevance_dtype(self):
    """``bool`` for one-hot labels, else the shared-label count's dtype."""
    if self.one_hot:
      return np.bool_
    return np.uint8 if self.num_classes <= 255 else np.uint16

  def query_distances_and_relevance(self, q, dist, rel, buf, count):
    """Fills ``dist`` and ``rel`` (``[N]``) for query ``q`` in place.

    ``rel`` is the relevance (one-hot labels) or, for multi-hot labels,
    the number of shared labels (the gain; relevant iff > 0). The passes
    run over blocks of `_BLOCK` items so the ``uint64`` temporaries stay in
    cache.
    """
    for lo in range(0, self.num_db, _BLOCK):
      hi = min(lo + _BLOCK, self.num_db)
      b, c = buf[:hi - lo], count[:hi - lo]
      _popcount_sum(np.bitwise_xor, self.db_words, self.q_words[:, q], lo,
                    hi, dist[lo:hi], b, c)
      if self.one_hot:
        np.equal(self.db_cls[lo:hi], self.q_cls[q], out=rel[lo:hi])
        continue
      _popcount_sum(np.bitwise_and, self.db_lab_words, self.q_lab_words[:, q],
                    lo, hi, rel[lo:hi], b, c)

  def query_label_count(self, q: int) -> int:
    """Number of positive labels of query ``q`` (its largest gain)."""
    return int(np.bitwise_count(self.q_lab_words[:, q]).sum())

  def gains(self, q_rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Number of labels shared by (query, item) pairs, as ``int64``."""
    if self.one_hot:
      return np.ones(q_rows.shape, np.int64)
    gain = np.zeros(q_rows.shape, np.int64)
    for w in range(self.q_lab_words.shape[0]):
      gain += np.bitwise_count(
          self.q_lab_words[w, q_rows] & self.db_lab_words[w, items])
    return gain


def _sorted_cumulative_counts(dist: np.ndarray, order: np.ndarray,
                              num_radii: int) -> np.ndarray:
  """``[n, R]``: items within distance ``r`` of each query, by bisection.

  ``dist[i, order[i]]`` ascends, so the number of items at distance
  ``<= r`` is the first position whose distance exceeds ``r``; a
  vectorised binary search finds it with ``log2(N)`` gathers of ``n * R``
  entries instead of a histogram pass over all ``n * N`` distances.
  """
  n, num_db = dist.shape
  radii = np.arange(num_radii)[None, :]
  row = np.arange(n)[:, None]
  lo = np.zeros((n, num_radii), np.int64)
  hi = np.full((n, num_radii), num_db, np.int64)
  while np.any(lo < hi):
    mid = (lo + hi) // 2
    active = lo < hi
    value = dist[row, order[row, np.minimum(mid, num_db - 1)]]
    go_right = active & (value <= radii)
    lo = np.where(go_right, mid + 1, lo)
    hi = np.where(active & ~go_right, mid, hi)
  return lo


def _chunk_scores(prep: _Prepared, rows: slice, topk: list[int],
                  cuts: np.ndarray, out: dict[str, Any]) -> None:
  """Ranks one chunk of queries and writes its per-query scores to `out`."""
  num_db, bits = prep.num_db, prep.bits
  n = rows.stop - rows.start
  dist, rel = prep.distances_and_relevance(rows)
  if prep.method == 'sort':
    retrieved, _ = radius_counts(dist, rel, bits)
  order = rank(dist)
  ranked = np.take_along_axis(rel, order, axis=1)
  del rel
  if prep.method != 'sort':
    retrieved = _sorted_cumulative_counts(dist, order, bits + 1)
  del dist
  q_rows, cols = np.nonzero(ranked)
  del ranked
  items = order[q_rows, cols]
  del order
  per_row = np.bincount(q_rows, minlength=n)
  row_start = np.cumsum(per_row) - per_row
  # Relevant items within radius r: relevant positions below retrieved[r];
  # `q_rows * N + cols` ascends, so one searchsorted answers every row.
  keys = q_rows * np.int64(num_db) + cols
  targets = np.arange(n)[:, None] * np.int64(num_db) + retrieved
  out['retrieved'][rows] = retrieved
  out['relevant_retrieved'][rows] = (
      np.searchsorted(keys, targets) - row_start[:, None])
  out['num_relevant'][rows] = per_row
  rank_among_relevant = np.arange(1, q_rows.size + 1) - row_start[q_rows]
  precision = rank_among_relevant / (cols + 1.0)
  out['ap_all'][rows] = _ap_from_terms(q_rows, cols, precision, n, num_db)
  for k in topk:
    out[f'ap@{k}'][rows] = _ap_from_terms(q_rows, cols, precision, n,
                                          min(k, num_db))
  # Hits within each cut-off in `cuts` (ascending): a relevant item at
  # position p counts for every cut > p.
  slot = np.searchsorted(cuts, cols, side='right')
  hits = np.bincount(q_rows * (cuts.size + 1) + slot,
                     minlength=n * (cuts.size + 1)).reshape(n, -1)
  out['hits'][rows] = np.cumsum(hits, axis=1)[:, :cuts.size]
  del precision, slot, keys

  # Graded measures (Zhao et al., CVPR 2015); gain = shared labels.
  gain = prep.gains(q_rows + rows.start, items)
  cum_gain = np.cumsum(gain) - np.concatenate([[0], np.cumsum(gain)])[
      row_start[q_rows]]
  acg_terms = cum_gain / (cols + 1.0)
  out['wap_all'][rows] = _ap_from_terms(q_rows, cols, acg_terms, n, num_db)
  if not topk:
    return
  max_gain = prep.num_classes
  gain_counts = np.bincount(q_rows * (max_gain + 1) + gain,
                            minlength=n * (max_gain + 1)).reshape(n, -1)
  # Ideal ranking: gains in descending order; value v fills positions
  # [above_v, above_v + count_v).
  desc = gain_counts[:, ::-1]
  above = np.cumsum(desc, axis=1) - desc
  values = np.arange(max_gain, -1, -1)
  top = max(min(k, num_db) for k in topk)
  discount = 1.0 / np.log2(np.arange(top) + 2.0)
  cum_discount = np.concatenate([[0.0], np.cumsum(discount)])
  in_top = cols < top
  t_rows, t_cols, t_gain = q_rows[in_top], cols[in_top], gain[in_top]
  dcg_terms = (2.0**t_gain - 1.0) * discount[t_cols]
  for k in topk:
    kk = min(k, num_db)
    m = t_cols < kk
    out[f'wap@{k}'][rows] = _ap_from_terms(q_rows, cols, acg_terms, n, kk)
    out[f'acg@{k}'][rows] = np.bincount(
        t_rows[m], weights=t_gain[m], minlength=n) / kk
    dcg = np.bincount(t_rows[m], weights=dcg_terms[m], minlength=n)
    lo_pos = np.minimum(above, kk)
    hi_pos = np.minimum(above + desc, kk)
    idcg = np.sum((2.0**values - 1.0) *
                  (cum_discount[hi_pos] - cum_discount[lo_pos]), axis=1)
    out[f'ndcg@{k}'][rows] = np.where(idcg > 0, dcg / np.where(
        idcg > 0, idcg, 1.0), 0.0)


# Items per block of the popcount passes (a 512 KiB uint64 temporary).
_BLOCK = 1 << 16

_freed_memory_kept = False


def _keep_freed_memory() -> None:
  """Makes glibc keep freed buffers of a few MB instead of unmapping them.

  Each query allocates and frees several ``N``-sized buffers (the argsort
  result and the radix sort's scratch, 8 bytes per item). With glibc's
  default thresholds the heap is trimmed after every query and the next
  one page-faults all of that memory in again, which tripled the
  argsort's time at ``N = 10^6`` (9 ms instead of 3 ms here). glibc raises
  its mmap and trim thresholds (to the chunk's size and twice that) when
  a large mmapped chunk is freed; allocating and freeing one 30 MiB
  buffer once per process does exactly that, with no global setting. It
  only means glibc may keep up to ~60 MiB of freed memory for reuse.
  Elsewhere than glibc this is a harmless allocation.
  """
  global _freed_memory_kept
  if not _freed_memory_kept:
    _freed_memory_kept = True
    scratch = np.empty(30 << 20, np.uint8)
    del scratch


def _count_chunk_scores(prep: _Prepared, rows: slice, topk: list[int],
                        cuts: np.ndarray, out: dict[str, Any],
                        place: Any = None) -> None:
  """`_chunk_scores` for method='count': one query at a time.

  Per query the work is one popcount pass, one radix argsort of the
  ``uint8`` distances (a counting sort on the distance buckets), one
  gather of the relevance into ranked order and one `np.flatnonzero`;
  everything after that touches only the relevant items (their 0-based
  positions ``pos``, ascending) or the ``bits + 1`` bucket boundaries.
  The AP sums are running sums (`np.cumsum`) over the same terms, in the
  same order, as the sequential `np.bincount` of `_ap_from_terms`, so the
  results are bit-identical to method='sort'.

  `place` (`ranking_numba.place_relevant`, backend 'numba') replaces the
  argsort, gather, nonzero and bisection by one compiled counting pass
  that yields the same positions and counts.
  """
  num_db, bits = prep.num_db, prep.bits
  num_radii = bits + 1
  radii = np.arange(num_radii)
  _keep_freed_memory()
  dist = np.empty(num_db, prep.dist_dtype)
  rel = np.empty(num_db, prep.relevance_dtype)
  # The NumPy kernel's relevance in ranked order (`place` needs none).
  ranked = np.empty(num_db, prep.relevance_dtype) if place is None else None
  buf = np.empty(min(num_db, _BLOCK), np.uint64)
  count = np.empty(min(num_db, _BLOCK), np.uint8)
  kks = [min(k, num_db) for k in topk]
  top = max(kks, default=0)
  discount = 1.0 / np.log2(np.arange(top) + 2.0)
  steps = max(1, int(num_db).bit_length())
  if place is not None:
    pos_buf = np.empty(num_db, np.int64)
    gain_buf = np.empty(num_db, prep.relevance_dtype)
    per_distance = np.empty(num_radii, np.int64)
  for q in range(rows.start, rows.stop):
    prep.query_distances_and_relevance(q, dist, rel, buf, count)
    if place is not None:
      num_rel = place(dist, rel, per_distance, pos_buf, gain_buf)
      pos, ranked_gain = pos_buf[:num_rel], gain_buf[:num_rel]
      lo = np.cumsum(per_distance)   # items within radius r
    else:
      order = np.argsort(dist, kind='stable')
      # mode='clip' (the indices are in range): with the default 'raise',
      # take buffers `out` through a copy.
      np.take(rel, order, out=ranked, mode='clip')
      # NumPy's nonzero is several times faster on bool than on uint8.
      pos = np.flatnonzero(ranked if prep.one_hot else ranked != 0)
      num_rel = pos.size
      ranked_gain = None if prep.one_hot else ranked[pos]
      # Items within radius r = first ranked position with distance > r,
      # by a binary search over the bits + 1 radii at once.
      lo = np.zeros(num_radii, np.int64)
      hi = np.full(num_radii, num_db, np.int64)
      for _ in range(steps + 1):
        mid = (lo + hi) >> 1
        right = dist[order[np.minimum(mid, num_db - 1)]] <= radii
        active = lo < hi
        lo = np.where(active & right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)
    out['retrieved'][q] = lo
    out['relevant_retrieved'][q] = np.searchsorted(pos, lo)
    out['num_relevant'][q] = num_rel
    out['hits'][q] = np.searchsorted(pos, cuts)
    if num_rel == 0:
      for key in ['ap_all', 'wap_all'] + [
          f'{name}@{k}' for k in topk for name in ('ap', 'wap', 'acg',
                                                   'ndcg')]:
        out[key][q] = 0.0
      continue
    position = pos + 1.0
    # Precision at each relevant item, then its running sum in ranked
    # order: the same float64 operations, in the same order, as the
    # sequential bincount of `_ap_from_terms`, hence bit-identical.
    ap_sum = np.arange(1.0, num_rel + 1)
    np.divide(ap_sum, position, out=ap_sum)
    np.cumsum(ap_sum, out=ap_sum)
    out['ap_all'][q] = ap_sum[-1] / num_rel
    hits_k = np.searchsorted(pos, kks)
    for k, h in zip(topk, hits_k):
      out[f'ap@{k}'][q] = ap_sum[h - 1] / h if h else 0.0
    h_top = int(np.searchsorted(pos, top))
    if prep.one_hot:
      # Every gain is 1: cumulative gain = rank among relevant, so the
      # ACG weights are the precisions and wAP is AP.
      gain = None
      out['wap_all'][q] = out['ap_all'][q]
      wap_sum = ap_sum
    else:
      gain = ranked_gain
      acg = np.cumsum(gain, dtype=np.int64) / position
      # wAP is not tied to an older implementation's summation order: a
      # pairwise sum (fast, accurate) for the total, running sums only
      # over the top `top` positions for wAP@K.
      wap_total = float(np.sum(acg))
      out['wap_all'][q] = wap_total / num_rel
      wap_sum = np.cumsum(acg[:h_top])
      del acg
    if not topk:
      continue
    top_gain = (np.ones(h_top, np.int64) if gain is None else
                gain[:h_top].astype(np.int64))
    dcg_terms = (2.0**top_gain - 1.0) * discount[pos[:h_top]]
    dcg_sum = np.concatenate([[0.0], np.cumsum(dcg_terms)])
    gain_sum = np.concatenate([[0], np.cumsum(top_gain)])
    # Ideal ranking: all gains in descending order.
    if gain is None:
      ideal = np.ones(min(num_rel, top), np.int64)
    else:
      # Only the `top` largest gains matter: count gain values from the
      # largest possible (the query's label count) down until they fill
      # the top positions -- usually a few passes over the gains, cheaper
      # than a bincount (which copies them to intp).
      values, counts, filled = [], [], 0
      for value in range(int(prep.query_label_count(q)), 0, -1):
        if filled >= top:
          break
        c = int(np.count_nonzero(gain == value))
        values.append(value)
        counts.append(min(c, top - filled))
        filled += counts[-1]
      ideal = np.repeat(np.asarray(values, np.int64),
                        np.asarray(counts, np.int64))
    idcg_sum = np.concatenate([[0.0], np.cumsum(
        (2.0**ideal - 1.0) * discount[:ideal.size])])
    for k, kk, h in zip(topk, kks, hits_k):
      if gain is not None and h == num_rel:
        out[f'wap@{k}'][q] = out['wap_all'][q]  # Same sum as wAP@all.
      else:
        out[f'wap@{k}'][q] = wap_sum[h - 1] / h if h else 0.0
      out[f'acg@{k}'][q] = gain_sum[h] / kk
      idcg = idcg_sum[min(kk, ideal.size)]
      out[f'ndcg@{k}'][q] = dcg_sum[h] / idcg if idcg > 0 else 0.0


# method='count' ranks one query at a time from this database size up (the
# per-query NumPy calls are then negligible next to the O(N) passes), and
# always for multi-hot labels (its gains come in index order, cheaper than
# the chunk path's gather); smaller one-hot databases use the vectorised
# chunk path, with the same numbers.
PER_QUERY_MIN_DATABASE = 1 << 15


def _default_threads() -> int:
  return max(1, min(2, os.cpu_count() or 1))


def _jax_has_accelerator() -> bool:
  """Whether JAX is already imported and its default backend is not CPU.

  JAX is not imported here: a NumPy-only caller should not pay its import
  time and memory (about 1 s and 100+ MB); every hashjax training or
  evaluation process has imported it already.
  """
  jax = sys.modules.get('jax')
  if jax is None:
    return False
  try:
    return jax.default_backend() != 'cpu'
  except Exception:  # pylint: disable=broad-except
    return False


def retrieval_metrics(q_codes: Any,
                      db_codes: Any,
                      q_labels: Any,
                      db_labels: Any,
                      *,
                      topk: Sequence[int] = (),
                      precision_at: Sequence[int] = (),
                      chunk_size: int | None = None,
                      memory_budget: int = 1 << 30,
                      method: str = 'count',
                      backend: str = 'auto',
                      num_threads: int | None = None) -> dict[str, Any]:
  """Hamming-ranking retrieval metrics (see the module docstring).

  Args:
    q_codes: ``[Q, bits]`` ±1 query codes (NumPy or JAX, any dtype).
    db_codes: ``[N, bits]`` ±1 database codes.
    q_labels: ``[Q, C]`` non-negative multi-hot / one-hot query labels.
    db_labels: ``[N, C]`` database labels.
    topk: cut-offs ``K`` for ``'map@K'``, ``'wap@K'``, ``'acg@K'`` and
      ``'ndcg@K'``; ``K > N`` is clipped to ``N`` (the key keeps the ``K``
      given).
    precision_at: cut-offs ``K`` for ``'p@K'``, clipped likewise.
    chunk_size: queries processed at once; peak memory is roughly
      ``chunk_size * N * BYTES_PER_PAIR`` bytes per thread. None: as many
      as fit in ``memory_budget`` shared by the threads (at most 512 for
      ``'sort'``, 64 for ``'count'``, which from ``N = 2**15`` (or with
      multi-hot labels) ranks one query at a time in ``O(N)`` memory per
      thread).
    memory_budget: bytes for the chunks' working arrays when chunk_size is
      None (default 1 GiB).
    method: ``'count'`` (default): distances by popcount of bit-packed
      codes, relevance by class comparison (one-hot labels) or a packed
      label AND, radius counts by bisection of the ranking, query chunks
      on `num_threads` threads; ``'sort'``: the original float-matmul and
      histogram path. Both give bit-identical results.
    backend: ``'numpy'``, ``'numba'`` (method 'count' with the compiled
      counting pass of `ranking_numba`; bit-identical), ``'jax'`` (see
      `ranking_jax`; same numbers, up to float summation order) or
      ``'auto'``: jax when JAX is imported and its default backend is an
      accelerator, else numba when it is installed, else numpy.
    num_threads: threads over query chunks (NumPy releases the GIL in the
      heavy loops); None: ``min(2, cpu_count)`` for ``'count'``, 1 for
      ``'sort'``.

  Returns:
    JSON-serialisable dict:
      ``'num_queries'``, ``'num_database'``, ``'bits'``: ints.
      ``'num_queries_with_relevant'``: queries with >= 1 relevant item.
      ``'map@all'``: float.
      ``'map@K'`` for each ``K`` in ``topk``: float.
      ``'p@K'`` for each ``K`` in ``precision_at``: float.
      ``'wap@all'``, and ``'wap@K'``, ``'acg@K'``, ``'ndcg@K'`` for each
        ``K`` in ``topk``: graded multi-label measures (module docstring;
        with one-hot labels ``acg@K`` is the precision at ``K``).
      ``'pr_radius'``: dict of lists over radii ``0..bits`` -- ``'radius'``,
        ``'precision'``, ``'recall'``, ``'queries_with_results'`` (see
        `pr_by_radius`; precision is None at radii where no query
        retrieves anything).
      ``'pr_count'``: dict of lists over `pr_count_grid` -- ``'n'``,
        ``'precision'`` (mean over all queries of relevant among the top
        ``n`` / ``n``) and ``'recall'`` (mean over queries with a relevant
        item; None if there are none).

  Raises:
    ValueError: on empty query set or database, mismatched shapes, codes
      that are not ±1, negative or non-finite labels, non-positive
      ``topk`` / ``precision_at`` / ``chunk_size``, or an unknown method
      or backend.
  """
  if method not in ('count', 'sort'):
    raise ValueError(f"method must be 'count' or 'sort', got {method!r}.")
  if backend not in ('auto', 'numpy', 'numba', 'jax'):
    raise ValueError(f"backend must be 'auto', 'numpy', 'numba' or 'jax', "
                     f"got {backend!r}.")
  if backend == 'numba' and not ranking_numba.AVAILABLE:
    raise ValueError("backend='numba' needs numba: pip install numba (the "
                     "`fast` extra), or use backend='numpy'.")
  # The count path packs the codes to bits and needs no float32 copy
  # (4 bytes per code bit, e.g. 256 MB for 10^6 64-bit codes).
  q_codes, db_codes, q_labels, db_labels = _validated(
      q_codes, db_codes, q_labels, db_labels, as_float=method == 'sort')
  topk = [_check_k(k, 'topk entries') for k in topk]
  precision_at = [_check_k(k, 'precision_at entries') for k in precision_at]
  if num_threads is None:
    num_threads = _default_threads() if method == 'count' else 1
  num_threads = _check_k(num_threads, 'num_threads')
  num_queries, bits = q_codes.shape
  num_db = db_codes.shape[0]
  if chunk_size is None:
    # The count path gains nothing from chunks above ~64 queries (its big
    # databases go one query at a time anyway), so it keeps them small.
    max_chunk = 512 if method == 'sort' else 64
    chunk_size = int(min(max_chunk, max(1, memory_budget // (
        num_db * BYTES_PER_PAIR * num_threads))))
  chunk_size = _check_k(chunk_size, 'chunk_size')
  grid = pr_count_grid(num_db)
  cuts = np.array(sorted({min(k, num_db) for k in precision_at} |
                         set(grid)), np.int64)

  if backend == 'jax' or (backend == 'auto' and _jax_has_accelerator()):
    from hashjax.evaluation import ranking_jax  # pylint: disable=g-import-not-at-top
    out = ranking_jax.per_query_scores(
        q_codes, db_codes, q_labels, db_labels, topk=topk, cuts=cuts,
        memory_budget=memory_budget)
  else:
    out = {
        'ap_all': np.empty(num_queries),
        'wap_all': np.empty(num_queries),
        'retrieved': np.empty((num_queries, bits + 1), np.int64),
        'relevant_retrieved': np.empty((num_queries, bits + 1), np.int64),
        'num_relevant': np.empty(num_queries, np.int64),
        'hits': np.empty((num_queries, cuts.size), np.int64),
    }
    for k in topk:
      for name in ('ap', 'wap', 'acg', 'ndcg'):
        out[f'{name}@{k}'] = np.empty(num_queries)
    prep = _Prepared(q_codes, db_codes, q_labels, db_labels, method)
    chunks = [slice(s, min(s + chunk_size, num_queries))
              for s in range(0, num_queries, chunk_size)]
    place = None
    if method == 'count' and backend in ('auto', 'numba'):
      place = ranking_numba.place_relevant   # None without numba
    if place is not None or (method == 'count' and (
        num_db >= PER_QUERY_MIN_DATABASE or not prep.one_hot)):
      run = lambda rows: _count_chunk_scores(prep, rows, topk, cuts, out,
                                             place)
    else:
      run = lambda rows: _chunk_scores(prep, rows, topk, cuts, out)
    if num_threads == 1 or len(chunks) == 1:
      for rows in chunks:
        run(rows)
    else:
      with futures.ThreadPoolExecutor(num_threads) as pool:
        for result in pool.map(run, chunks):
          del result
  return _aggregate(out, num_queries, num_db, bits, topk, precision_at,
                    grid, cuts)


def _aggregate(out: dict[str, Any], num_queries: int, num_db: int,
               bits: int, topk: list[int], precision_at: list[int],
               grid: list[int], cuts: np.ndarray) -> dict[str, Any]:
  """Per-query scores -> the metrics dict of `retrieval_metrics`."""
  num_relevant = out['num_relevant']
  metrics = {
      'num_queries': int(num_queries),
      'num_database': int(num_db),
      'bits': int(bits),
      'num_queries_with_relevant': int(np.count_nonzero(num_relevant)),
      'map@all': float(np.mean(out['ap_all'])),
  }
  for k in topk:
    metrics[f'map@{k}'] = float(np.mean(out[f'ap@{k}']))
  column = {int(c): j for j, c in enumerate(cuts)}
  for k in precision_at:
    kk = min(k, num_db)
    metrics[f'p@{k}'] = float(np.mean(out['hits'][:, column[kk]] / kk))
  metrics['wap@all'] = float(np.mean(out['wap_all']))
  for k in topk:
    for name in ('wap', 'acg', 'ndcg'):
      metrics[f'{name}@{k}'] = float(np.mean(out[f'{name}@{k}']))
  metrics['pr_radius'] = pr_by_radius(out['retrieved'],
                                      out['relevant_retrieved'], num_relevant)
  hits = out['hits'][:, [column[n] for n in grid]]
  precision = hits / np.asarray(grid, np.float64)
  recall = hits / np.maximum(num_relevant, 1)[:, None]
  has_relevant = np.broadcast_to((num_relevant > 0)[:, None], hits.shape)
  metrics['pr_count'] = {
      'n': list(grid),
      'precision': [float(p) for p in precision.mean(axis=0)],
      'recall': _mean_or_none(recall, has_relevant),
  }
  return metrics
