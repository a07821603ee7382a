"""Exact search of an index, single-file or sharded: the k nearest codes,
or every code within a Hamming radius, by the flat scan
(hashjax/archive/topk.py), by multi-index hashing (hashjax/archive/mih.py),
or by whichever suits (`auto`). All three give the same answer: ascending
distance, ties by index.

`auto` sends a small index, or a k that is a sizeable share of it, to the
flat scan (mih.choose); otherwise it runs MIH on the first queries with a
budget of about one flat scan per query (the queries that exhaust it,
codes spread too evenly for substrings to prune, go to the flat scan),
estimates the flat scan's cost from MIH's measured seconds per unit of
work and mih.unit_cost(), and sends the rest to whichever costs less
(mih.search_auto).
"""
import numpy as np

from hashjax.archive import flat_numba
from hashjax.archive import mih
from hashjax.archive import topk

ALGORITHMS = ('auto', 'flat', 'mih')
# `within`'s auto: below this many codes the flat scan alone.
RADIUS_MIN_CODES = 100_000
# `within`'s auto, when at least RADIUS_RETRY_MIN queries exceed MIH's
# budget: the flat scan is timed on RADIUS_PROBE_FLAT of them and MIH on
# RADIUS_PROBE_MIH more, and the rest get the budget those times give.
RADIUS_RETRY_MIN = 64
RADIUS_PROBE_FLAT = 8
RADIUS_PROBE_MIH = 2


def _check(algorithm):
  if algorithm not in ALGORITHMS:
    raise ValueError(f'Unknown search algorithm {algorithm!r}; choose one of '
                     f'{", ".join(ALGORITHMS)}.')


def parts(idx, verify=True):
  """[(packed, mih.Tables, first row)] of a loaded index: a sharded index's
  tables files (ShardedIndex.parts), or tables built in memory for a
  single-file index (m chosen from its codes: mih.choose_m_for)."""
  if hasattr(idx, 'parts'):
    return idx.parts(verify)
  if getattr(idx, 'mih_parts', None) is None:   # built once per Index
    idx.mih_parts = [(idx.packed, mih.build(
        idx.packed, idx.bits, mih.choose_m_for(idx.packed, idx.bits),
        idx.header.get('codes_sha256')), 0)]
  return idx.mih_parts


def nearest(idx, q_packed, k, algorithm='auto'):
  """(distances [Q, k] int32, rows [Q, k] int64) of the k nearest codes of
  the index `idx` to each packed query."""
  return nearest_codes(idx.packed, idx.bits, lambda: parts(idx), q_packed, k,
                       algorithm)


def nearest_codes(packed, bits, get_parts, q_packed, k, algorithm='auto'):
  """`nearest` over packed codes [N, W] (an array, memory map or
  shards.Rows); get_parts() gives their MIH parts when needed."""
  _check(algorithm)
  q = np.ascontiguousarray(q_packed, np.uint32)
  n = packed.shape[0]
  if algorithm == 'flat' or (algorithm == 'auto' and
                             mih.choose(n, bits, k) == 'flat'):
    d, i = topk.search(q, packed, k, bits,
                       query_block=topk.block_for(len(q), 64 if k <= 256
                                                  else 16))
    return d.astype(np.int32), i.astype(np.int64)
  if algorithm == 'mih':
    d, i, _ = mih.search(q, get_parts(), k, bits)
    return d, i

  block = topk.block_for(len(q), 64 if k <= 256 else 16)

  def flat(qq):   # one compiled query block for every call auto makes
    d, i = topk.search(qq, packed, k, bits, query_block=block)
    return d.astype(np.int32), i.astype(np.int64)
  # The XLA kernel pads a call to `block` queries; the compiled scan does
  # not pad.
  padded = block if topk.kernel_for() == 'xla' else None
  return mih.search_auto(q, get_parts(), k, bits, flat_fn=flat,
                         estimate_flat=True, flat_block=padded)


def within(idx, q_packed, radius, algorithm='auto'):
  """Every code within Hamming distance `radius` of each query: a list of
  (distances int32, rows int64) per query, by (distance, row)."""
  return within_codes(idx.packed, idx.bits, lambda: parts(idx), q_packed,
                      radius, algorithm)


