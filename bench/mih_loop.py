"""The compiled MIH loop against an earlier commit's, side by side.

  python bench/mih_loop.py --old=fd5b5d6 [--n=10000000] [--bits=64]
                           [--m=3,4] [--k=1,10,100] [--queries=200]
                           [--codes=random,clustered]
  python bench/mih_loop.py --old=fd5b5d6 --index=DIR [--k=..] [--queries=..]

Imports hashjax/archive/mih_numba.py as it is now and as it was at commit
--old (`git show`, into a temporary folder), and runs mih.search with each
on the same tables (random and clustered codes, bench/archive.py's
generator, each m), interleaved, best of 5, beside the flat scan (best of
3). Prints queries/s and MIH / flat for both; every result is checked
equal to the flat scan's. With --index, the tables of a sharded index on
disk (bench/archive_disk.py's), loaded lazily, queries its codes with
random bits flipped, best of 2, and the two loops' answers are checked
equal to each other (no flat scan).
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import mih_numba  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import topk  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position


def old_module(rev):
  """mih_numba.py at commit `rev`, imported as mih_numba_<rev>."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  source = subprocess.run(
      ['git', 'show', f'{rev}:hashjax/archive/mih_numba.py'], cwd=root,
      capture_output=True, text=True, check=True).stdout
  folder = tempfile.mkdtemp(prefix='mih_loop_')
  name = f'mih_numba_{rev}'
  with open(os.path.join(folder, name + '.py'), 'w') as f:
    f.write(source)
  sys.path.insert(0, folder)
  return importlib.import_module(name)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--old', required=True)
  archive.add_cell_args(p)
  p.add_argument('--m', default='3,4')
  p.add_argument('--index', default='')
  a = p.parse_args()
  if a.index:
    return on_index(a)
  n, bits = int(a.n), a.bits
  loops = {a.old: old_module(a.old), 'now': mih_numba}
  print(f'N = {n:,}, {bits} bits, {a.queries} queries; old loop: {a.old}\n')
  print(f'| codes | m | k | flat q/s | {a.old} q/s | now q/s | '
        f'{a.old} / flat | now / flat |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|')
  for kind in a.codes.split(','):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(0))
    for m in (int(x) for x in a.m.split(',')):
      parts = [(db, mih.build(db, bits, m=m), 0)]
      for k in (int(x) for x in a.k.split(',')):
        topk.search(q[:64], db, k, bits)                     # compile
        flat = np.inf
        for _ in range(3):
          t0 = time.perf_counter()
          fd, fi = topk.search(q, db, k, bits)
          flat = min(flat, time.perf_counter() - t0)
        best = dict.fromkeys(loops, np.inf)
        for loop in loops.values():
          mih.mih_numba = loop
          mih.search(q[:4], parts, k, bits)                  # compile
        for _ in range(5):
          for name, loop in loops.items():
            mih.mih_numba = loop
            t0 = time.perf_counter()
            d, i, gave_up = mih.search(q, parts, k, bits)
            best[name] = min(best[name], time.perf_counter() - t0)
            if gave_up.any() or not (np.array_equal(d, fd) and
                                     np.array_equal(i, fi)):
              print(f'\n!!!!!!!! MISMATCH: {name} m={m} {kind} k={k}\n')
        mih.mih_numba = mih_numba
        t_old, t_now = best[a.old], best['now']
        print(f'| {kind} | {m} | {k} | {len(q) / flat:,.0f} | '
              f'{len(q) / t_old:,.0f} | {len(q) / t_now:,.0f} | '
              f'{flat / t_old:.1f}x | **{flat / t_now:.1f}x** |', flush=True)


def on_index(a):
  """Both loops on the tables of the sharded index at a.index."""
  import resource  # pylint: disable=g-import-not-at-top
  from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
  loops = {a.old: old_module(a.old), 'now': mih_numba}
  idx = shards.load(a.index, verify=False, lazy=True)
  parts = idx.parts(verify=False)
  rng = np.random.default_rng(1)
  rows = rng.integers(0, len(idx), a.queries)
  q = np.asarray(idx.packed[rows]) ^ rng.integers(
      0, 2, (a.queries, idx.packed.shape[1]), dtype=np.uint32)
  print(f'{len(idx):,} codes in {len(parts)} shards, m = {parts[0][1].m}, '
        f'{a.queries} queries; old loop: {a.old}\n')
  print(f'| k | {a.old} q/s | now q/s | now / {a.old} | peak resident GiB |')
  print('|---:|---:|---:|---:|---:|')
  for k in (int(x) for x in a.k.split(',')):
    best, out = dict.fromkeys(loops, np.inf), {}
    for loop in loops.values():
      mih.mih_numba = loop
      mih.search(q[:8], parts, k, idx.bits)                # compile, warm
    for _ in range(2):
      for name, loop in loops.items():
        mih.mih_numba = loop
        t0 = time.perf_counter()
        out[name] = mih.search(q, parts, k, idx.bits)
        best[name] = min(best[name], time.perf_counter() - t0)
    mih.mih_numba = mih_numba
    if not all(np.array_equal(x, y) for x, y in zip(out[a.old], out['now'])):
      print(f'\n!!!!!!!! MISMATCH at k={k}\n')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f'| {k} | {a.queries / best[a.old]:,.0f} | '
          f'{a.queries / best["now"]:,.0f} | '
          f'{best[a.old] / best["now"]:.2f}x | {peak:.2f} |', flush=True)


if __name__ == '__main__':
  main()
