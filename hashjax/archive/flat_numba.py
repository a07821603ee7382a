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
    mih_numba._near(..., bound + 1)[0] counts the same, but also counts
    the codes at its bound: called here instead, the scan ran about 25 %
    slower at k = 10 (two interleaved runs at 10^6 codes)."""
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
  def _within_count(q_words, flat, width, r, first, last, n_parts, counts):
    """counts[i, t]: the codes of tile t within r of query i. Work items
    first..last-1 as in _scan: (query block, range of tiles)."""
    num_q, n_tiles = counts.shape
    rows = flat.shape[0] // width
    for item in range(first, last):
      b, p = item // n_parts, item % n_parts
      q_lo, q_hi = b * QBLOCK, min(num_q, (b + 1) * QBLOCK)
      for t in range(n_tiles * p // n_parts, n_tiles * (p + 1) // n_parts):
        tile = flat[t * TILE * width:min(rows, (t + 1) * TILE) * width]
        for i in range(q_lo, q_hi):
          counts[i, t] = _count(tile, width, q_words[i], r)

  @numba.njit(nogil=True, cache=True)
  def _within_take(q_words, flat, width, r, row0, first, last, n_parts,
                   counts, where, out_d, out_i):
    """Writes the codes of each tile within r of each query, in row
    order, at out_*[where[i, t]:]; only tiles with counts[i, t] > 0 are
    read again."""
    num_q, n_tiles = counts.shape
    rows = flat.shape[0] // width
    dist = np.empty(TILE, np.int64)
    for item in range(first, last):
      b, p = item // n_parts, item % n_parts
      q_lo, q_hi = b * QBLOCK, min(num_q, (b + 1) * QBLOCK)
      for t in range(n_tiles * p // n_parts, n_tiles * (p + 1) // n_parts):
        t0 = t * TILE
        tile = flat[t0 * width:min(rows, t0 + TILE) * width]
        for i in range(q_lo, q_hi):
          if counts[i, t] == 0:
            continue
          _distances(tile, width, q_words[i], dist)
          e = where[i, t]
          for u in range(tile.shape[0] // width):
            if dist[u] <= r:
              out_d[e] = dist[u]
              out_i[e] = row0 + t0 + u
              e += 1


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


def within(q_packed, db_packed, r, bits, *, db_chunk=1 << 22,
           max_counts=1 << 24):
  """Every code within Hamming distance r of each query: a list with, per
  query, (distances int32, rows int64) by (distance, row), as
  mih.radius_flat (the NumPy oracle, tests/mih_test.py).

  Per chunk of `db_chunk` codes, two passes: a vectorised count of each
  tile's codes within r for each query (`_within_count`), then, into
  arrays of exactly that size, the distances and rows of the tiles that
  hold any (`_within_take`). Queries go in groups of at most `max_counts`
  (query, tile) counts."""
  require()
  del bits
  n = db_packed.shape[0]
  q = index.words(q_packed)
  num_q = q.shape[0]
  threads = workers.threads()
  found_d = [[] for _ in range(num_q)]
  found_i = [[] for _ in range(num_q)]
  for start in range(0, n, db_chunk):
    chunk = index.words(db_packed[start:start + db_chunk])
    flat, width = chunk.reshape(-1), chunk.shape[1]
    n_tiles = -(-chunk.shape[0] // TILE)
    group = max(QBLOCK, max_counts // max(1, n_tiles) // QBLOCK * QBLOCK)
    for g0 in range(0, num_q, group):
      qg = q[g0:g0 + group]
      blocks = -(-len(qg) // QBLOCK)
      n_parts = max(1, min(n_tiles, -(-threads // blocks)))
      counts = np.zeros((len(qg), n_tiles), np.int64)
      workers.run_split(
          lambda lo, hi, qg=qg, flat=flat, width=width, counts=counts,
          n_parts=n_parts: _within_count(qg, flat, width, int(r), lo, hi,
                                         n_parts, counts),
          blocks * n_parts, threads)
      ends = np.cumsum(counts.reshape(-1)).reshape(counts.shape)
      where = ends - counts
      out_d = np.empty(int(ends[-1, -1]) if ends.size else 0, np.int32)
      out_i = np.empty(out_d.shape[0], np.int64)
      workers.run_split(
          lambda lo, hi, qg=qg, flat=flat, width=width, counts=counts,
          where=where, out_d=out_d, out_i=out_i, n_parts=n_parts, s=start:
          _within_take(qg, flat, width, int(r), s, lo, hi, n_parts, counts,
                       where, out_d, out_i),
          blocks * n_parts, threads)
      for j in range(len(qg)):
        lo, hi = where[j, 0], ends[j, -1]
        if hi > lo:
          found_d[g0 + j].append(out_d[lo:hi])
          found_i[g0 + j].append(out_i[lo:hi])
  out = []
  for fd, fi in zip(found_d, found_i):
    d = np.concatenate(fd) if fd else np.zeros(0, np.int32)
    i = np.concatenate(fi) if fi else np.zeros(0, np.int64)
    order = np.argsort(d, kind='stable')   # rows ascend within a distance
    out.append((d[order], i[order]))
  return out
