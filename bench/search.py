"""Exact Hamming top-k search: hashjax vs faiss IndexBinaryFlat vs numpy.

  python bench/search.py [--n=1000000] [--queries=1000] [--k=100]
                         [--bits=64,128]

Random codes, one run, side by side; queries/s, the ratio to faiss and the
memory per code. hashjax: hashjax/archive/topk.py (bit-packed uint32
words, XOR + popcount, select by counting), compiled before timing. faiss:
IndexBinaryFlat (its own threads, here all cores). numpy: packbits words,
np.bitwise_count, argpartition + a stable sort of the k (16 queries at a
time). hashjax's results are checked against faiss's (distances equal;
faiss breaks ties its own way, so ids are compared where the distance is
below the k-th).
"""
import argparse
import os
import time

import numpy as np

from hashjax.archive import index
from hashjax.archive import topk


def numpy_search(q_words, db_words, k, block=16):
  out_d, out_i = [], []
  for s in range(0, len(q_words), block):
    d = np.bitwise_count(q_words[s:s + block, None, :]
                         ^ db_words[None]).sum(-1, dtype=np.int32)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    pd = np.take_along_axis(d, part, 1)
    order = np.lexsort((part, pd), axis=1)
    out_d.append(np.take_along_axis(pd, order, 1))
    out_i.append(np.take_along_axis(part, order, 1))
  return np.concatenate(out_d), np.concatenate(out_i)


def timed(fn, *args):
  t0 = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--n', type=int, default=1_000_000)
  p.add_argument('--queries', type=int, default=1000)
  p.add_argument('--k', type=int, default=100)
  p.add_argument('--bits', default='64,128')
  a = p.parse_args()
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError:
    faiss = None
    print('faiss-cpu is not installed (pip install -e ".[bench]"): '
          'its rows are skipped.')
  rows = []
  for bits in (int(b) for b in a.bits.split(',')):
    rng = np.random.default_rng(bits)
    db = rng.integers(0, 2, (a.n, bits)).astype(np.int8) * 2 - 1
    q = rng.integers(0, 2, (a.queries, bits)).astype(np.int8) * 2 - 1
    db_p, q_p = index.pack(db), index.pack(q)
    if faiss is not None:   # first: JAX's CPU threads stay busy a while
      fidx = faiss.IndexBinaryFlat(bits)
      db_b = np.packbits(db > 0, axis=1)
      fidx.add(db_b)
      (fd, fi), t_f = timed(fidx.search, np.packbits(q > 0, axis=1), a.k)
      rows.append(('faiss IndexBinaryFlat', bits, a.queries / t_f,
                   db_b.nbytes / a.n))
    topk.search(q_p[:64], db_p, a.k, bits)        # compile
    (hd, hi), t_h = timed(topk.search, q_p, db_p, a.k, bits)
    rows.append(('hashjax', bits, a.queries / t_h, db_p.nbytes / a.n))
    if faiss is not None:
      assert np.array_equal(hd, fd), 'hashjax and faiss distances differ'
      below = hd < hd[:, -1:]
      assert all(set(hi[r][below[r]]) == set(fi[r][below[r]])
                 for r in range(len(hi))), 'hashjax and faiss ids differ'
    words64 = db_p.view(np.uint64) if bits % 64 == 0 else db_p
    qwords = q_p.view(np.uint64) if bits % 64 == 0 else q_p
    (nd, _), t_n = timed(numpy_search, qwords, words64, a.k)
    assert np.array_equal(nd, hd)
    rows.append(('numpy bitwise_count', bits, a.queries / t_n,
                 words64.nbytes / a.n))
  print(f'Exact top-{a.k}, {a.n:,} random codes, {a.queries:,} queries, '
        f'{os.cpu_count()} CPU cores')
  print('| method | bits | queries/s | vs faiss | bytes/code |')
  print('|---|---|---|---|---|')
  for name, bits, qps, per in rows:
    ref = [r[2] for r in rows if r[1] == bits and r[0].startswith('faiss')]
    ratio = f'{qps / ref[0]:.2f}x' if ref else 'n/a'
    print(f'| {name} | {bits} | {qps:,.0f} | {ratio} | {per:.0f} |')


if __name__ == '__main__':
  main()
