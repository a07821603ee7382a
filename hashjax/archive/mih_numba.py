"""Multi-index hashing's probe-and-verify loop, compiled with numba.

`mih.search` in NumPy pays for every probe step in calls (about 20 NumPy
calls per substring, radius and shard) and for every candidate in gathers
and set unions. Here one compiled loop (`_in_step`) runs whole queries: it
walks the radii s = 0, 1, ... and the substrings j exactly as
`mih._knn_one` does (the same stopping rule, the same work count for the
budget), enumerates the s-bit XOR masks in place (Gosper's hack) instead
of reading cached mask arrays, verifies each probed bucket by a popcount
over its codes, stored contiguously in bucket order (`mih.Tables.codes`),
and keeps the k best (distance * N + global row) keys in a sorted array,
so an item found again through another substring is recognised and
dropped. Reading a bucket's codes as one run, instead of one random row
per candidate through the row table, and touching the runs of 512 buckets
before scanning them (so their cache misses overlap) made the loop 1.5-5x
faster at 10^7 codes.
Checking a block of a bucket's codes against the k-th best distance in a
loop the compiler vectorises (now `_nearest`), and walking only the blocks
that hold a code that can enter, made it 1.2-3.4x faster again.
Prefetching the bucket 16 places ahead while one is verified, instead of
touching the runs first, made it 1.1-1.8x faster on random codes
(docs/benchmarks.md). The results are the same integers as the NumPy path
(tests/mih_test.py runs both against the flat scan).

`knn` runs the queries one after another through that loop. `knn_shared`
runs them in step: each probe step's buckets are verified in bucket order
for every query that probes them, so that a bucket several queries probe
is read once and the tables are swept in order. Same results; faster from
about a hundred queries a thread on tables held in memory
(docs/benchmarks.md). (`knn` had a loop of its own until commit 81069c7;
the one loop for both was as fast: docs/benchmarks.md.)

`radius` runs the radius search (every code within r) the same way: the
buckets the pigeonhole bound names, each bucket's codes as one run, a code
found through several substrings kept once.

Optional: `pip install numba` (the `fast` extra). Without it `mih` uses its
NumPy loop.
"""
import numpy as np

try:
  import numba  # pylint: disable=g-import-not-at-top
  from numba.extending import intrinsic  # pylint: disable=g-import-not-at-top
  from llvmlite import ir  # pylint: disable=g-import-not-at-top
  from numba.core import cgutils  # pylint: disable=g-import-not-at-top
except ImportError:  # the `fast` extra is not installed
  numba = None

AVAILABLE = numba is not None
# A bucket is verified in blocks of BLOCK codes, a block's least distance
# found first by a vectorised loop (`_nearest`) to skip it where no code can
# count, except in a block of fewer than SMALL codes.
SMALL = 16
BLOCK = 256
# While a bucket is verified, the first TOUCH codes of the bucket AHEAD
# places later are prefetched, so that its cache misses overlap the work
# (a whole bucket up to this size: bench/mih_m.py at 10^7 random codes,
# m = 4, buckets of ~150 codes: 1.2-1.3x over 32; AHEAD = 16 buckets:
# docs/benchmarks.md).
TOUCH = 512
AHEAD = 16
# Masks (and buckets) a probe step handles at a time.
CHUNK = 512
# knn_shared groups a step's (bucket, query) pairs by at most the top
# SORT_BITS bits of their part and bucket, PAIRS pairs (8 MiB) at a time.
SORT_BITS = 16
PAIRS = 1 << 20

