"""auto against MIH and the flat scan, side by side.

  python bench/archive_auto.py [--n=10000000] [--bits=64] [--k=1,10,100]
                               [--codes=random,clustered] [--queries=100]
                               [--radius=R,...] [--trace] [--rounds=3]
                               [--flat_batches=1,2,4,8,16,64]

Codes from bench/archive.py's generator (7 centres, 10 % of bits flipped,
or uniformly random); MIH tables with m chosen from the codes as the search
command chooses it (mih.choose_m_for). For each k, exact.nearest_codes
with 'flat', 'mih' and 'auto' (what the search command runs), each run
once untimed first, then --rounds rounds (default 3) of the three in
turn, best of each (so a slow spell of the shared machine slows all
three, not one); prints a markdown row per cell with queries/s, MIH /
flat, auto / MIH, auto / flat, and whether the three answers are equal.
--radius adds a row per radius R (exact.within_codes: every code within
R) after the k rows; --k= (empty) leaves the k rows out. --trace
prints, under each row, the calls one more auto run made (MIH: queries,
how many gave up, ms; flat: queries, ms). --flat_batches prints the flat
scan's ms per query for calls of those many queries (k = the first --k),
best of 3. To
compare two commits' auto, run this file against each tree:
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
  p.add_argument('--radius', default='')
  p.add_argument('--trace', action='store_true')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--flat_batches', default='')
  a = p.parse_args()
  n, bits = int(a.n), a.bits
  flat_k = _ints(a.k or '10')[0]   # --flat_batches's k
  print(f'N = {n:,}, {bits} bits, {a.queries} queries, {os.cpu_count()} '
        f'cores; hashjax from {os.path.dirname(mih.__file__)}\n')
  print('| codes | m | k | flat q/s | MIH q/s | auto q/s | MIH / flat | '
        'auto / MIH | auto / flat | same |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  for kind in a.codes.split(','):
    db, q = archive.chunked_codes(kind, n, a.queries, bits,
                                  np.random.default_rng(n + bits))
    m = mih.choose_m_for(db, bits)
    parts = [(db, mih.build(db, bits, m=m), 0)]
    for b in _ints(a.flat_batches):
      exact.nearest_codes(db, bits, None, q[:b], flat_k, 'flat')
      ms = archive.best_of(3, exact.nearest_codes, db, bits, None, q[:b],
                           flat_k, 'flat')[1] / b * 1e3
      print(f'{kind}: the flat scan, k = {flat_k}, a call of {b} queries: '
            f'{ms:.2f} ms per query', flush=True)
    cells = [(k, exact.nearest_codes) for k in _ints(a.k)]
    cells += [(r, exact.within_codes) for r in _ints(a.radius)]
    for k, search in cells:
      runs = {name: lambda name=name, k=k, search=search: search(  # pylint: disable=g-long-lambda
          db, bits, lambda: parts, q, k, name) for name in ('flat', 'mih',
                                                            'auto')}
      for run in runs.values():
        run()
      best = archive.best_of_each(a.rounds, runs)
      out = {name: got for name, (got, _) in best.items()}
      rate = {name: a.queries / t for name, (_, t) in best.items()}
      same = all(np.array_equal(x, y) for name in ('mih', 'auto')
                 for x, y in zip(_arrays(out['flat']), _arrays(out[name])))
      label = k if search is exact.nearest_codes else f'r = {k}'
      print(f'| {kind} | {m} | {label} | {rate["flat"]:,.0f} | '
            f'{rate["mih"]:,.0f} | {rate["auto"]:,.0f} | '
            f'{rate["mih"] / rate["flat"]:.2f}x | '
            f'{rate["auto"] / rate["mih"]:.2f}x | '
            f'{rate["auto"] / rate["flat"]:.2f}x | {same} |', flush=True)
      if a.trace:
        with archive.auto_calls() as calls:
          search(db, bits, lambda: parts, q, k, 'auto')
        print(f'  auto\'s calls: {calls}', flush=True)


def _ints(text):
  return [int(x) for x in text.split(',') if x]


def _arrays(out):
  """nearest's (dist, idx), or within's list of (dist, idx) per query as
  one (dist, idx) with each query's end, to compare."""
  if isinstance(out, tuple):
    return out
  return (np.concatenate([d for d, _ in out]),
          np.concatenate([i for _, i in out]),
          np.cumsum([len(d) for d, _ in out]))


if __name__ == '__main__':
  main()
