"""MIH against its substring count m: measured beside the cost model.

  python bench/mih_m.py [--n=10000000] [--bits=64] [--m=3,4]
                        [--k=1,10,100] [--queries=200]

For random and clustered codes (bench/archive.py's generator), builds MIH
tables with each m and prints, side by side in one table, the flat scan's
and each m's queries/s (best of 3), MIH / flat, the probes and codes
verified per query, and, for random codes, the speed-up the cost model
predicts (predicted_speedup: the k-th neighbour's expected distance, the
probes and candidates at the step that certifies it, costed with the
measured PROBE_WORK_COMPILED and COST_RATIO_COMPILED; fitted at 10^7, it
underrates MIH on small tables that stay in cache). Then the model for
every valid m. Every MIH result is checked equal to the flat scan's.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import topk  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position


def predicted_speedup(n, bits, m, k):
  """The compiled search's predicted speed over the flat scan on random
  codes: n flat-scan visits over mih.predicted_cost."""
  return n / mih.predicted_cost(n, bits, m, k)


def best_of(n, fn, *args, **kwargs):
  times = []
  for _ in range(n):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    times.append(time.perf_counter() - t0)
  return out, min(times)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--n', type=float, default=1e7)
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--m', default='3,4')
  p.add_argument('--k', default='1,10,100')
  p.add_argument('--queries', type=int, default=200)
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  ms = [int(x) for x in a.m.split(',')]
  ks = [int(x) for x in a.k.split(',')]
  print(f'mih.compiled() = {mih.compiled()}; N = {n:,}, {bits} bits, '
        f'{a.queries} queries; choose_m = {mih.choose_m(n, bits)}\n')
  builds = []
  print('| codes | k | flat q/s | ' + ' | '.join(
      f'm={m} q/s | m={m} / flat | m={m} probes, codes /query | '
      f'm={m} model' for m in ms) + ' |')
  print('|---|---:|---:|' + '---:|---:|---:|---:|' * len(ms))
  for kind in ('random', 'clustered'):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(0))
    parts = {}
    for m in ms:
      t0 = time.perf_counter()
      tables = mih.build(db, bits, m=m)
      builds.append((kind, m, time.perf_counter() - t0,
                     4 * db.shape[1] + tables.bytes_per_code()))
      parts[m] = [(db, tables, 0)]
    for k in ks:
      topk.search(q[:64], db, k, bits)                       # compile
      (fd, fi), flat = best_of(3, topk.search, q, db, k, bits)
      cells = [f'{len(q) / flat:,.0f}']
      for m in ms:
        mih.search(q[:8], parts[m], k, bits)
        saved = mih.PROBE_WORK_COMPILED
        mih.PROBE_WORK_COMPILED = 0
        stats0 = {}
        mih.search(q, parts[m], k, bits, stats=stats0)
        mih.PROBE_WORK_COMPILED = 1
        stats1 = {}
        mih.search(q, parts[m], k, bits, stats=stats1)
        mih.PROBE_WORK_COMPILED = saved
        codes = stats0['candidates'].mean()
        probes = stats1['candidates'].mean() - codes
        (md, mi, gave_up), t = best_of(3, mih.search, q, parts[m], k, bits)
        if gave_up.any() or not (np.array_equal(md, fd) and
                                 np.array_equal(mi, fi)):
          print(f'\n!!!!!!!! MISMATCH: m={m} {kind} k={k} !!!!!!!!\n')
        model = (f'{predicted_speedup(n, bits, m, k):.2f}x'
                 if kind == 'random' else '')
        cells += [f'{len(q) / t:,.0f}', f'**{flat / t:.2f}x**',
                  f'{probes:,.0f}, {codes:,.0f}', model]
      print(f'| {kind} | {k} | ' + ' | '.join(cells) + ' |', flush=True)
    del parts, db
  lo = max(1, -(-bits // mih.MAX_KEY_BITS))
  hi = max(lo, bits // mih.MIN_KEY_BITS)
  print(f'\nThe model on random codes, N = {n:,}, {bits} bits, every m:\n')
  print('| m | ' + ' | '.join(f'k={k}' for k in ks) + ' |')
  print('|---:|' + '---:|' * len(ks))
  for m in range(lo, hi + 1):
    print(f'| {m} | ' + ' | '.join(
        f'{predicted_speedup(n, bits, m, k):.2f}x' for k in ks) + ' |')
  print('\n| codes | m | build s | bytes per code (tables + code) |')
  print('|---|---:|---:|---:|')
  for kind, m, s, b in builds:
    print(f'| {kind} | {m} | {s:.1f} | {b:.1f} |')


if __name__ == '__main__':
  main()