if AVAILABLE:

  @intrinsic
  def _ctpop(typingctx, x):  # pylint: disable=unused-argument
    """LLVM's population count (one POPCNT instruction on x86-64)."""
    sig = x(x)

    def codegen(context, builder, signature, args):
      del context, signature
      return builder.ctpop(args[0])

    return sig, codegen

  @intrinsic
  def _ctz(typingctx, x):  # pylint: disable=unused-argument
    """LLVM's count of trailing zeros (one TZCNT on x86-64); x != 0."""
    sig = x(x)

    def codegen(context, builder, signature, args):
      del context, signature
      return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen

  @intrinsic
  def _prefetch(typingctx, array, index):  # pylint: disable=unused-argument
    """LLVM's prefetch of array[index]'s cache line (PREFETCHT0): nothing
    waits for it, and an index past the array does not fault."""
    sig = numba.types.void(array, index)

    def codegen(context, builder, signature, args):
      arytype = signature.args[0]
      ary = context.make_array(arytype)(context, builder, args[0])
      ptr = cgutils.get_item_pointer(context, builder, arytype, ary,
                                     [args[1]], wraparound=False)
      i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
      fn = cgutils.get_or_insert_function(
          builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
          'llvm.prefetch.p0')
      # A read, kept in every cache level, of data.
      builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
      return context.get_dummy_value()

    return sig, codegen

  @numba.njit(nogil=True, cache=True)
  def _fetch(flat, width, first, last, t):
    """Prefetches the first TOUCH codes of bucket t, [first[t], last[t])
    of `flat` (`width` words a code), unless it is the bucket before it
    again (in the shared loop, the next query on the same bucket)."""
    if t > 0 and first[t] == first[t - 1]:
      return
    _prefetch_lines(flat, first[t] * width,
                    min(last[t], first[t] + TOUCH) * width)

  @numba.njit(nogil=True, cache=True)
  def _prefetch_lines(array, lo, hi):
    """Prefetches every cache line of array[lo:hi]: a bucket's codes
    (`_fetch`), or the rows of a block about to be walked, read for the
    codes that can count, so that their misses overlap the block's
    distances (docs/benchmarks.md)."""
    for u in range(lo, hi, 64 // array.itemsize):
      _prefetch(array, u)

  @numba.njit(nogil=True, cache=True)
  def _insert(best, count, k, key):
    """Inserts `key` into the ascending best[:count] (at most k kept);
    returns the new count. A key already present is not inserted again."""
    lo, hi = 0, count
    while lo < hi:
      mid = (lo + hi) >> 1
      if best[mid] < key:
        lo = mid + 1
      else:
        hi = mid
    if lo < count and best[lo] == key:
      return count
    if lo >= k:
      return count
    end = count if count < k else k - 1
    for t in range(end, lo, -1):
      best[t] = best[t - 1]
    best[lo] = key
    return count + 1 if count < k else k

  @numba.njit(nogil=True, cache=True)
  def _nearest(flat, width, q):
    """The least distance to q of the codes of `flat` (1-D, `width` words
    each; at least one code). A branch-free loop over a contiguous slice,
    which the compiler vectorises: this is where a verified code's cost
    goes. (It replaced counting the codes below and at a bound, two
    reductions where one says whether a block holds an entrant: 1.1-1.15x
    on the search loop, docs/benchmarks.md.)"""
    near = np.int64(1 << 30)
    if width == 1:
      q0 = q[0]
      for u in range(flat.shape[0]):
        near = min(near, np.int64(_ctpop(flat[u] ^ q0)))
    elif width == 2:
      q0, q1 = q[0], q[1]
      for u in range(flat.shape[0] // 2):
        near = min(near, np.int64(_ctpop(flat[2 * u] ^ q0)) +
                   np.int64(_ctpop(flat[2 * u + 1] ^ q1)))
    else:
      for u in range(flat.shape[0] // width):
        d = np.int64(0)
        for w in range(width):
          d += np.int64(_ctpop(flat[u * width + w] ^ q[w]))
        near = min(near, d)
    return near

  @numba.njit(nogil=True, cache=True)
  def _distances(flat, width, q, dist):
    """dist[u] = the distance to q of code u of `flat` (1-D, `width` words
    a code), vectorised like `_nearest`."""
    if width == 1:
      q0 = q[0]
      for u in range(flat.shape[0]):
        dist[u] = np.int64(_ctpop(flat[u] ^ q0))
    elif width == 2:
      q0, q1 = q[0], q[1]
      for u in range(flat.shape[0] // 2):
        dist[u] = (np.int64(_ctpop(flat[2 * u] ^ q0)) +
                   np.int64(_ctpop(flat[2 * u + 1] ^ q1)))
    else:
      for u in range(flat.shape[0] // width):
        d = np.int64(0)
        for w in range(width):
          d += np.int64(_ctpop(flat[u * width + w] ^ q[w]))
        dist[u] = d

  @numba.njit(nogil=True, cache=True)
  def _scan(codes, rows, first, last, n_buckets, who, q_words, base, total,
            k, best_out, count_out, dist):
    """Verifies the buckets [first[t], last[t]) of one table, bucket t for
    query who[t] (none where it is negative): their codes are contiguous in
    `codes` (bucket order). A candidate's row is read only when its
    distance could enter the query's k best, best_out[i][:count_out[i]].

    Bucket t + AHEAD is prefetched while bucket t is verified (`_fetch`),
    so that their cache misses overlap the work. A bucket goes in blocks
    of BLOCK codes. Once the query holds k, `_nearest` finds a block's
    least distance first, in a vectorised loop, and only a block holding a
    code that can enter the k best (nearer than the k-th best, or as near)
    gets its distances (`_distances`, into `dist`) and a pass over them
    that inserts, its rows prefetched first (`_prefetch_lines`); a block of
    fewer than SMALL codes skips that test. A code
    at exactly the k-th best distance enters only with a smaller row, and
    rows ascend within a bucket, so a block with only such ties needs the
    pass only if its first row is below the k-th best's."""
    width = q_words.shape[1]
    flat = codes.reshape(-1)
    for t in range(min(AHEAD, n_buckets)):
      _fetch(flat, width, first, last, t)
    i = np.int64(-1)           # the query whose state is loaded
    q = q_words[0]
    best = best_out[0]
    count = np.int64(0)
    for t in range(n_buckets):
      if t + AHEAD < n_buckets:
        _fetch(flat, width, first, last, t + AHEAD)
      if who[t] != i:
        if i >= 0:
          count_out[i] = count
        i = who[t]
        if i >= 0:
          q = q_words[i]
          best = best_out[i]
          count = count_out[i]
      if i < 0:
        continue
      lo = first[t]
      while lo < last[t]:
        hi = min(last[t], lo + BLOCK)
        block = flat[lo * width:hi * width]
        if count == k and hi - lo >= SMALL:
          # Skipped unless a code can enter: the k-th best's distance
          # against the block's least, without a division a code.
          above = best[k - 1] - _nearest(block, width, q) * total
          if not (above >= total or (above >= 0 and base + rows[lo] < above)):
            lo = hi
            continue
        _prefetch_lines(rows, lo, hi)
        _distances(block, width, q, dist)
        bound = (np.int64(1) << 62) if count < k else best[k - 1] // total
        for u in range(hi - lo):
          if dist[u] <= bound:
            key = dist[u] * total + base + rows[lo + u]
            if count < k or key < best[count - 1]:
              count = _insert(best, count, k, key)
              if count == k:
                bound = best[k - 1] // total
        lo = hi
    if i >= 0:
      count_out[i] = count

  @numba.njit(nogil=True, cache=True)
  def _next_masks(key, mask, s, limit, masks):
    """Fills masks[] with key ^ mask for the next masks of weight s below
    `limit`, ascending from `mask` (Gosper's hack: the next larger value
    with s bits); returns (how many, the next mask; limit when done)."""
    n_masks = 0
    while mask < limit and n_masks < masks.shape[0]:
      masks[n_masks] = key ^ mask
      n_masks += 1
      if s == 0:
        mask = limit
      else:
        low = mask & -mask
        ripple = mask + low
        mask = (((ripple ^ mask) >> 2) >> _ctz(low)) | ripple
    return n_masks, mask

  @numba.njit(nogil=True, cache=True)
  def _bounds(off, masks, n_masks, first, last, probe_work):
    """The buckets masks[:n_masks] of a table with offsets `off`: their
    bounds into first/last; returns their work (probe_work each + their
    codes)."""
    work = n_masks * probe_work
    for t in range(n_masks):
      first[t] = off[masks[t]]
      last[t] = off[masks[t] + 1]
    for t in range(n_masks):
      work += last[t] - first[t]
    return work

  @numba.njit(nogil=True, cache=True)
  def _buffers():
    """The loops' scratch arrays: a chunk of CHUNK masks, their buckets'
    bounds and queries, a block's distances."""
    return (np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64),
            np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64),
            np.empty(BLOCK, np.int64))

  @numba.njit(nogil=True, cache=True)
  def _step_buffers(num_q):
    """`_in_step`'s own scratch for num_q queries: a step's pairs (grown
    as needed), the same grouped by bucket, the grouping's histogram, and
    per query whether it is still searching, whether it had not given up
    before, and its work."""
    return (np.empty(4096, np.int64), np.empty(4096, np.int64),
            np.empty((1 << SORT_BITS) + 1, np.int64),
            np.empty(num_q, np.bool_), np.empty(num_q, np.bool_),
            np.empty(num_q, np.float64))

  @numba.njit(nogil=True, cache=True)
  def _bits(n):
    """The fewest bits b with 2^b >= n."""
    b = 0
    while (np.int64(1) << b) < n:
      b += 1
    return b

  @numba.njit(nogil=True, cache=True)
  def _step_pairs(i, q_keys, j, s, length, offsets, m, num_parts, q_bits,
                  budget, step_work, probe_work, active, spent, gave_up_out,
                  masks, first, last, pairs, n_pairs):
    """Appends to pairs[n_pairs:] query i's (part, bucket, query) keys of
    probe step (s, j), for its non-empty buckets, enumerating the masks
    CHUNK at a time, charging its work to spent[i] as `mih._knn_one` does
    (a query past the budget gives up and leaves the step). Returns
    (pairs, n_pairs); pairs is a new, larger array when it filled."""
    work = spent[i] + step_work * num_parts
    limit = np.int64(1) << length
    mask = (np.int64(1) << s) - 1
    if work > budget:
      mask = limit
      gave_up_out[i] = True
    while mask < limit:
      n_masks, mask = _next_masks(q_keys[i, j], mask, s, limit, masks)
      for p in range(num_parts):
        work += _bounds(offsets[p * m + j], masks, n_masks, first, last,
                        probe_work)
        for t in range(n_masks):
          if last[t] > first[t]:
            if n_pairs == pairs.shape[0]:
              grown = np.empty(2 * n_pairs, np.int64)
              grown[:n_pairs] = pairs
              pairs = grown
            pairs[n_pairs] = (((np.int64(p) << length) | masks[t])
                              << q_bits) | i
            n_pairs += 1
      if work > budget:
        gave_up_out[i] = True
        break
    spent[i] = work
    if gave_up_out[i]:
      active[i] = False
    return pairs, n_pairs

  @numba.njit(nogil=True, cache=True)
  def _by_bucket(pairs, n_pairs, top, q_bits, todo, hist):
    """pairs[:n_pairs] grouped by their top `top` bits above the query's
    q_bits (part and bucket): a counting sort into todo (a new, larger
    array when too small) on about as many bins as pairs, at most
    2^SORT_BITS, so buckets near each other share a bin, in query order.
    Returns todo."""
    sort_bits = min(SORT_BITS, max(1, _bits(n_pairs)))
    shift = max(0, top - sort_bits)
    if todo.shape[0] < n_pairs:
      todo = np.empty(pairs.shape[0], np.int64)
    bins = np.int64(1) << (top - shift)
    hist[:bins + 1] = 0
    for t in range(n_pairs):
      hist[(pairs[t] >> (q_bits + shift)) + 1] += 1
    for t in range(bins):
      hist[t + 1] += hist[t]
    for t in range(n_pairs):
      b = pairs[t] >> (q_bits + shift)
      todo[hist[b]] = pairs[t]
      hist[b] += 1
    return todo

  @numba.njit(nogil=True, cache=True)
  def _in_step(q_words, q_keys, lengths, offsets, rows, codes, part_offsets,
               total, k, budget, step_work, probe_work, best_out, count_out,
               work_out, gave_up_out, max_pairs, buffers, steps):
    """The loop of `knn` and `knn_shared`: the probe steps (radius s,
    substring j) of the queries together, each step's (part, bucket,
    query) pairs made (`_step_pairs`) and, for more than one query,
    grouped by bucket (`_by_bucket`), then verified (`_scan`). A step
    whose pairs pass `max_pairs` goes in rounds of queries. `buffers` and
    `steps` are the scratch (`_buffers`, `_step_buffers`); returns
    `steps`, its pair arrays maybe grown."""
    masks, first, last, who, dist = buffers
    pairs, todo, hist, active, entered, spent = steps
    num_q = q_words.shape[0]
    m = lengths.shape[0]
    num_parts = part_offsets.shape[0]
    q_bits = max(1, _bits(num_q))
    p_bits = _bits(num_parts)
    q_mask = (np.int64(1) << q_bits) - 1
    left = 0
    for i in range(num_q):
      active[i] = not gave_up_out[i]
      entered[i] = active[i]
      spent[i] = work_out[i]
      left += active[i]
    for s in range(lengths.max() + 1):
      if left == 0:
        break
      for j in range(m):
        length = lengths[j]
        if s > length:
          continue
        b_mask = (np.int64(1) << length) - 1
        i = 0
        while i < num_q:           # rounds of queries, max_pairs each
          n_pairs = 0
          while i < num_q and n_pairs < max_pairs:
            if active[i]:
              pairs, n_pairs = _step_pairs(
                  i, q_keys, j, s, length, offsets, m, num_parts, q_bits,
                  budget, step_work, probe_work, active, spent, gave_up_out,
                  masks, first, last, pairs, n_pairs)
            i += 1
          if num_q > 1:
            todo = _by_bucket(pairs, n_pairs, length + p_bits, q_bits, todo,
                              hist)
          else:   # one query: its buckets in probe order, runs of a part
            todo = pairs
          start = 0
          while start < n_pairs:   # chunks of pairs of one part
            p = todo[start] >> (q_bits + length)
            end = start
            while (end < n_pairs and end - start < CHUNK and
                   todo[end] >> (q_bits + length) == p):
              end += 1
            off = offsets[p * m + j]
            for t in range(end - start):
              b = (todo[start + t] >> q_bits) & b_mask
              first[t] = off[b]
              last[t] = off[b + 1]
              query = todo[start + t] & q_mask
              who[t] = query if active[query] else -1
            _scan(codes[p * m + j], rows[p * m + j], first, last,
                  end - start, who, q_words, part_offsets[p], total, k,
                  best_out, count_out, dist)
            start = end
        left = 0
        for i in range(num_q):
          if active[i]:
            if (count_out[i] == k and
                best_out[i, k - 1] // total <= m * s + j):
              active[i] = False
            else:
              left += 1
        if left == 0:
          break
    for i in range(num_q):
      if entered[i]:
        work_out[i] = spent[i]
        if gave_up_out[i]:
          count_out[i] = 0
        for t in range(count_out[i], k):
          best_out[i, t] = -1
    return pairs, todo, hist, active, entered, spent

  @numba.njit(nogil=True, cache=True)
  def knn(q_words, q_keys, lengths, offsets, rows, codes, part_offsets,
          total, k, budget, step_work, probe_work, best_out, count_out,
          work_out, gave_up_out):
    """k nearest of each query over all parts (see `mih._knn_one`), the
    queries one after another, each through `_in_step` alone: its buckets
    in probe order, each bucket's codes read for it.

    Args:
      q_words: [Q, W] the queries in the parts' word layout.
      q_keys: [Q, m] int64 substrings of each query.
      lengths: [m] int64 substring lengths.
      offsets, rows, codes: typed lists, entry p * m + j = table j of part
        p: bucket offsets, rows in bucket order, codes [N_p, W] in bucket
        order.
      part_offsets: [P] int64 global row of each part's first code.
      total: N over all parts.
      k: results per query (<= total).
      budget: work after which a query gives up (float, may be inf).
      step_work: work charged per probe step (substring, radius, part).
      probe_work: work charged per bucket probed (a verified code: 1).
      best_out: [Q, k] int64: ascending keys distance * total + row
        (-1 beyond count_out).
      count_out: [Q] int64: keys held in best_out.
      work_out: [Q] int64: the work per query.
      gave_up_out: [Q] bool.
      The four outputs are read first: a search over parts can go a part
      per call, each query carrying its k best (a bound for the next part),
      its work and whether it gave up (then it is skipped).
    """
    buffers, steps = _buffers(), _step_buffers(1)
    for i in range(q_words.shape[0]):
      steps = _in_step(
          q_words[i:i + 1], q_keys[i:i + 1], lengths, offsets, rows, codes,
          part_offsets, total, k, budget, step_work, probe_work,
          best_out[i:i + 1], count_out[i:i + 1], work_out[i:i + 1],
          gave_up_out[i:i + 1], PAIRS, buffers, steps)

  @numba.njit(nogil=True, cache=True)
  def knn_shared(q_words, q_keys, lengths, offsets, rows, codes,
                 part_offsets, total, k, budget, step_work, probe_work,
                 best_out, count_out, work_out, gave_up_out,
                 max_pairs=PAIRS):
    """`knn` with the queries in step: the same probe steps, stopping rule
    and work count, so the same results, but each step's buckets are
    verified bucket by bucket for every query that probes them, in bucket
    order (`_by_bucket`), rather than query by query. A bucket probed by
    several queries is then read from memory once, and the tables are
    read in one sweep instead of at random places. A step whose pairs
    pass `max_pairs` goes in rounds of queries, so memory stays bounded.
    Otherwise the same arguments and outputs as `knn`."""
    _in_step(q_words, q_keys, lengths, offsets, rows, codes, part_offsets,
             total, k, budget, step_work, probe_work, best_out, count_out,
             work_out, gave_up_out, max_pairs, _buffers(),
             _step_buffers(q_words.shape[0]))

  @numba.njit(nogil=True, cache=True)
  def _radius_verify(codes, rows, first, last, n_buckets, q, r, base, total,
                     found, n, dist):
    """Appends to found[n:] the key distance * total + base + row of every
    code within r in the buckets [first[t], last[t]) of one table (codes
    in bucket order), each bucket in blocks, the bucket AHEAD places later
    prefetched meanwhile, as in `_scan`. Returns (found, n);
    found is a new, larger array when it filled."""
    width = q.shape[0]
    flat = codes.reshape(-1)
    for t in range(min(AHEAD, n_buckets)):
      _fetch(flat, width, first, last, t)
    for t in range(n_buckets):
      if t + AHEAD < n_buckets:
        _fetch(flat, width, first, last, t + AHEAD)
      lo = first[t]
      while lo < last[t]:
        hi = min(last[t], lo + BLOCK)
        block = flat[lo * width:hi * width]
        if hi - lo >= SMALL and _nearest(block, width, q) > r:
          lo = hi   # none within r
          continue
        _prefetch_lines(rows, lo, hi)
        _distances(block, width, q, dist)
        for u in range(lo, hi):
          d = dist[u - lo]
          if d <= r:
            if n == found.shape[0]:
              grown = np.empty(2 * n, np.int64)
              grown[:n] = found
              found = grown
            found[n] = d * total + base + rows[u]
            n += 1
        lo = hi
    return found, n

  @numba.njit(nogil=True, cache=True)
  def radius(q_words, q_keys, lengths, offsets, rows, codes, part_offsets,
             total, r, budget, probe_work):
    """Every code within Hamming distance r of each query over the parts
    (typed lists as `knn`), as keys distance * total + global row.

    With r = m * s0 + last, a code within r has a substring j <= last
    within s0 or a substring j > last within s0 - 1 of the query's
    (pigeonhole), so those are the buckets probed, in chunks of CHUNK
    masks, a bucket's codes verified in blocks as in `_scan` (a
    vectorised count first). A code found through several substrings is
    kept once.
    A query whose work (probe_work per bucket probed + codes in them)
    passes its budget (float64 [Q]; negative: skipped) gives up, found by
    a first sweep over the buckets' sizes alone, before any code is read:
    it keeps no keys and is flagged.

    Returns:
      (keys int64, ends int64 [Q], gave_up bool [Q], work float64 [Q]):
      query i's keys, ascending, are keys[ends[i - 1]:ends[i]].
    """
    num_q = q_words.shape[0]
    m = lengths.shape[0]
    num_parts = part_offsets.shape[0]
    s0, last_j = r // m, r % m
    masks, first, last, _, dist = _buffers()
    found = np.empty(1024, np.int64)
    ends = np.zeros(num_q, np.int64)
    gave_up = np.zeros(num_q, np.bool_)
    spent = np.zeros(num_q, np.float64)
    n = 0
    for i in range(num_q):
      q = q_words[i]
      start = n
      work = 0.0
      gave_up[i] = budget[i] < 0
      # With a finite budget, a first sweep only adds up the work (bucket
      # sizes from the offsets): a query over budget gives up before any
      # code is read. The second sweep verifies.
      for sweep in range(0 if budget[i] == np.inf else -1, 1):
        if gave_up[i]:
          break
        verify = sweep == 0
        work = 0.0
        for s in range(s0 + 1):
          for j in range(m if s < s0 else last_j + 1):
            length = lengths[j]
            if s > length or gave_up[i]:
              continue
            limit = np.int64(1) << length
            key_j = q_keys[i, j]
            mask = (np.int64(1) << s) - 1
            while mask < limit and not gave_up[i]:
              n_masks, mask = _next_masks(key_j, mask, s, limit, masks)
              for p in range(num_parts):
                work += _bounds(offsets[p * m + j], masks, n_masks, first,
                                last, probe_work)
                if not verify:
                  if work > budget[i]:
                    gave_up[i] = True
                    break
                  continue
                found, n = _radius_verify(
                    codes[p * m + j], rows[p * m + j], first, last, n_masks,
                    q, r, part_offsets[p], total, found, n, dist)
      spent[i] = work
      if gave_up[i]:
        n = start
      if n > start:   # ascending, each code once
        found[start:n] = np.sort(found[start:n])
        kept = start + 1
        for e in range(start + 1, n):
          if found[e] != found[kept - 1]:
            found[kept] = found[e]
            kept += 1
        n = kept
      ends[i] = n
    return found[:n], ends, gave_up, spent
