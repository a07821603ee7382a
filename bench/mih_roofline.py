"""How fast exact MIH could be: the buckets it must read, against the flat scan.

  python bench/mih_roofline.py [--n=10000000] [--bits=64] [--k=1,10,100]
                               [--codes=random,clustered] [--queries=200]
                               [--batch=100]

Everything runs on one CPU core (the process is pinned to one), so the
flat scan and MIH compare per core. For random and clustered codes
(bench/archive.py's generator), m chosen from the codes as the search
command chooses it (mih.choose_m_for), and each k: the exact k-th distance
d of every query (from the flat scan) fixes the probe step that certifies
it, divmod(d, m) (tables 0..j at radius s, the others at s - 1): no exact
MIH search can read fewer buckets. Over exactly those buckets, per query
(best of 3):

  probe  the buckets' bounds only (the offsets read);
  read   + every code of those buckets read once (`touch`: a load per
         cache line, each bucket prefetched AHEAD buckets before, as MIH's
         loop does): the memory MIH cannot avoid, read as fast as it knows
         how;
  count  + every code's distance compared with d (mih_numba._nearest, a
         bucket's least distance; prefetched the same way): the least
         verification there is;
  mih    mih_numba.knn, the search itself (its first buckets are verified
         against a looser bound than d);
  seq    as many bytes as `read` read in one contiguous run of the
         database (memory speed without the buckets' random starts);
  step   the same buckets the way the shared loop takes them, in calls
         of --batch queries (100: a call of 200 on two threads): each
         probe step's (bucket, query) pairs made and grouped by bucket
         (mih_numba._step_pairs, _by_bucket), then each pair's least
         distance counted in that order, prefetched as `count`: the
         least the shared loop does for these queries;
  shared mih_numba.knn_shared, the search in calls of --batch queries;
  flat   the compiled flat scan (topk.search), per query.

The ceilings flat / read and flat / count bound MIH / flat on this
machine for a loop that reads each query's buckets for that query alone
(mih_numba.knn): it cannot beat the flat scan by more than flat / read,
however its verification is written. The shared loop of a call of many
queries (mih.search's choice from SHARED_QUERIES a thread) reads a bucket
once for all the queries of the call that probe it: its ceiling is
flat / step. Printed beside the measured flat / mih and flat / shared.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import numba  # pylint: disable=g-import-not-at-top,wrong-import-position

from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import mih_numba  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import topk  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position

AHEAD = mih_numba.AHEAD


@numba.njit(nogil=True)
def touch(flat, width, first, last, n_buckets, sink):
  """Reads codes [first[t], last[t]) of `flat` (`width` words a code) for
  each bucket t, a load per cache line, bucket t + AHEAD prefetched first
  (mih_numba._fetch, as the search's loop reads them); `sink`, a scratch
  word, keeps the loads from being optimised away. (Loads alone, without
  the prefetch, took 1.1-1.7x longer at 10^7 random codes, and the search
  ran faster than they did at k = 10.)"""
  x = flat.dtype.type(0)
  step = 64 // flat.itemsize
  for t in range(min(AHEAD, n_buckets)):
    mih_numba._fetch(flat, width, first, last, t)
  for t in range(n_buckets):
    if t + AHEAD < n_buckets:
      mih_numba._fetch(flat, width, first, last, t + AHEAD)
    for u in range(first[t] * width, last[t] * width, step):
      x ^= flat[u]
  sink[0] ^= x


@numba.njit(nogil=True)
def nearest_all(flat, width, first, last, n_buckets, q, d_k):
  """How many of the buckets hold a code within d_k of q: each bucket's
  least distance (mih_numba._nearest), bucket t + AHEAD prefetched first,
  as `touch`."""
  for t in range(min(AHEAD, n_buckets)):
    mih_numba._fetch(flat, width, first, last, t)
  hits = np.int64(0)
  for t in range(n_buckets):
    if t + AHEAD < n_buckets:
      mih_numba._fetch(flat, width, first, last, t + AHEAD)
    if last[t] > first[t]:
      hits += mih_numba._nearest(flat[first[t] * width:last[t] * width],
                                 width, q) <= d_k
  return hits


@numba.njit(nogil=True)
def certified_buckets(q_words, q_keys, lengths, offsets, codes, d_k, mode,
                      totals):
  """Walks, for each query, every bucket up to the step that certifies its
  k-th distance d_k[i]; mode 0 reads the bounds, 1 also reads every code,
  2 instead counts each code's distance against d_k[i] (reading it once).
  totals[i] = [buckets, codes] of query i. Returns a checksum (keeps the
  reads)."""
  m = lengths.shape[0]
  chunk = 512
  masks = np.empty(chunk, np.int64)
  first = np.empty(chunk, np.int64)
  last = np.empty(chunk, np.int64)
  sink = np.zeros(1, codes[0].dtype)
  check = np.int64(0)
  width = q_words.shape[1]
  for i in range(q_words.shape[0]):
    q = q_words[i]
    buckets = np.int64(0)
    n_codes = np.int64(0)
    s, j_stop = divmod(d_k[i], m)
    for r in range(s + 1):
      for j in range(m):
        if r == s and j > j_stop:
          break
        limit = np.int64(1) << lengths[j]
        if r > lengths[j]:
          continue
        mask = (np.int64(1) << r) - 1
        flat = codes[j].reshape(-1)
        while mask < limit:
          n_masks, mask = mih_numba._next_masks(q_keys[i, j], mask, r, limit,
                                                masks)
          n_codes += mih_numba._bounds(offsets[j], masks, n_masks, first,
                                       last, 0)
          buckets += n_masks
          if mode == 1:
            touch(flat, width, first, last, n_masks, sink)
          elif mode == 2:
            check += nearest_all(flat, width, first, last, n_masks, q,
                                 d_k[i])
    totals[i, 0] = buckets
    totals[i, 1] = n_codes
  return check + np.int64(sink[0] & 1)


@numba.njit(nogil=True)
def certified_pairs(q_words, q_keys, lengths, offsets, codes, d_k):
  """`certified_buckets`' buckets for the queries of one call, taken as
  mih_numba.knn_shared takes them: each probe step (radius r, substring
  j) makes the (bucket, query) pairs of the queries it certifies, groups
  them by bucket, and counts each pair's least distance against d_k[i]
  in that order, the pair AHEAD places later prefetched (a repeated
  bucket once). Returns a checksum."""
  m = lengths.shape[0]
  num_q = q_words.shape[0]
  width = q_words.shape[1]
  masks, first, last, who, _ = mih_numba._buffers()  # pylint: disable=protected-access
  q_bits = max(1, mih_numba._bits(num_q))  # pylint: disable=protected-access
  q_mask = (np.int64(1) << q_bits) - 1
  pairs, todo, hist, active, _, spent = mih_numba._step_buffers(num_q)  # pylint: disable=protected-access
  active[:] = True
  spent[:] = 0.0
  gave_up = np.zeros(num_q, np.bool_)
  check = np.int64(0)
  for r in range(d_k.max() // m + 1):
    for j in range(m):
      length = lengths[j]
      if r > length:
        continue
      b_mask = (np.int64(1) << length) - 1
      n_pairs = 0
      for i in range(num_q):
        s, j_stop = divmod(d_k[i], m)
        if r < s or (r == s and j <= j_stop):
          pairs, n_pairs = mih_numba._step_pairs(  # pylint: disable=protected-access
              i, q_keys, j, r, length, offsets, m, 1, q_bits, np.inf, 0.0,
              1.0, active, spent, gave_up, masks, first, last, pairs,
              n_pairs)
      todo = mih_numba._by_bucket(pairs, n_pairs, length, q_bits, todo,  # pylint: disable=protected-access
                                  hist)
      off = offsets[j]
      flat = codes[j].reshape(-1)
      for start in range(0, n_pairs, masks.shape[0]):
        n = min(n_pairs - start, masks.shape[0])
        for t in range(n):
          b = (todo[start + t] >> q_bits) & b_mask
          first[t] = off[b]
          last[t] = off[b + 1]
          who[t] = todo[start + t] & q_mask
        for t in range(min(AHEAD, n)):
          mih_numba._fetch(flat, width, first, last, t)  # pylint: disable=protected-access
        for t in range(n):
          if t + AHEAD < n:
            mih_numba._fetch(flat, width, first, last, t + AHEAD)  # pylint: disable=protected-access
          i = who[t]
          check += mih_numba._nearest(  # pylint: disable=protected-access
              flat[first[t] * width:last[t] * width], width,
              q_words[i]) <= d_k[i]
  return check


@numba.njit(nogil=True)
def read_runs(flat, words, starts):
  """Reads `words[i]` contiguous words of `flat` from starts[i], for each
  i (xor of every 8th word: one load per cache line, as `touch`)."""
  x = flat.dtype.type(0)
  for i in range(starts.shape[0]):
    for u in range(starts[i], starts[i] + words[i], 8):
      x ^= flat[u]
  return x


def best_of(n, fn):
  """The least seconds of n calls of fn() (bench/archive.py's best_of)."""
  return archive.best_of(n, fn)[1]


def main():
  p = argparse.ArgumentParser()
  archive.add_cell_args(p)
  p.add_argument('--batch', type=int, default=100)
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  print(f'N = {n:,}, {bits} bits, {a.queries} queries, one core '
        f'(CPU {sorted(os.sched_getaffinity(0))}); ms per query, best of 3; '
        'buckets and MB per query: those that certify the exact k-th '
        'distance\n')
  print('| codes | m | k | buckets | MB read | probe | read | count | mih | '
        'seq | step | shared | flat | flat / read | flat / count | '
        'flat / mih | flat / step | flat / shared |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
        '---:|---:|---:|---:|---:|')
  for kind in a.codes.split(','):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(0))
    m = mih.choose_m_for(db, bits)
    parts = mih._parts([(db, mih.build(db, bits, m=m), 0)], bits)  # pylint: disable=protected-access
    offsets, rows, codes, part_offsets = mih._compiled_parts(parts)  # pylint: disable=protected-access
    qw = mih._word_layout(q, parts[0].words.dtype)  # pylint: disable=protected-access
    keys = mih._query_keys(q, parts[0].tables)  # pylint: disable=protected-access
    lengths = np.asarray(parts[0].tables.lengths, np.int64)
    flat_words = mih._word_layout(db, parts[0].words.dtype).reshape(-1)  # pylint: disable=protected-access
    width = qw.shape[1]
    for k in (int(x) for x in a.k.split(',')):
      topk.search(q[:8], db, k, bits)                       # compile
      t_flat = best_of(3, lambda: topk.search(q, db, k, bits))  # pylint: disable=cell-var-from-loop
      fd, _ = topk.search(q, db, k, bits)
      d_k = fd[:, -1].astype(np.int64)
      totals = np.zeros((len(q), 2), np.int64)
      times = {}
      for mode, name in enumerate(('probe', 'read', 'count')):
        certified_buckets(qw[:2], keys[:2], lengths, offsets, codes, d_k[:2],
                          mode, totals[:2])                 # compile
        times[name] = best_of(3, lambda mode=mode: certified_buckets(  # pylint: disable=g-long-lambda
            qw, keys, lengths, offsets, codes, d_k, mode, totals))

      def run_mih():
        best = np.full((len(q), k), -1, np.int64)
        count = np.zeros(len(q), np.int64)
        seen = np.zeros(len(q), np.int64)
        gave_up = np.zeros(len(q), bool)
        mih_numba.knn(qw, keys, lengths, offsets, rows, codes, part_offsets,
                      n, k, np.inf, mih.STEP_WORK_COMPILED,
                      mih.PROBE_WORK_COMPILED, best, count, seen, gave_up)
        return best
      def run_shared():
        best = np.full((len(q), k), -1, np.int64)
        count = np.zeros(len(q), np.int64)
        seen = np.zeros(len(q), np.int64)
        gave_up = np.zeros(len(q), bool)
        for lo in range(0, len(q), a.batch):
          hi = lo + a.batch
          mih_numba.knn_shared(
              qw[lo:hi], keys[lo:hi], lengths, offsets, rows, codes,
              part_offsets, n, k, np.inf, mih.STEP_WORK_COMPILED,
              mih.PROBE_WORK_COMPILED, best[lo:hi], count[lo:hi],
              seen[lo:hi], gave_up[lo:hi])
        return best

      def run_step():
        return sum(certified_pairs(qw[lo:lo + a.batch], keys[lo:lo + a.batch],
                                   lengths, offsets, codes,
                                   d_k[lo:lo + a.batch])
                   for lo in range(0, len(q), a.batch))
      for name, fn in (('mih', run_mih), ('shared', run_shared)):
        if not np.array_equal(fn() // n, fd):
          print(f'\n!!!!!!!! MISMATCH: {name} {kind} k={k}\n')
        times[name] = best_of(3, fn)
      certified_pairs(qw[:2], keys[:2], lengths, offsets, codes, d_k[:2])
      times['step'] = best_of(3, run_step)
      words = totals[:, 1] * width
      rng = np.random.default_rng(1)
      starts = rng.integers(0, max(1, flat_words.size - words.max()),
                            len(q))
      read_runs(flat_words, words[:2], starts[:2])          # compile
      times['seq'] = best_of(3, lambda: read_runs(flat_words, words, starts))  # pylint: disable=cell-var-from-loop
      ms = {name: t / len(q) * 1e3 for name, t in times.items()}
      ms_flat = t_flat / len(q) * 1e3
      print(f'| {kind} | {m} | {k} | {totals[:, 0].mean():,.0f} | '
            f'{words.mean() * 8 / 2**20:.2f} | {ms["probe"]:.3f} | '
            f'{ms["read"]:.3f} | {ms["count"]:.3f} | {ms["mih"]:.3f} | '
            f'{ms["seq"]:.3f} | {ms["step"]:.3f} | {ms["shared"]:.3f} | '
            f'{ms_flat:.3f} | {ms_flat / ms["read"]:.1f}x | '
            f'{ms_flat / ms["count"]:.1f}x | **{ms_flat / ms["mih"]:.1f}x** | '
            f'{ms_flat / ms["step"]:.1f}x | '
            f'**{ms_flat / ms["shared"]:.1f}x** |', flush=True)


if __name__ == '__main__':
  main()
