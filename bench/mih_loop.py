"""The compiled MIH loop against an earlier commit's, side by side.

  python bench/mih_loop.py --old=fd5b5d6 [--n=10000000] [--bits=64]
                           [--m=3,4] [--k=1,10,100] [--queries=200]

Imports hashjax/archive/mih_numba.py as it is now and as it was at commit
--old (`git show`, into a temporary folder), and runs mih.search with each
on the same tables (random and clustered codes, bench/archive.py's
generator, each m), interleaved, best of 5, beside the flat scan (best of
3). Prints queries/s and MIH / flat for both; every result is checked
equal to the flat scan's.
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
  p.add_argument('--n', type=float, default=1e7)
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--m', default='3,4')
  p.add_argument('--k', default='1,10,100')
  p.add_argument('--queries', type=int, default=200)
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  loops = {a.old: old_module(a.old), 'now': mih_numba}
  print(f'N = {n:,}, {bits} bits, {a.queries} queries; old loop: {a.old}\n')
  print(f'| codes | m | k | flat q/s | {a.old} q/s | now q/s | '
        f'{a.old} / flat | now / flat |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|')
  for kind in ('random', 'clustered'):
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


if __name__ == '__main__':
  main()
