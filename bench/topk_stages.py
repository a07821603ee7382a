"""Where a block of the exact top-k kernel spends its time, stage by stage.

  python bench/topk_stages.py [--n=1000000] [--bits=64] [--block=16] [--k=1000]

Re-traces hashjax/archive/topk.py's topk_block up to each stage (distance
pass; super-group selection; group selection; gathering and re-scoring the
candidates; their exact top k) and prints the time of each prefix, jitted,
median of 10 calls after compilation. The differences are the stages' costs.
Random codes. It times topk_block without sub-groups (sub=0: every k up
to 256, and larger k before sub-groups existed; it measured why they were
added). Kept in step with topk_block by hand: a stage changed there must
change here.
"""
import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from hashjax.archive import index
from hashjax.archive.topk import _distances, _first_k, _select  # pylint: disable=protected-access

p = argparse.ArgumentParser()
p.add_argument('--n', type=int, default=1_000_000)
p.add_argument('--bits', type=int, default=64)
p.add_argument('--block', type=int, default=16)
p.add_argument('--k', type=int, default=1000)
a = p.parse_args()
n, bits, B, k = a.n, a.bits, a.block, a.k
rng = np.random.default_rng(0)
db = jnp.asarray(index.pack(rng.integers(0, 2, (n + 512 - n % 512, bits)) * 2 - 1))
q = jnp.asarray(index.pack(rng.integers(0, 2, (B, bits)) * 2 - 1))
def stages(q, db, n_valid, upto, group=32, fanout=16, max_groups=100):
  n_, _ = db.shape; b, g = q.shape[0], n_ // group; far = bits + 1; m = max(max_groups, k)
  valid = jnp.arange(n_) < n_valid
  cmin = jnp.where(valid[None], _distances(q, db), far).reshape(b, g, group).min(-1)
  if upto == 0: return cmin.sum()
  smin = cmin.reshape(b, g // fanout, fanout).min(-1)
  sup = _select(smin, k, m, bits)
  gidx = (sup[:, :, None] * fanout + jnp.arange(fanout)).reshape(b, -1)
  gok = jnp.repeat(sup < g // fanout, fanout, axis=1)
  gmin = jnp.where(gok, jnp.take_along_axis(cmin, jnp.where(gok, gidx, 0), 1), far)
  if upto == 1: return gmin.sum()
  pos = _select(gmin, k, m, bits)
  pok = pos < gmin.shape[1]
  groups = jnp.where(pok, jnp.take_along_axis(gidx, jnp.where(pok, pos, 0), 1), g)
  rows = (groups[:, :, None] * group + jnp.arange(group)).reshape(b, -1)
  ok = (rows < n_valid) & (jnp.repeat(groups, group, axis=1) < g)
  safe = jnp.where(ok, rows, 0)
  if upto == 2: return safe.sum()
  cand = jax.vmap(lambda qq, r: _distances(qq[None], db[r])[0])(q, safe)
  cand = jnp.where(ok, cand, far)
  if upto == 3: return cand.sum()
  d, i = _first_k(cand, jnp.where(ok, rows, n_), k, bits)
  return d.sum() + i.sum()
NAMES = ('distance pass (group minima)', '+ super-group selection',
         '+ group selection', '+ gather and re-score candidates',
         '+ exact top k of the candidates (all of topk_block)')
print(f'{n:,} codes of {bits} bits, a block of {B} queries, k = {k}\n')
print('| up to | ms per block | stage ms |')
print('|---|---:|---:|')
last = 0.0
for upto, name in enumerate(NAMES):
  f = jax.jit(functools.partial(stages, upto=upto))
  f(q, db, n).block_until_ready()
  times = []
  for _ in range(10):
    t = time.perf_counter()
    f(q, db, n).block_until_ready()
    times.append(time.perf_counter() - t)
  ms = float(np.median(times)) * 1e3
  print(f'| {name} | {ms:.1f} | {ms - last:.1f} |', flush=True)
  last = ms
