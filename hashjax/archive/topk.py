"""Exact Hamming top-k over bit-packed codes: XOR + popcount, select by
counting.

Ranking rule (the same as evaluation, hashjax/evaluation/ranking.py):
ascending Hamming distance, ties by database index, lower first.

A sort over 10^6 distances is hopeless on XLA:CPU (docs/search.md §4.1:
lax.top_k runs at 3-4 queries/s), but a distance is a small integer
(0..bits), so the k-th smallest can be found by counting. For a block of
queries against the database:

  1. distances to every code are reduced, in the same fused loop, to the
     minimum per group of `group` consecutive codes (cmin: [B, N/group]);
  2. t = the k-th smallest group minimum, by a histogram of cmin. The k
     groups below it hold >= k codes within distance t, so the k-th nearest
     distance D_k <= t, and every code at distance <= D_k lies in a group
     with cmin <= t;
  3. every group with cmin < t (fewer than k) and then the lowest-index
     groups with cmin == t, `max_groups` groups in all, are gathered in
     index order and their distances recomputed. Each holds a code within
     t, so they hold >= k codes that are closer than t, or at t and below
     the last group taken: the top k are among them, ties included. The
     exact top-k of the candidates is found by a histogram again, ties to
     the lower index.
Steps 2-3 run twice: first on super-groups of `fanout` groups (their
minima), then on the groups inside the super-groups picked, so the
histograms and selections touch N / (group * fanout) and a few thousand
entries instead of N / group. No sort touches more than k entries (k x
devices when the database is sharded over devices: each ranks its shard,
then the candidates merge). tests/search_test.py checks the result against
a stable sort, duplicates and ties included, on 1 and 8 devices.

On the CPU, with numba installed (the `fast` extra), `search` runs the
compiled one-pass scan of hashjax/archive/flat_numba.py instead: the same
result, 1.6-4x this kernel's speed there (bench/search.py). The kernel
here serves GPUs and TPUs, a mesh of devices, and CPUs without numba.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from hashjax.archive import flat_numba

KERNELS = ('auto', 'xla', 'compiled')


def _distances(q, db):
  """[B, W] x [..., W] uint32 -> int32 popcount(q ^ db) summed over words."""
  x = jax.lax.population_count(q[(slice(None),) + (None,) * (db.ndim - 1)]
                               ^ db[None])
  return x.sum(-1, dtype=jnp.int32)


def _bincount_rows(x, length):
  return jax.vmap(lambda r: jnp.bincount(r, length=length))(x)


def _first_k(dist, index, k, bits):
  """Exact top-k of each row of (dist, index): ascending distance, ties by
  index. `index` ascends along each row; invalid entries have dist > bits.
  Returns (dist [B, k], index [B, k]) sorted."""
  hist = _bincount_rows(dist, bits + 2)
  cum = jnp.cumsum(hist, axis=1)
  d_k = jnp.argmax(cum >= k, axis=1)                    # k-th distance
  length = dist.shape[1]
  if length < (1 << 16):
    # One sort of int32 keys (distance, position): entries beyond the k-th
    # distance sort last. Positions ascend with index, so ties go by index
    # (2-3x faster than selecting k by a cumsum and sorting (d, i) pairs).
    key = jnp.where(dist <= d_k[:, None],
                    dist * (1 << 16) + jnp.arange(length, dtype=jnp.int32),
                    jnp.iinfo(jnp.int32).max)
    key = jax.lax.sort(key, dimension=1)[:, :k]
    return key >> 16, jnp.take_along_axis(index, key & 0xFFFF, 1)
  below = jnp.where(d_k > 0, jnp.take_along_axis(
      cum, jnp.maximum(d_k - 1, 0)[:, None], 1)[:, 0], 0)
  at = dist == d_k[:, None]
  take = (dist < d_k[:, None]) | (at & (jnp.cumsum(at, axis=1)
                                        <= (k - below)[:, None]))
  pos = jax.vmap(lambda t: jnp.nonzero(t, size=k, fill_value=0)[0])(take)
  d = jnp.take_along_axis(dist, pos, 1)
  i = jnp.take_along_axis(index, pos, 1)
  # k entries in index order -> (distance, index) order; k is small.
  d, i = jax.lax.sort((d, i), dimension=1, num_keys=2)
  return d, i


def _select(minima, k, m, bits):
  """Positions [B, m] (ascending; fill = L) of the units to re-score, given
  each unit's minimum distance [B, L] (units in index order).

  t = the k-th smallest minimum bounds the k-th distance (D_k <= t). Taken:
  every unit with minimum < t (fewer than k), then the lowest-index units
  at t, m in all. Each holds a code within t, so the taken units hold >= k
  codes closer than t, or at t and below the last unit taken: the top k,
  ties by index, are among them.
  """
  length = minima.shape[1]
  cum = jnp.cumsum(_bincount_rows(minima, bits + 2), axis=1)
  t = jnp.argmax(cum >= min(k, length), axis=1)
  below = jnp.where(t > 0, jnp.take_along_axis(
      cum, jnp.maximum(t - 1, 0)[:, None], 1)[:, 0], 0)
  at = minima == t[:, None]
  take = (minima < t[:, None]) | (at & (jnp.cumsum(at, axis=1)
                                        <= (m - below)[:, None]))
  return jax.vmap(lambda tk: jnp.nonzero(tk, size=m, fill_value=length)[0])(
      take)


def topk_block(q, db, n_valid, *, k, bits, group=32, fanout=16,
               max_groups=100, sub=0):
  """Exact top-k for a block of queries.

  Args:
    q: [B, W] uint32 packed queries.
    db: [N, W] uint32 packed database, N a multiple of group * fanout (pad
      with anything; rows >= n_valid never match).
    n_valid: number of real database rows (int32 scalar).
    k: results per query, k <= n_valid.
    bits: code length.
    group: codes per group; fanout: groups per super-group.
    sub: 0, or codes per sub-group (dividing group): the groups picked are
      narrowed to sub-groups by the same selection before re-scoring, so a
      large k re-scores k x sub codes instead of k x group.
  Returns:
    (distances [B, k] int32, indices [B, k] int32), ascending.
  """
  n, _ = db.shape
  b, g = q.shape[0], n // group
  far = bits + 1
  m = max(max_groups, k)
  valid = jnp.arange(n) < n_valid
  # One fused pass: distances reduced to their minimum per group (per
  # sub-group first, with sub).
  dist = jnp.where(valid[None], _distances(q, db), far)
  if sub:
    per = group // sub
    submin = dist.reshape(b, g * per, sub).min(-1)            # [B, G*per]
    cmin = submin.reshape(b, g, per).min(-1)                  # [B, G]
  else:
    cmin = dist.reshape(b, g, group).min(-1)                  # [B, G]
  # Super-groups of `fanout` groups: pick those that can hold the top k
  # (_select), then the groups within them, then re-score their codes.
  smin = cmin.reshape(b, g // fanout, fanout).min(-1)
  sup = _select(smin, k, m, bits)                             # [B, m]
  gidx = (sup[:, :, None] * fanout + jnp.arange(fanout)).reshape(b, -1)
  gok = jnp.repeat(sup < g // fanout, fanout, axis=1)
  gmin = jnp.where(gok, jnp.take_along_axis(
      cmin, jnp.where(gok, gidx, 0), 1), far)                 # [B, m*fanout]
  pos = _select(gmin, k, m, bits)                             # [B, m]
  pok = pos < gmin.shape[1]
  groups = jnp.where(pok, jnp.take_along_axis(
      gidx, jnp.where(pok, pos, 0), 1), g)
  if sub:   # the same step once more: sub-groups within the groups picked
    sidx = (groups[:, :, None] * per + jnp.arange(per)).reshape(b, -1)
    sok = jnp.repeat(groups < g, per, axis=1)
    smin2 = jnp.where(sok, jnp.take_along_axis(
        submin, jnp.where(sok, sidx, 0), 1), far)             # [B, m*per]
    spos = _select(smin2, k, m, bits)                         # [B, m]
    spok = spos < smin2.shape[1]
    units = jnp.where(spok, jnp.take_along_axis(
        sidx, jnp.where(spok, spos, 0), 1), g * per)
    size, count = sub, g * per
  else:
    units, size, count = groups, group, g
  rows = (units[:, :, None] * size + jnp.arange(size)).reshape(b, -1)
  ok = (rows < n_valid) & (jnp.repeat(units, size, axis=1) < count)
  safe = jnp.where(ok, rows, 0)
  cand = jax.vmap(lambda qq, r: _distances(qq[None], db[r])[0])(q, safe)
  cand = jnp.where(ok, cand, far)
  return _first_k(cand, jnp.where(ok, rows, n), k, bits)


_topk_block_jit = jax.jit(topk_block, static_argnames=(
    'k', 'bits', 'group', 'fanout', 'max_groups', 'sub'))


def sub_for(k, group):
  """Sub-groups of 8 codes when k is large (k x group candidates would
  dominate: bench/topk_stages.py), else none."""
  return 8 if k > 256 and group > 8 and group % 8 == 0 else 0


@functools.lru_cache(maxsize=16)
def _sharded_topk(mesh, k, bits, group, fanout, max_groups, local_n, sub=0):
  """top-k with the database split over mesh axis 'data': each device
  ranks its shard (global indices), then the D x k candidates merge by
  (distance, index)."""
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  def per_device(q, db, n_valid):
    offset = jax.lax.axis_index('data') * local_n
    d, i = topk_block(q, db, jnp.clip(n_valid - offset, 0, local_n), k=k,
                      bits=bits, group=group, fanout=fanout,
                      max_groups=max_groups, sub=sub)
    # Rows past the shard's real codes come back at distance bits + 1.
    return d, jnp.where(d <= bits, i + offset, jnp.iinfo(jnp.int32).max)

  ranked = jax.shard_map(per_device, mesh=mesh,
                         in_specs=(P(), P('data'), P()),
                         out_specs=(P(None, 'data'), P(None, 'data')),
                         check_vma=False)

  @jax.jit
  def run(q, db, n_valid):
    d, i = ranked(q, db, n_valid)                       # [B, D * k]
    i, d = jax.lax.sort((i, d), dimension=1, num_keys=1)  # index order
    return _first_k(d, i, k, bits)
  return run


def block_for(n, largest=64):
  """The compiled query-block size for n queries: the next power of two
  (one query is not padded to a block of 64), at most `largest`."""
  return min(largest, 1 << max(int(n) - 1, 0).bit_length())


def _mesh_and_unit(mesh, group, fanout):
  from hashjax import parallel  # pylint: disable=g-import-not-at-top
  if mesh is None and jax.device_count() > 1:
    mesh = parallel.make_mesh()
  devices = 1 if mesh is None else mesh.devices.size
  return (mesh if devices > 1 else None), group * fanout * devices


def _chunks(db_packed, mesh, unit, db_chunk):
  """(start, rows, device array) per chunk of the database, each padded to
  a multiple of `unit` and, with a mesh, split over its devices."""
  from hashjax import parallel  # pylint: disable=g-import-not-at-top
  for start in range(0, db_packed.shape[0], db_chunk):
    db = np.asarray(db_packed[start:start + db_chunk], np.uint32)
    rows = db.shape[0]
    pad = (-rows) % unit
    if pad:
      db = np.concatenate([db, np.zeros((pad, db.shape[1]), np.uint32)])
    db = (jax.device_put(db, parallel.data_sharded(mesh)) if mesh is not None
          else jnp.asarray(db))
    yield start, rows, db


def kernel_for(kernel='auto', mesh=None):
  """'xla' (this module's kernel) or 'compiled' (flat_numba): `auto` is
  the compiled scan on a CPU backend with numba and no mesh given."""
  if kernel not in KERNELS:
    raise ValueError(f'Unknown flat-scan kernel {kernel!r}; choose one of '
                     f'{", ".join(KERNELS)}.')
  if kernel == 'auto':
    kernel = ('compiled' if flat_numba.AVAILABLE and mesh is None and
              jax.default_backend() == 'cpu' else 'xla')
  if kernel == 'compiled':
    flat_numba.require()
  return kernel


class OnDevice:
  """A packed database copied to the device(s) once, to be searched many
  times (a service): `search` then copies nothing per call. Pass it as
  `db_packed`; group, fanout and db_chunk are fixed here. Where `search`
  runs the compiled CPU scan (kernel_for), the codes stay in host memory
  and nothing is copied."""

  def __init__(self, db_packed, *, group=32, fanout=16, mesh=None,
               db_chunk=1 << 22, kernel='auto'):
    self.kernel = kernel_for(kernel, mesh)
    self.host = db_packed
    self.mesh, unit = _mesh_and_unit(mesh, group, fanout)
    self.group, self.fanout = group, fanout
    self.shape = tuple(db_packed.shape)
    self.chunks = None
    if self.kernel == 'xla':
      self.chunks = list(_chunks(db_packed, self.mesh, unit,
                                 max(unit, db_chunk // unit * unit)))


def search(q_packed, db_packed, k, bits, *, query_block=None, group=32,
           fanout=16, max_groups=100, mesh=None, db_chunk=1 << 22,
           kernel='auto'):
  """Exact top-k of every query: (distances [Q, k], indices [Q, k]) numpy.

  `db_packed`: uint32 [N, W] (numpy or memory-mapped), or an OnDevice.
  k is clipped to the database size. Queries go in blocks of
  `query_block` (default 64, or 16 for k > 256, when each query re-scores
  k x 8 candidates: `sub_for`); the database in chunks of `db_chunk` codes
  (a memory-mapped index is read one chunk at a time), each chunk's top k
  merging into the running result by (distance, index). With several
  devices (or a `mesh` with a 'data' axis) each chunk is split over them
  and the per-device results merged.

  kernel: 'auto' (kernel_for: the compiled CPU scan where it applies),
  'xla' or 'compiled' (flat_numba.search; query_block, group, fanout,
  max_groups and mesh are this module's and do not apply to it). An
  OnDevice fixes the kernel when it is made.
  """
  n = db_packed.shape[0]
  k = int(min(k, n))
  if k < 1:
    raise ValueError('search needs a non-empty database and k >= 1.')
  if isinstance(db_packed, OnDevice):
    kernel = db_packed.kernel
  else:
    kernel = kernel_for(kernel, mesh)
  if kernel == 'compiled':
    host = db_packed.host if isinstance(db_packed, OnDevice) else db_packed
    return flat_numba.search(q_packed, host, k, bits, db_chunk=db_chunk)
  if isinstance(db_packed, OnDevice):
    mesh, group, fanout = db_packed.mesh, db_packed.group, db_packed.fanout
    chunks = db_packed.chunks
  else:
    mesh, unit = _mesh_and_unit(mesh, group, fanout)
    chunks = _chunks(db_packed, mesh, unit, max(unit,
                                                db_chunk // unit * unit))
  if query_block is None:
    query_block = 64 if k <= 256 else 16
  q = np.asarray(q_packed, np.uint32)
  best_d = best_i = None
  for start, rows, db in chunks:
    kk = min(k, rows)
    if mesh is not None:
      step = _sharded_topk(mesh, kk, bits, group, fanout, max_groups,
                           db.shape[0] // mesh.devices.size,
                           sub_for(kk, group))
    else:
      step = functools.partial(_topk_block_jit, k=kk, bits=bits, group=group,
                               fanout=fanout, max_groups=max_groups,
                               sub=sub_for(kk, group))
    out_d, out_i = [], []
    for s in range(0, len(q), query_block):
      block = q[s:s + query_block]
      b = len(block)
      if b < query_block:   # one compiled shape
        block = np.concatenate([block, np.zeros((query_block - b, q.shape[1]),
                                                np.uint32)])
      d, i = step(jnp.asarray(block), db, jnp.int32(rows))
      out_d.append(np.asarray(d)[:b])
      out_i.append(np.asarray(i)[:b].astype(np.int64) + start)
    d, i = np.concatenate(out_d), np.concatenate(out_i)
    if best_d is None:
      best_d, best_i = d, i
    else:   # merge: (distance, index) order, keep k
      d, i = np.concatenate([best_d, d], 1), np.concatenate([best_i, i], 1)
      order = np.lexsort((i, d), axis=1)[:, :k]
      best_d = np.take_along_axis(d, order, 1)
      best_i = np.take_along_axis(i, order, 1)
  return best_d, best_i
