"""What a unit of MIH work costs, in flat-scan code visits.

  python bench/mih_cost.py [--n=10000000] [--queries=200] [--m=3,4]

mih.search counts its work per query as buckets probed x probe weight +
codes verified; search_auto turns that into time with mih.unit_cost().
This separates the two: for random and clustered 64-bit codes (as
bench/archive.py makes them) k = 1, 10, 100 and each substring count m (tables of
small and large buckets) it runs mih.search with
the probe weight 0 and 1 (the difference is the buckets probed), times it
(best of 3) and the flat scan (topk.search), and prints the MIH time per
query in flat-scan code visits (MIH seconds / (flat seconds / N)) beside
the probes and codes verified. A least-squares fit of visits = a x probes
+ b x codes over the rows (relative errors) gives the two costs: PROBE_WORK_COMPILED is
about a / b and COST_RATIO_COMPILED about b (hashjax/archive/mih.py).
The last column, and the medians printed per kind of codes, hold the
probe weight at the library's PROBE_WORK_COMPILED and give a unit's cost
in flat visits: visits / (weight x probes + codes), what
COST_RATIO_COMPILED stands for.
"""
import argparse
import itertools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hashjax.archive import mih  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.archive import topk  # pylint: disable=g-import-not-at-top,wrong-import-position
import archive  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--n', type=float, default=1e7)
  p.add_argument('--queries', type=int, default=200)
  p.add_argument('--m', default='3,4')
  args = p.parse_args()
  n, bits = int(args.n), 64
  print(f'mih.compiled() = {mih.compiled()}; N = {n:,}, {bits} bits, '
        f'{args.queries} queries\n')
  weight_lib = mih.PROBE_WORK_COMPILED
  print('| codes | m | k | probes /query | codes verified /query | mih q/s | '
        'flat q/s | mih in flat visits /query | visits per unit |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  fit, per_unit = [], {}
  for kind in ('random', 'clustered'):
    db, q = archive.chunked_codes(kind, n, args.queries, bits,
                                  np.random.default_rng(0))
    for m, k in itertools.product(
        [int(x) for x in args.m.split(',')], (1, 10, 100)):
      if k == 1:
        parts = [(db, mih.build(db, bits, m=m), 0)]
      topk.search(q[:64], db, k, bits)
      flat = np.inf
      for _ in range(3):
        t0 = time.perf_counter()
        topk.search(q, db, k, bits)
        flat = min(flat, (time.perf_counter() - t0) / len(q))
      res = {}
      for weight in (0, 1):
        mih.PROBE_WORK_COMPILED = weight
        mih.search(q[:2], parts, k, bits)
        times, stats = [], {}
        for _ in range(3):
          t0 = time.perf_counter()
          mih.search(q, parts, k, bits, stats=stats)
          times.append(time.perf_counter() - t0)
        res[weight] = (min(times) / len(q), stats['candidates'].mean())
      codes = res[0][1]
      probes = res[1][1] - codes
      visits = res[1][0] / (flat / n)
      fit.append((probes, codes, visits))
      unit = visits / (weight_lib * probes + codes)
      per_unit.setdefault(kind, []).append(unit)
      print(f'| {kind} | {m} | {k} | {probes:,.0f} | {codes:,.0f} | '
            f'{1 / res[1][0]:,.0f} | {1 / flat:,.0f} | {visits:,.0f} | '
            f'{unit:.1f} |', flush=True)
  mih.PROBE_WORK_COMPILED = weight_lib
  fit = np.array(fit)   # relative errors: each row divided by its visits
  a, b = np.linalg.lstsq(fit[:, :2] / fit[:, 2:], np.ones(len(fit)),
                         rcond=None)[0]
  print(f'\nfit: a probe ~ {a:.0f} flat visits, a verified code ~ {b:.1f}; '
        f'probe weight a/b ~ {a / b:.0f}')
  for kind, units in per_unit.items():
    print(f'{kind}: a unit (probe weight {weight_lib}) ~ '
          f'{np.median(units):.1f} flat visits (median; '
          f'{min(units):.1f}-{max(units):.1f})')


if __name__ == '__main__':
  main()