def within_codes(packed, bits, get_parts, q_packed, radius, algorithm='auto'):
  """`within` over packed codes [N, W]; get_parts() gives their MIH parts
  when needed (tables are loaded or built only where MIH may run).

  `auto`: the flat scan below RADIUS_MIN_CODES codes; else MIH, where its
  compiled loop runs with a budget of about one flat radius scan per query
  (N / mih.RADIUS_COST_RATIO_COMPILED units; a query over it, a radius too
  wide for the substrings to prune, is found so by adding up bucket sizes
  before any code is read, and goes to the flat scan; if many do, a budget
  measured on this call gets a second try, `_radius_retry`), or, in the
  NumPy loop, for radius < 2m."""
  _check(algorithm)
  if radius < 0 or radius > bits:
    raise ValueError(f'radius must be 0..{bits}; got {radius}.')
  q = np.ascontiguousarray(q_packed, np.uint32)
  n = packed.shape[0]

  def flat(qq):   # no XLA radius kernel: compiled on any backend
    if flat_numba.AVAILABLE:
      return flat_numba.within(qq, packed, radius, bits)
    return mih.radius_flat(qq, packed, radius, bits)
  if algorithm == 'mih':
    return mih.radius(q, get_parts(), radius, bits)
  if algorithm == 'flat' or n < RADIUS_MIN_CODES:
    return flat(q)
  if not mih.compiled():
    if radius < 2 * get_parts()[0][1].m:
      return mih.radius(q, get_parts(), radius, bits)
    return flat(q)
  found = mih.radius(q, get_parts(), radius, bits,
                     max_candidates=n / mih.RADIUS_COST_RATIO_COMPILED)
  rest = np.array([i for i, f in enumerate(found) if f is None], np.int64)
  if len(rest) >= RADIUS_RETRY_MIN:
    rest = _radius_retry(q, rest, found, flat, get_parts(), radius, bits, n)
  if len(rest):
    for i, f in zip(rest, flat(q[rest])):
      found[i] = f
  return found


def _radius_retry(q, rest, found, flat, mih_parts, radius, bits, n):
  """The queries `rest` exceeded auto's radius budget, which was fitted on
  clustered codes, where a unit of MIH work costs 22-43 flat-scan visits.
  On evenly spread codes a unit costs 8-15, so MIH can still win there.
  This measures both on this call: the flat scan on RADIUS_PROBE_FLAT of
  the queries, and MIH on RADIUS_PROBE_MIH more with the widest budget
  (N / mih.RADIUS_COST_RATIO_FLOOR), one query a thread, its time counted
  as if on every thread, as the flat scan's is. The units of MIH work that
  cost one flat scan then budget the remaining queries. Fills `found`;
  returns the queries left for the flat scan."""
  import time  # pylint: disable=g-import-not-at-top
  a, b = RADIUS_PROBE_FLAT, RADIUS_PROBE_FLAT + RADIUS_PROBE_MIH
  t0 = time.perf_counter()
  for i, f in zip(rest[:a], flat(q[rest[:a]])):
    found[i] = f
  flat_seconds = (time.perf_counter() - t0) / a
  stats = {}
  t0 = time.perf_counter()
  got = mih.radius(q[rest[a:b]], mih_parts, radius, bits,
                   max_candidates=n / mih.RADIUS_COST_RATIO_FLOOR,
                   stats=stats, threads=RADIUS_PROBE_MIH)
  # The give-ups' probes count too. Each query on its own thread, so that
  # they share the memory as the rest will; the time as if on every thread,
  # like the flat scan's.
  mih_seconds = mih.on_every_thread(time.perf_counter() - t0, stats)
  done = np.array([g is not None for g in got])
  for i, g in zip(rest[a:b], got):
    found[i] = g
  work = stats['work'][done].sum()
  budget = min(flat_seconds * work / mih_seconds if work else 0.0,
               n / mih.RADIUS_COST_RATIO_FLOOR)
  later = rest[b:]
  if budget > n / mih.RADIUS_COST_RATIO_COMPILED:
    got = mih.radius(q[later], mih_parts, radius, bits, max_candidates=budget)
    for i, g in zip(later, got):
      found[i] = g
    later = later[[g is None for g in got]]
  return np.concatenate([rest[a:b][~done], later])
