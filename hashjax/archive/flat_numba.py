"""The flat scan's top k on the CPU, compiled with numba: one pass over the
codes, no sort of more than k entries.

Each query keeps a bound tau and the codes seen so far within it, in row
order. A code enters when its distance is below tau, or at tau while fewer
than k codes are at or below tau (a later code at tau loses the tie by
index). A histogram of the entered distances gives `below`, the number
entered below tau; once it reaches k, the k-th distance is below tau, so
tau drops (the loop in `_take`). A full buffer is compacted to the codes
that can still be among the top k (at most k). Nearly every code fails
the first test, so the scan is a loop the compiler vectorises
(`_count`: how many codes of a tile of TILE codes are within tau) and only
a tile that holds one is walked code by code (`_take`).

Queries go in blocks of QBLOCK over each tile, so a tile is read from
memory once per block; blocks (and, for fewer blocks than threads, ranges
of rows) run on threads (hashjax/archive/workers.py), each a nogil call.
The result is the same as hashjax/archive/topk.py's: ascending distance,
ties by row (tests/search_test.py checks both against a stable sort).

`within` is the radius search's flat scan (every code within r), built
the same way: tiles counted first, only a tile with a match walked.

Optional, like hashjax/archive/mih_numba.py: `pip install numba` (the
`fast` extra).
"""
import numpy as np

from hashjax.archive import index
from hashjax.archive import mih_numba
from hashjax.archive import workers

AVAILABLE = mih_numba.AVAILABLE
TILE = 256      # codes counted per vectorised loop
QBLOCK = 8      # queries sharing a tile

