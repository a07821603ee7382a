"""auto against MIH and the flat scan, side by side.

  python bench/archive_auto.py [--n=10000000] [--bits=64] [--k=1,10,100]
                               [--codes=random,clustered] [--queries=100]

Codes from bench/archive.py's generator (7 centres, 10 % of bits flipped,
or uniformly random); MIH tables with m chosen from the codes as the search
command chooses it (mih.choose_m_for). For each k, exact.nearest_codes
with 'flat', 'mih' and 'auto' (what the search command runs), each run
once untimed first, then best of 3; prints a markdown row per cell with
queries/s, auto / MIH, auto / flat, and whether the three answers are
equal. To compare two commits' auto, run this file against each tree:
PYTHONPATH=OTHER_TREE python bench/archive_auto.py ...
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hashjax.archive import exact  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  p = argparse.ArgumentParser()
  archive.add_cell_args(p, queries=100)
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  print(f'N = {n:,}, {bits} bits, {a.queries} queries, {os.cpu_count()} '
        f'cores; hashjax from {os.path.dirname(mih.__file__)}\n')
  print('| codes | m | k | flat q/s | MIH q/s | auto q/s | auto / MIH | '
        'auto / flat | same |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---|')
  for kind in a.codes.split(','):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(n + bits))
    m = mih.choose_m_for(db, bits)
    parts = [(db, mih.build(db, bits, m=m), 0)]
    for k in (int(x) for x in a.k.split(',')):
      rate, out = {}, {}
      for name in ('flat', 'mih', 'auto'):
        run = lambda name=name: exact.nearest_codes(  # pylint: disable=g-long-lambda
            db, bits, lambda: parts, q, k, name)
        out[name] = run()
        rate[name] = a.queries / archive.best_of(3, run)[1]
      same = all(np.array_equal(x, y) for name in ('mih', 'auto')
                 for x, y in zip(out['flat'], out[name]))
      print(f'| {kind} | {m} | {k} | {rate["flat"]:,.0f} | '
            f'{rate["mih"]:,.0f} | {rate["auto"]:,.0f} | '
            f'{rate["auto"] / rate["mih"]:.2f}x | '
            f'{rate["auto"] / rate["flat"]:.2f}x | {same} |', flush=True)


if __name__ == '__main__':
  main()
