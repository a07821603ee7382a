"""Evaluation (exact mAP@all, mAP@K, P@K, PR by radius) time and peak
memory for Q queries x N database codes, with the default memory budget.

  python bench/eval_ranking.py [--queries=10000] [--sizes=10000,100000,1000000]

Random 64-bit codes and 10 classes. Each N runs in its own process; peak
memory is the process's peak RSS minus its RSS once the codes exist (so it
is what the evaluation itself adds). The ranking works on query chunks
sized to ranking.retrieval_metrics' memory_budget (1 GiB), so the peak
should stay flat as N grows; time grows with Q x N.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mib():
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
  return float('nan')


def child(n, queries, bits, classes):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hashjax.evaluation import ranking  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  db = np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)
  q = np.where(rng.random((queries, bits)) < 0.5, -1, 1).astype(np.int8)
  eye = np.eye(classes, dtype=np.float32)
  db_l, q_l = eye[rng.integers(0, classes, n)], eye[rng.integers(0, classes,
                                                                  queries)]
  base = _rss_mib()
  t0 = time.perf_counter()
  m = ranking.retrieval_metrics(q, db, q_l, db_l, topk=(100,),
                                precision_at=(100,))
  seconds = time.perf_counter() - t0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print('RESULT ' + json.dumps(dict(n=n, seconds=seconds,
                                    extra_mib=peak - base,
                                    map_all=m['map@all'])), flush=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--queries', type=int, default=10000)
  p.add_argument('--sizes', default='10000,100000,1000000')
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--classes', type=int, default=10)
  p.add_argument('--child', type=int, default=0)
  a = p.parse_args()
  if a.child:
    return child(a.child, a.queries, a.bits, a.classes)
  print(f'Exact evaluation, {a.queries:,} queries, {a.bits} bits, '
        f'{os.cpu_count()} CPU cores')
  print('| N | seconds | queries/s | peak extra memory MiB | mAP@all |')
  print('|---|---|---|---|---|')
  for n in (int(s) for s in a.sizes.split(',')):
    proc = subprocess.run(
        [sys.executable, __file__, f'--child={n}', f'--queries={a.queries}',
         f'--bits={a.bits}', f'--classes={a.classes}'],
        capture_output=True, text=True, check=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    r = json.loads(line[-1][len('RESULT '):])
    print(f'| {n:,} | {r["seconds"]:.1f} | {a.queries / r["seconds"]:.0f} | '
          f'{r["extra_mib"]:.0f} | {r["map_all"]:.4f} |', flush=True)


if __name__ == '__main__':
  main()