if AVAILABLE:
  import numba  # pylint: disable=g-import-not-at-top
  _ctpop = mih_numba._ctpop  # pylint: disable=protected-access
  _distances = mih_numba._distances  # pylint: disable=protected-access

  @numba.njit(nogil=True, cache=True)
  def _count(flat, width, q, bound):
    """Codes of `flat` (1-D, `width` words each) within `bound` of q.
    (A count that also counted the codes at a second bound, the MIH
    loop's check then, ran the scan about 25 % slower at k = 10: two
    interleaved runs at 10^6 codes.)"""
    c = np.int64(0)
    if width == 1:
      q0 = q[0]
      for u in range(flat.shape[0]):
        c += np.int64(_ctpop(flat[u] ^ q0)) <= bound
    elif width == 2:
      q0, q1 = q[0], q[1]
      for u in range(flat.shape[0] // 2):
        c += (np.int64(_ctpop(flat[2 * u] ^ q0)) +
              np.int64(_ctpop(flat[2 * u + 1] ^ q1))) <= bound
    else:
      for u in range(flat.shape[0] // width):
        d = np.int64(0)
        for w in range(width):
          d += np.int64(_ctpop(flat[u * width + w] ^ q[w]))
        c += d <= bound
    return c

  @numba.njit(nogil=True, cache=True)
  def _compact(k, tau, below, buf_d, buf_i, fill):
    """Keeps, in row order, the entries below tau and the first k - below
    at tau; returns their number (<= k)."""
    quota = k - below
    n = 0
    for e in range(fill):
      d = buf_d[e]
      if d < tau or (d == tau and quota > 0):
        if d == tau:
          quota -= 1
        buf_d[n] = d
        buf_i[n] = buf_i[e]
        n += 1
    return n

  @numba.njit(nogil=True, cache=True)
  def _take(flat, width, q, row0, k, state, hist, buf_d, buf_i, dist):
    """Enters the codes of a tile into one query's state [tau, below,
    fill] (see the module docstring): their distances first, in a loop the
    compiler vectorises (mih_numba._distances), then a pass over them."""
    _distances(flat, width, q, dist)
    tau, below, fill = state[0], state[1], state[2]
    cap = buf_d.shape[0]
    for u in range(flat.shape[0] // width):
      d = dist[u]
      if d > tau or (d == tau and below + hist[d] >= k):
        continue
      if fill == cap:
        fill = _compact(k, tau, below, buf_d, buf_i, fill)
      buf_d[fill] = d
      buf_i[fill] = row0 + u
      fill += 1
      hist[d] += 1
      if d < tau:
        below += 1
        while below >= k:   # the k-th distance is below tau
          tau -= 1
          below -= hist[tau]
    state[0], state[1], state[2] = tau, below, fill

  @numba.njit(nogil=True, cache=True)
  def _scan(q_words, flat, width, rows, row0, k, first, last, n_parts,
            state, hist, buf_d, buf_i):
    """Work items first..last-1: item = block * n_parts + part, the
    queries of a block against the part-th range of the chunk's rows."""
    num_q = q_words.shape[0]
    dist = np.empty(TILE, np.int64)
    for item in range(first, last):
      b, p = item // n_parts, item % n_parts
      lo, hi = rows * p // n_parts, rows * (p + 1) // n_parts
      q_lo, q_hi = b * QBLOCK, min(num_q, (b + 1) * QBLOCK)
      for t0 in range(lo, hi, TILE):
        t1 = min(hi, t0 + TILE)
        tile = flat[t0 * width:t1 * width]
        for i in range(q_lo, q_hi):
          tau = state[i, p, 0]   # a code at tau enters only within quota
          bound = tau - (state[i, p, 1] + hist[i, p, tau] >= k)
          if _count(tile, width, q_words[i], bound) > 0:
            _take(tile, width, q_words[i], row0 + t0, k, state[i, p],
                  hist[i, p], buf_d[i, p], buf_i[i, p], dist)

  @numba.njit(nogil=True, cache=True)
  def _finish(k, bits, state, hist, buf_d, buf_i, out_d, out_i):
    """Merges each query's parts into its top k by (distance, row)."""
    num_q, n_parts = state.shape[0], state.shape[1]
    count = np.zeros(bits + 2, np.int64)
    start = np.zeros(bits + 2, np.int64)
    for i in range(num_q):
      count[:] = 0
      for p in range(n_parts):
        for e in range(state[i, p, 2]):
          count[buf_d[i, p, e]] += 1
      d_k, total = 0, count[0]
      while total < k:
        d_k += 1
        total += count[d_k]
      if n_parts == 1:   # one part: entries in row order; place by distance
        start[0] = 0
        for d in range(1, d_k + 1):
          start[d] = start[d - 1] + count[d - 1]
        for e in range(state[i, 0, 2]):
          d = buf_d[i, 0, e]
          if d <= d_k and start[d] < k:
            out_d[i, start[d]] = d
            out_i[i, start[d]] = buf_i[i, 0, e]
            start[d] += 1
      else:              # rows of parts interleave: sort the keys
        keys = np.empty(total, np.int64)
        n = 0
        for p in range(n_parts):
          for e in range(state[i, p, 2]):
            if buf_d[i, p, e] <= d_k:
              keys[n] = (np.int64(buf_d[i, p, e]) << 48) | buf_i[i, p, e]
              n += 1
        keys = np.sort(keys[:n])
        for t in range(k):
          out_d[i, t] = keys[t] >> 48
          out_i[i, t] = keys[t] & ((np.int64(1) << 48) - 1)

  @numba.njit(nogil=True, cache=True)
  def _within(q_words, flat, width, r, row0, first, last, n_parts):
    """The codes within r of each query for work items first..last-1 (as
    in _scan: a block of queries against a range of the chunk's rows), in
    one pass: a tile's codes are counted (vectorised), and only a tile
    with a match gets its distances (vectorised) and a walk that keeps the
    matches, while it is in cache. After a tile with a match the count is
    skipped (matches come in runs: a wide radius, a dense cluster; 10-15%
    faster at radius 6 on clustered codes, bench/archive.py).

    Returns:
      (dist int32, rows int64, ends int64 [(last - first) * QBLOCK]): the
      matches of item e's c-th query, in row order, end at
      ends[e * QBLOCK + c] (they start where the previous entry ends).
    """
    num_q = q_words.shape[0]
    rows = flat.shape[0] // width
    ends = np.zeros((last - first) * QBLOCK, np.int64)
    out_d = np.empty(1024, np.int32)
    out_i = np.empty(1024, np.int64)
    n = 0
    buf_d = np.empty((QBLOCK, 1024), np.int32)
    buf_i = np.empty((QBLOCK, 1024), np.int64)
    fill = np.zeros(QBLOCK, np.int64)
    dense = np.zeros(QBLOCK, np.bool_)
    dist = np.empty(TILE, np.int64)
    for item in range(first, last):
      b, p = item // n_parts, item % n_parts
      lo, hi = rows * p // n_parts, rows * (p + 1) // n_parts
      q_lo, q_hi = b * QBLOCK, min(num_q, (b + 1) * QBLOCK)
      fill[:] = 0
      dense[:] = False
      for t0 in range(lo, hi, TILE):
        t1 = min(hi, t0 + TILE)
        tile = flat[t0 * width:t1 * width]
        for i in range(q_lo, q_hi):
          c = i - q_lo
          if not dense[c] and _count(tile, width, q_words[i], r) == 0:
            continue
          if fill[c] + (t1 - t0) > buf_d.shape[1]:
            cap = 2 * buf_d.shape[1]
            grown_d = np.empty((QBLOCK, cap), np.int32)
            grown_i = np.empty((QBLOCK, cap), np.int64)
            grown_d[:, :buf_d.shape[1]] = buf_d
            grown_i[:, :buf_i.shape[1]] = buf_i
            buf_d, buf_i = grown_d, grown_i
          f = fill[c]
          _distances(tile, width, q_words[i], dist)
          for u in range(t1 - t0):
            if dist[u] <= r:
              buf_d[c, f] = dist[u]
              buf_i[c, f] = row0 + t0 + u
              f += 1
          dense[c] = f > fill[c]
          fill[c] = f
      for c in range(QBLOCK):
        if n + fill[c] > out_d.shape[0]:
          cap = max(2 * out_d.shape[0], n + fill[c])
          grown_d = np.empty(cap, np.int32)
          grown_i = np.empty(cap, np.int64)
          grown_d[:n] = out_d[:n]
          grown_i[:n] = out_i[:n]
          out_d, out_i = grown_d, grown_i
        out_d[n:n + fill[c]] = buf_d[c, :fill[c]]
        out_i[n:n + fill[c]] = buf_i[c, :fill[c]]
        n += fill[c]
        ends[(item - first) * QBLOCK + c] = n
    return out_d[:n], out_i[:n], ends

  @numba.njit(nogil=True, cache=True)
  def _by_distance(d, i, r):
    """(d, i) in row order -> by (distance, row): a stable counting sort
    over the distances 0..r."""
    start = np.zeros(r + 2, np.int64)
    for e in range(d.shape[0]):
      start[d[e] + 1] += 1
    for v in range(1, r + 2):
      start[v] += start[v - 1]
    out_d = np.empty_like(d)
    out_i = np.empty_like(i)
    for e in range(d.shape[0]):
      at = start[d[e]]
      out_d[at] = d[e]
      out_i[at] = i[e]
      start[d[e]] = at + 1
    return out_d, out_i

def require():
  """Raises, naming the fix, where numba is not installed."""
  if not AVAILABLE:
    raise RuntimeError('The compiled flat scan needs numba: pip install '
                       'numba (the `fast` extra).')


def search(q_packed, db_packed, k, bits, *, db_chunk=1 << 22,
           max_entries=1 << 25):
  """Exact top-k of every query: (distances [Q, k] int32, rows [Q, k]
  int64) numpy, ascending distance, ties by row, as topk.search.

  `db_packed`: uint32 [N, W] (numpy, memory-mapped or shards.Rows), read
  `db_chunk` codes at a time. Queries go in groups whose buffers hold at
  most `max_entries` entries (each group reads the codes once)."""
  require()
  n = db_packed.shape[0]
  k = int(min(k, n))
  if k < 1:
    raise ValueError('search needs a non-empty database and k >= 1.')
  q = index.words(q_packed)
  num_q = q.shape[0]
  threads = workers.threads()
  cap = 2 * k + 64
  out_d = np.empty((num_q, k), np.int32)
  out_i = np.empty((num_q, k), np.int64)
  group = max(QBLOCK, max_entries // cap // QBLOCK * QBLOCK)
  for g0 in range(0, num_q, group):
    qg = q[g0:g0 + group]
    blocks = -(-len(qg) // QBLOCK)
    n_parts = max(1, -(-threads // blocks))
    state = np.zeros((len(qg), n_parts, 3), np.int64)
    state[:, :, 0] = bits                      # tau
    hist = np.zeros((len(qg), n_parts, bits + 2), np.int64)
    buf_d = np.empty((len(qg), n_parts, cap), np.int32)
    buf_i = np.empty((len(qg), n_parts, cap), np.int64)
    for start in range(0, n, db_chunk):
      chunk = index.words(db_packed[start:start + db_chunk])
      flat = chunk.reshape(-1)

      def items(lo, hi, flat=flat, chunk=chunk, start=start):
        _scan(qg, flat, chunk.shape[1], chunk.shape[0], start, k, lo, hi,
              n_parts, state, hist, buf_d, buf_i)
      workers.run_split(items, blocks * n_parts, threads)
    _finish(k, bits, state, hist, buf_d, buf_i, out_d[g0:g0 + group],
            out_i[g0:g0 + group])
  return out_d, out_i


def within(q_packed, db_packed, r, bits, *, db_chunk=1 << 22):
  """Every code within Hamming distance r of each query: a list with, per
  query, (distances int32, rows int64) by (distance, row), as
  mih.radius_flat (the NumPy oracle; tests/search_test.py checks this scan
  against a brute-force matrix).

  One pass over each chunk of `db_chunk` codes (`_within`: work items of
  a block of queries and a range of rows, on threads), the matches of
  each query then put in (distance, row) order by a counting sort."""
  require()
  n = db_packed.shape[0]
  r = int(min(r, bits))
  q = index.words(q_packed)
  num_q = q.shape[0]
  threads = workers.threads()
  blocks = -(-num_q // QBLOCK)
  pieces = [[] for _ in range(num_q)]   # (dist, rows) segments, row order
  for start in range(0, n, db_chunk):
    chunk = index.words(db_packed[start:start + db_chunk])
    flat, width = chunk.reshape(-1), chunk.shape[1]
    n_parts = max(1, min(-(-chunk.shape[0] // TILE), -(-threads // blocks)))
    got = {}

    def items(lo, hi, flat=flat, width=width, n_parts=n_parts, s=start,
              got=got):
      got[lo] = (hi,) + _within(q, flat, width, r, s, lo, hi, n_parts)
    workers.run_split(items, blocks * n_parts, threads)
    for lo, (hi, d, i, ends) in sorted(got.items()):
      prev = 0
      for e in range(hi - lo):   # a block's parts come in row order
        b = (lo + e) // n_parts
        for c in range(QBLOCK):
          end = ends[e * QBLOCK + c]
          if end > prev and b * QBLOCK + c < num_q:
            pieces[b * QBLOCK + c].append((d[prev:end], i[prev:end]))
          prev = end
  out = [None] * num_q

  def sort(lo, hi):
    for j in range(lo, hi):
      if pieces[j]:
        d = np.concatenate([x[0] for x in pieces[j]])
        i = np.concatenate([x[1] for x in pieces[j]])
        out[j] = _by_distance(d, i, r)
      else:
        out[j] = (np.zeros(0, np.int32), np.zeros(0, np.int64))
  workers.run_split(sort, num_q, threads)
  return out
