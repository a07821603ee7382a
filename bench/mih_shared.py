"""MIH's two compiled loops side by side: one query after another
(mih_numba.knn) and the queries in step (mih_numba.knn_shared).

  python bench/mih_shared.py [--n=10000000] [--bits=64] [--k=1,10,100]
                             [--codes=random,clustered] [--m=]
                             [--batches=1,4,16,64,128,256,1000]

On one core (the process is pinned to one: `mih.search` gives each thread
its share of a call's queries, and SHARED_QUERIES is per thread), the same
tables (bench/archive.py's codes; m chosen from the codes as the search
command chooses it, or each of --m), calls of each batch size over the
same 1,000 queries, best of 3, the two loops interleaved. Prints
knn_shared's speed over knn's per batch size (above 1: the shared loop is
faster); the answers, work counts and give-ups of the two loops are
checked equal.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import mih_numba  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position

QUERIES = 1000


def main():
  p = argparse.ArgumentParser()
  archive.add_cell_args(p, queries=QUERIES)
  p.add_argument('--m', default='')
  p.add_argument('--batches', default='1,4,16,64,128,256,1000')
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  batches = [int(x) for x in a.batches.split(',')]
  print(f'N = {n:,}, {bits} bits, {a.queries} queries, one core (CPU '
        f'{sorted(os.sched_getaffinity(0))}); knn_shared / knn speed, best '
        'of 3, per queries a call\n')
  print('| codes | m | k | ' + ' | '.join(f'{b} q' for b in batches) +
        ' | knn ms/query (1,000 q) |')
  print('|---|---:|---:|' + '---:|' * (len(batches) + 1))
  for kind in a.codes.split(','):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(0))
    ms = ([int(x) for x in a.m.split(',')] if a.m else
          [mih.choose_m_for(db, bits)])
    for m in ms:
      parts = mih._parts([(db, mih.build(db, bits, m=m), 0)], bits)  # pylint: disable=protected-access
      lists = mih._compiled_parts(parts)  # pylint: disable=protected-access
      qw = mih._word_layout(q, parts[0].words.dtype)  # pylint: disable=protected-access
      keys = mih._query_keys(q, parts[0].tables)  # pylint: disable=protected-access
      lengths = np.asarray(parts[0].tables.lengths, np.int64)

      def run(loop, k, rows):
        out = (np.full((len(rows), k), -1, np.int64),
               np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64),
               np.zeros(len(rows), bool))
        loop(qw[rows], keys[rows], lengths, *lists, n, k, np.inf,
             mih.STEP_WORK_COMPILED, mih.PROBE_WORK_COMPILED, *out)
        return out

      for k in (int(x) for x in a.k.split(',')):
        cells = []
        for size in batches:
          calls = [np.arange(s, min(s + size, len(q)))
                   for s in range(0, len(q), size)]
          best = {}
          for _ in range(3):
            for loop in (mih_numba.knn, mih_numba.knn_shared):
              t0 = time.perf_counter()
              outs = [run(loop, k, rows) for rows in calls]
              t = time.perf_counter() - t0
              best[loop] = min(best.get(loop, np.inf), t)
              got = [np.concatenate(x) for x in zip(*outs)]
              if loop is mih_numba.knn:
                want = got
              elif not all(np.array_equal(x, y) for x, y in zip(want, got)):
                print(f'\n!!!!!!!! MISMATCH: {kind} m={m} k={k}\n')
          cells.append(best[mih_numba.knn] / best[mih_numba.knn_shared])
          if size == batches[-1]:
            knn_ms = best[mih_numba.knn] / len(q) * 1e3
        print(f'| {kind} | {m} | {k} | ' +
              ' | '.join(f'{c:.2f}x' for c in cells) +
              f' | {knn_ms:.3f} |', flush=True)


if __name__ == '__main__':
  main()
