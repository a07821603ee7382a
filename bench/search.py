"""Exact Hamming top-k search: hashjax vs faiss IndexBinaryFlat (vs numpy).

  python bench/search.py [--n=1000000] [--queries=1000] [--k=1,10,100,1000]
                         [--bits=64,128] [--codes=random,clustered] [--numpy]

One run, side by side; queries/s and the ratio to faiss. Codes: uniformly
random, or clustered as a trained model makes them (--centres centres, each
code a centre with --flip of its bits flipped, the database in random
order). hashjax: `topk.search`, compiled before timing: "hashjax" is what
the product runs here (kernel 'auto': on a CPU with numba the compiled
one-pass scan, hashjax/archive/flat_numba.py, on all cores); "xla" is
the XLA kernel of hashjax/archive/topk.py (bit-packed words, XOR +
popcount, select by counting; what GPUs and TPUs run) two ways: the index
as a numpy array (each search copies it to the device: the command line)
and `topk.OnDevice` (copied once: the service, a notebook). faiss:
IndexBinaryFlat (its own threads, here all cores). numpy (--numpy):
packbits words, np.bitwise_count, argpartition + a stable sort of the k.
hashjax's distances are checked equal to faiss's, and ids where the
distance is below the k-th (faiss breaks ties its own way).
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


def timed(fn, *args, **kwargs):
  t0 = time.perf_counter()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - t0


def make_codes(kind, n, q, bits, rng, centres=7, flip=0.1):
  if kind == 'random':
    c = rng.integers(0, 2, (n + q, bits))
  else:
    centre = rng.integers(0, 2, (centres, bits))
    c = centre[rng.integers(0, centres, n + q)]
    c = np.where(rng.random((n + q, bits)) < flip, 1 - c, c)
  c = c.astype(np.int8) * 2 - 1
  return c[:n], c[n:]


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--n', type=int, default=1_000_000)
  p.add_argument('--queries', type=int, default=1000)
  p.add_argument('--k', default='1,10,100,1000')
  p.add_argument('--bits', default='64,128')
  p.add_argument('--codes', default='random,clustered')
  p.add_argument('--centres', type=int, default=7)
  p.add_argument('--flip', type=float, default=0.1)
  p.add_argument('--numpy', action='store_true')
  a = p.parse_args()
  import faiss  # pylint: disable=g-import-not-at-top
  rows = []
  for kind in a.codes.split(','):
    for bits in (int(b) for b in a.bits.split(',')):
      rng = np.random.default_rng(bits)
      db, q = make_codes(kind, a.n, a.queries, bits, rng, a.centres, a.flip)
      db_p, q_p = index.pack(db), index.pack(q)
      fidx = faiss.IndexBinaryFlat(bits)
      fidx.add(np.packbits(db > 0, axis=1))
      fq = np.packbits(q > 0, axis=1)
      held = topk.OnDevice(db_p, kernel='xla')
      for k in (int(x) for x in a.k.split(',')):
        (fd, fi), t_f = timed(fidx.search, fq, k)
        row = dict(codes=kind, bits=bits, k=k, faiss=a.queries / t_f)
        for name, db_arg, kernel in (('hashjax', db_p, 'auto'),
                                     ('xla', db_p, 'xla'),
                                     ('xla on device', held, 'auto')):
          topk.search(q_p[:64], db_arg, k, bits, kernel=kernel)  # compile
          (hd, hi), t_h = timed(topk.search, q_p, db_arg, k, bits,
                                kernel=kernel)
          assert np.array_equal(hd, fd), 'hashjax and faiss distances differ'
          below = hd < hd[:, -1:]
          assert all(set(hi[r][below[r]]) == set(fi[r][below[r]])
                     for r in range(len(hi))), 'hashjax and faiss ids differ'
          row[name] = a.queries / t_h
        if a.numpy:
          words = db_p.view(np.uint64) if bits % 64 == 0 else db_p
          qwords = q_p.view(np.uint64) if bits % 64 == 0 else q_p
          (nd, _), t_n = timed(numpy_search, qwords, words, k)
          assert np.array_equal(nd, fd)
          row['numpy'] = a.queries / t_n
        rows.append(row)
        print(row, flush=True)
  print(f'\nExact top-k, {a.n:,} codes, {a.queries:,} queries, '
        f'{os.cpu_count()} CPU cores; clustered: {a.centres} centres, '
        f'{a.flip:.0%} of bits flipped; hashjax kernel here: '
        f'{topk.kernel_for()}\n')
  names = ['hashjax', 'xla', 'xla on device'] + (['numpy'] if a.numpy
                                                 else [])
  print('| codes | bits | k | faiss q/s | ' + ' | '.join(
      f'{n} q/s | vs faiss' for n in names) + ' |')
  print('|---|---:|---:|---:|' + '---:|---:|' * len(names))
  for r in rows:
    print(f'| {r["codes"]} | {r["bits"]} | {r["k"]} | {r["faiss"]:,.0f} | '
          + ' | '.join(f'{r[n]:,.0f} | {r[n] / r["faiss"]:.2f}x'
                       for n in names) + ' |')


if __name__ == '__main__':
  main()
