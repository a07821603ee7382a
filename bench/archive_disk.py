"""A sharded index bigger than the search's memory budget, searched from disk.

  python bench/archive_disk.py --dir=/tmp/idx1e8 [--n=100000000] [--bits=64]
      [--codes=clustered] [--shard=4194304] [--queries=100] [--k=1,10,100]
      [--trace]

Writes (once; reused when --dir already holds it) a sharded index of --n
codes in shards of --shard, each with its multi-index hashing tables, made
as a trained model makes them (clustered: 64 centres, 10% of the bits
flipped; or random), then searches it in a fresh process that loads it
lazily (codes memory-mapped, ids read a shard at a time): the flat scan,
MIH and auto for each k (each run once untimed first: compilation, and
the pages it touches), and radius 2 by the same three. Prints queries/s, the
answers' agreement (MIH and auto against flat), and the search process's
peak resident memory (ru_maxrss: it counts the memory-mapped pages it
touched, which the kernel can drop; the budget is 4 GiB). --trace prints,
per k, the calls one more auto run made (bench/archive.py's auto_calls).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def make(a):
  from hashjax.archive import index  # pylint: disable=g-import-not-at-top
  from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  centres = rng.integers(0, 2, (64, a.bits)).astype(bool)
  t0 = time.perf_counter()
  names = []
  os.makedirs(a.dir, exist_ok=True)
  with shards.hold(a.dir):
    for s, start in enumerate(range(0, a.n, a.shard)):
      n = min(a.shard, a.n - start)
      if a.codes == 'random':
        on = rng.integers(0, 2, (n, a.bits)).astype(bool)
      else:
        on = centres[rng.integers(0, 64, n)] ^ (rng.random((n, a.bits)) < 0.1)
      name = f'shard-{s:06d}.hjidx'
      index._write(os.path.join(a.dir, name), None,  # pylint: disable=protected-access
                   [f'i{r}' for r in range(start, start + n)], labels=None,
                   class_names=None, source=dict(bits=a.bits),
                   packed=index.pack(on), bits=a.bits)
      names.append(name)
      print(f'  shard {s + 1}: {start + n:,} codes, '
            f'{time.perf_counter() - t0:.0f}s', flush=True)
    shards.commit(a.dir, names, bits=a.bits, expected=a.n,
                  next_shard=len(names))
  return time.perf_counter() - t0


def search(a):
  """Runs in its own process: the peak memory is the search's."""
  from hashjax.archive import exact  # pylint: disable=g-import-not-at-top
  from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  idx = shards.load(a.dir, verify=False, lazy=True)
  parts = idx.parts(verify=False)
  load_s = time.perf_counter() - t0
  rng = np.random.default_rng(1)
  rows = rng.integers(0, len(idx), a.queries)
  q = np.asarray(idx.packed[rows]) ^ rng.integers(
      0, 2, (a.queries, idx.packed.shape[1]), dtype=np.uint32)
  out = dict(n=len(idx), shards=len(idx.shards), load_s=load_s,
             m=parts[0][1].m, rows=[])
  del parts
  for k in (int(x) for x in a.k.split(',')):
    res = {}
    for algorithm in ('flat', 'mih', 'auto'):
      exact.nearest(idx, q[:8], k, algorithm)   # compile, warm the tables
      exact.nearest(idx, q, k, algorithm)
      t0 = time.perf_counter()
      res[algorithm] = exact.nearest(idx, q, k, algorithm)
      res[algorithm + '_s'] = time.perf_counter() - t0
    same = all(np.array_equal(res[x][j], res['flat'][j])
               for x in ('mih', 'auto') for j in (0, 1))
    out['rows'].append(dict(
        k=k, same=same, **{x: a.queries / res[x + '_s']
                           for x in ('flat', 'mih', 'auto')}))
    if a.trace:
      sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
      import archive  # pylint: disable=g-import-not-at-top
      with archive.auto_calls() as calls:
        exact.nearest(idx, q, k, 'auto')
      out['rows'][-1]['calls'] = calls
  found = {}
  for algorithm in ('flat', 'mih', 'auto'):
    exact.within(idx, q[:8], 2, algorithm)       # compile, warm the tables
    t0 = time.perf_counter()
    found[algorithm] = exact.within(idx, q, 2, algorithm)
    out['radius2_' + algorithm] = a.queries / (time.perf_counter() - t0)
  out['radius2_same'] = all(
      np.array_equal(x[j], y[j]) for algorithm in ('mih', 'auto')
      for x, y in zip(found[algorithm], found['flat']) for j in (0, 1))
  out['radius2_found'] = float(np.mean([len(d) for d, _ in found['flat']]))
  ids = [idx.ids[int(i)] for i in res['flat'][1][0][:3]]
  out['ids_ok'] = ids == [f'i{int(i)}' for i in res['flat'][1][0][:3]]
  out['peak_rss_gib'] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(json.dumps(out))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--dir', required=True)
  p.add_argument('--n', type=int, default=100_000_000)
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--codes', default='clustered')
  p.add_argument('--shard', type=int, default=1 << 22)
  p.add_argument('--queries', type=int, default=100)
  p.add_argument('--k', default='1,10,100')
  p.add_argument('--trace', action='store_true')
  p.add_argument('--search', action='store_true', help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.search:
    return search(a)
  if not os.path.exists(os.path.join(a.dir, 'manifest.json')):
    print(f'writing {a.n:,} {a.codes} {a.bits}-bit codes to {a.dir}')
    print(f'built in {make(a):.0f}s')
  size = sum(os.path.getsize(os.path.join(a.dir, f))
             for f in os.listdir(a.dir))
  out = subprocess.run([sys.executable, __file__, '--search'] + sys.argv[1:],
                       capture_output=True, text=True, check=True)
  r = json.loads(out.stdout.strip().splitlines()[-1])
  mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  print(f'{r["n"]:,} {a.codes} codes of {a.bits} bits in {r["shards"]} '
        f'shards ({size / 2**30:.1f} GiB on disk with ids and MIH tables, '
        f'm={r["m"]}); machine memory {mem:.0f} GiB, {os.cpu_count()} cores')
  print(f'lazy load: {r["load_s"]:.1f}s; peak resident memory of the search '
        f'process: {r["peak_rss_gib"]:.2f} GiB; ids resolved: {r["ids_ok"]}')
  print('| k | flat q/s | MIH q/s | auto q/s | MIH/flat | same answers |')
  print('|---|---|---|---|---|---|')
  for row in r['rows']:
    print(f'| {row["k"]} | {row["flat"]:.2f} | {row["mih"]:.2f} | '
          f'{row["auto"]:.2f} | {row["mih"] / row["flat"]:.1f}x | '
          f'{row["same"]} |')
  for row in r['rows']:
    if 'calls' in row:
      print(f'k = {row["k"]}, auto\'s calls: {row["calls"]}')
  print(f'radius 2: flat {r["radius2_flat"]:.1f} q/s, MIH '
        f'{r["radius2_mih"]:.1f} q/s, auto {r["radius2_auto"]:.1f} q/s, '
        f'{r["radius2_found"]:.1f} found per query, same answers: '
        f'{r["radius2_same"]}')


if __name__ == '__main__':
  main()
