"""auto against the flat scan at 10^7 x 64 bits, k = 1, 10, 100, random and
clustered codes (bench/archive.py's generator: 7 centres, 10 % flipped),
100 queries, each path run once untimed first; prints a markdown row per
cell with the answers checked equal.

  python bench/archive_auto.py
"""
import os
import sys
import time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from archive import chunked_codes
from hashjax.archive import exact, mih
for kind in ('random', 'clustered'):
  rng = np.random.default_rng(64 + 10**7)
  db, q = chunked_codes(kind, 10**7, 100, 64, rng, 7, 0.1)
  parts = [(db, mih.build(db, 64), 0)]
  for k in (1, 10, 100):
    res = {}
    for name in ('flat', 'auto'):
      exact.nearest_codes(db, 64, lambda: parts, q, k, name)
      t0 = time.perf_counter(); out = exact.nearest_codes(db, 64, lambda: parts, q, k, name); t = time.perf_counter() - t0
      res[name] = (100 / t, out)
    same = all(np.array_equal(a, b) for a, b in zip(res['flat'][1], res['auto'][1]))
    print(f'| {kind} | {k} | {res["flat"][0]:.0f} | {res["auto"][0]:.0f} | {res["auto"][0]/res["flat"][0]:.2f}x | {same} |', flush=True)
