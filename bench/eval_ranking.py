"""Evaluation time and peak memory: today's sort path vs the counting path.

  python bench/eval_ranking.py [--queries=10000] [--sort-queries=1000]
      [--sizes=10000,100000,1000000] [--labels=single,multi]
      [--paths=sort,count,numba,jax] [--jax-max-size=10000]

Random 64-bit codes; single-label data has 10 classes (one-hot), multi-label
data 20 labels with about 3 per item (one random label plus each other
label with probability 0.1). The metrics are exact mAP@all, mAP@100, P@100
and PR by radius (plus, for the count and jax paths, wAP, ACG@100,
NDCG@100 and PR by count) with the default memory budget.

Paths:
  sort:  ranking._reference_metrics, the original implementation (float
         matmul distances, relevance matmul, stable argsort of every
         chunk, one thread).
  count: ranking.retrieval_metrics(method='count', backend='numpy'):
         popcount distances, class / packed-label relevance, per-query
         radix argsort, 2 threads (the default on this machine).
  numba: the same with backend='numba' (the default when numba is
         installed): the argsort, gather and search replaced by one
         compiled counting pass (ranking_numba); compiled before timing.
  jax:   retrieval_metrics(backend='jax') on whatever JAX device there is
         (CPU here; only up to --jax-max-size items, XLA's CPU sort is
         slow).

Each (N, labels, path) runs in its own process; peak memory is the
process's peak RSS during the evaluation minus its RSS once the codes and
labels exist (so it is what the evaluation itself adds, threads included;
the peak is reset through /proc/self/clear_refs after the test data are
built, whose temporaries would otherwise dominate it). The sort path may run
fewer queries (--sort-queries) since it is slow at N = 10^6; the other
paths then also evaluate that query prefix after their timed run, and the
'equal' column says whether those results equal the sort path's bit for
bit (every key the sort path returns); for jax, whether they agree to
1e-12 (float sums in XLA's order).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _status_mib(field):
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) / 1024
  return float('nan')


def _rss_mib():
  return _status_mib('VmRSS')


def _reset_peak_rss():
  """Resets the kernel's peak RSS (VmHWM) to the current RSS, if allowed.

  Without this the peak would include building the random test data (its
  float64 temporaries), not only the evaluation.
  """
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _peak_mib(reset):
  if reset:
    return _status_mib('VmHWM')
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data(n, queries, bits, labels):
  """Codes and labels; the queries' rows do not depend on their number."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rngs = [np.random.default_rng(seed) for seed in range(6)]
  db = np.where(rngs[0].random((n, bits)) < 0.5, -1, 1).astype(np.int8)
  q = np.where(rngs[1].random((queries, bits)) < 0.5, -1, 1).astype(np.int8)

  def make(m, rng_a, rng_b):
    if labels == 'single':
      return np.eye(10, dtype=np.float32)[rng_a.integers(0, 10, m)]
    y = (rng_a.random((m, 20)) < 0.1).astype(np.float32)
    y[np.arange(m), rng_b.integers(0, 20, m)] = 1
    return y

  return q, db, make(queries, rngs[2], rngs[3]), make(n, rngs[4], rngs[5])


def child(a):
  from hashjax.evaluation import ranking  # pylint: disable=g-import-not-at-top
  q, db, q_l, db_l = _data(a.child, a.queries, a.bits, a.labels)
  kwargs = dict(topk=(100,), precision_at=(100,))
  if a.path == 'sort':
    run = lambda n: ranking._reference_metrics(  # pylint: disable=protected-access
        q[:n], db, q_l[:n], db_l, **kwargs)
  else:
    backend = {'count': 'numpy'}.get(a.path, a.path)
    run = lambda n: ranking.retrieval_metrics(
        q[:n], db, q_l[:n], db_l, method='count', backend=backend, **kwargs)
    if a.path == 'numba':
      run(1)   # compiles (or loads numba's cache) before the timed run
  reset = _reset_peak_rss()
  base = _rss_mib()
  t0 = time.perf_counter()
  m = run(a.queries)
  seconds = time.perf_counter() - t0
  peak = _peak_mib(reset)
  check = m if a.check_queries >= a.queries else run(a.check_queries)
  with open(a.out, 'w') as f:
    json.dump({'seconds': seconds, 'extra_mib': peak - base, 'metrics': m,
               'check': check}, f)


def _equal(ref, got, exact):
  def close(x, y):
    if isinstance(x, dict):
      return all(close(x[k], y[k]) for k in x)
    if isinstance(x, list):
      return len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
    if exact or not isinstance(x, float) or y is None:
      return x == y
    return abs(x - y) <= 1e-12 * max(1.0, abs(x))
  return all(k in got and close(v, got[k]) for k, v in ref.items())


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--queries', type=int, default=10000)
  p.add_argument('--sort-queries', type=int, default=0,
                 help='queries for the sort path (default: --queries)')
  p.add_argument('--sizes', default='10000,100000,1000000')
  p.add_argument('--labels', default='single,multi')
  p.add_argument('--paths', default='sort,count')
  p.add_argument('--jax-max-size', type=int, default=10000)
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--child', type=int, default=0)
  p.add_argument('--path', default='count')
  p.add_argument('--check-queries', type=int, default=0)
  p.add_argument('--out', default='')
  a = p.parse_args()
  if a.child:
    return child(a)
  sort_queries = min(a.sort_queries or a.queries, a.queries)
  paths = a.paths.split(',')
  print(f'Exact evaluation, {a.bits} bits, {os.cpu_count()} CPU cores; '
        f'queries: {a.queries:,} ({sort_queries:,} for the sort path)')
  print('| N | labels | path | queries | seconds | queries/s | '
        'peak extra MiB | mAP@all | equal to sort |')
  print('|---|---|---|---|---|---|---|---|---|')
  with tempfile.TemporaryDirectory() as tmp:
    for n in (int(s) for s in a.sizes.split(',')):
      for labels in a.labels.split(','):
        ref = None
        for path in paths:
          if path == 'jax' and n > a.jax_max_size:
            continue
          queries = sort_queries if path == 'sort' else a.queries
          out = os.path.join(tmp, f'{n}_{labels}_{path}.json')
          subprocess.run(
              [sys.executable, __file__, f'--child={n}', f'--path={path}',
               f'--labels={labels}', f'--queries={queries}',
               f'--check-queries={sort_queries}', f'--bits={a.bits}',
               f'--out={out}'], check=True)
          with open(out) as f:
            r = json.load(f)
          if path == 'sort':
            ref = r['check']
            equal = '(reference)'
          elif ref is None:
            equal = 'n/a'
          else:
            equal = 'yes' if _equal(ref, r['check'], path != 'jax') else 'NO'
          print(f'| {n:,} | {labels} | {path} | {queries:,} | '
                f'{r["seconds"]:.1f} | {queries / r["seconds"]:.0f} | '
                f'{r["extra_mib"]:.0f} | {r["metrics"]["map@all"]:.4f} | '
                f'{equal} |', flush=True)


if __name__ == '__main__':
  main()
