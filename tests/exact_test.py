"""Exact search of an index by the flat scan, multi-index hashing or auto,
k nearest and radius, single-file and sharded (with each shard's tables
file): all equal a stable sort of the Hamming distances."""
import os
import time
import types

import numpy as np
import pytest

from hashjax.archive import exact
from hashjax.archive import flat_numba
from hashjax.archive import index
from hashjax.archive import mih
from hashjax.archive import shards


def reference(q, db, k):
  d = np.bitwise_count(q[:, None, :] ^ db[None]).sum(-1)
  order = np.argsort(d, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(d, order, 1), order


def _clustered(rng, n, bits, centres=5, flip=0.08):
  c = rng.integers(0, 2, (centres, bits))[rng.integers(0, centres, n)]
  c = np.where(rng.random((n, bits)) < flip, 1 - c, c)
  c[::17] = c[3]                               # exact duplicates: ties
  return c.astype(np.int8) * 2 - 1


@pytest.fixture(scope='module')
def sharded(tmp_path_factory):
  """A 3-shard 64-bit index and its codes."""
  rng = np.random.default_rng(0)
  codes = _clustered(rng, 5000, 64)
  path = str(tmp_path_factory.mktemp('exact') / 'idx')
  bounds = [0, 1200, 1201, 5000]               # a one-code shard too
  for s in range(3):
    a, b = bounds[s], bounds[s + 1]
    ids = [f'{r}.jpg' for r in range(a, b)]
    (shards.save if s == 0 else shards.append)(path, codes[a:b], ids)
  return path, index.pack(codes)


@pytest.mark.parametrize('algorithm', exact.ALGORITHMS)
@pytest.mark.parametrize('k', [1, 10, 100, 6000])
def test_nearest_on_a_sharded_index(sharded, algorithm, k):
  path, packed = sharded
  idx = shards.load(path)
  assert len(idx.shards) == 3
  assert all(os.path.exists(os.path.join(path, shards.tables_file(e['file'])))
             for e in idx.manifest['shards'])
  rng = np.random.default_rng(k)
  q = np.concatenate([packed[[3, 4999, 1200]],
                      rng.integers(0, 2**32, (5, 2), dtype=np.uint32)])
  d, i = exact.nearest(idx, q, k, algorithm)
  want_d, want_i = reference(q, packed, min(k, 5000))
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


@pytest.mark.parametrize('algorithm', exact.ALGORITHMS)
@pytest.mark.parametrize('radius', [0, 3, 9])
def test_within_a_radius(sharded, algorithm, radius):
  path, packed = sharded
  idx = shards.load(path, lazy=True)
  q = packed[[3, 10, 4000]] ^ np.uint32(1)
  found = exact.within(idx, q, radius, algorithm)
  dist = np.bitwise_count(q[:, None, :] ^ packed[None]).sum(-1)
  for qi, (d, i) in enumerate(found):
    rows = np.flatnonzero(dist[qi] <= radius)
    order = np.lexsort((rows, dist[qi][rows]))
    np.testing.assert_array_equal(i, rows[order])
    np.testing.assert_array_equal(d, dist[qi][rows][order])
  # row 3 and its duplicates are 2 bits away (bit 0 of each word flipped)
  assert (len(found[0][0]) > 1) == (radius >= 2)
  with pytest.raises(ValueError, match='radius must be 0..64'):
    exact.within(idx, q, 65, algorithm)


def test_single_file_index_and_unknown_algorithm(tmp_path):
  rng = np.random.default_rng(1)
  codes = _clustered(rng, 700, 32)
  path = str(tmp_path / 'one.hjidx')
  index.save(path, codes, [str(r) for r in range(700)])
  idx = shards.load(path)
  q = index.pack(codes[[0, 5, 9]])
  want = reference(q, index.pack(codes), 20)
  for algorithm in exact.ALGORITHMS:
    d, i = exact.nearest(idx, q, 20, algorithm)
    np.testing.assert_array_equal(d, want[0])
    np.testing.assert_array_equal(i, want[1])
  with pytest.raises(ValueError, match='Unknown search algorithm'):
    exact.nearest(idx, q, 20, 'lsh')


def test_tables_files_checked_and_rebuilt(sharded, tmp_path):
  path, packed = sharded
  import shutil  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / 'copy')
  shutil.copytree(path, copy)
  idx = shards.load(copy)
  tfile = os.path.join(copy, shards.tables_file(
      idx.manifest['shards'][2]['file']))
  with open(tfile, 'r+b') as f:
    f.seek(os.path.getsize(tfile) - 8)
    f.write(b'\xff' * 8)
  with pytest.raises(mih.BadTablesError) as e:
    exact.nearest(shards.load(copy), packed[:2], 5, 'mih')
  assert os.path.basename(tfile) in str(e.value)
  os.remove(tfile)        # missing tables: built in memory, same answers
  d, i = exact.nearest(shards.load(copy), packed[:2], 5, 'mih')
  want = reference(packed[:2], packed, 5)
  np.testing.assert_array_equal(d, want[0])
  np.testing.assert_array_equal(i, want[1])
  shards.compact(copy)   # rewrites the tables of the merged shard
  assert sorted(f for f in os.listdir(copy) if f.endswith('.mih')) == [
      shards.tables_file(e['file'])
      for e in shards.read_manifest(copy)['shards']]


@pytest.mark.parametrize('ratio', [1e-3, 45, 1e6])
def test_auto_with_the_flat_scan_estimated(sharded, monkeypatch, ratio):
  """auto past choose() (bypassed), the flat scan's cost estimated from
  MIH's speed: all MIH, a mix, or all flat (cost ratios), the exact
  answer each time."""
  path, packed = sharded
  monkeypatch.setattr(mih, 'choose', lambda *a: 'mih')
  monkeypatch.setattr(mih, 'unit_cost', lambda: ratio)
  idx = shards.load(path)
  q = packed[np.arange(0, 5000, 97)]
  d, i = exact.nearest(idx, q, 10, 'auto')
  want_d, want_i = reference(q, packed, 10)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


def _exact_within_auto(sharded, monkeypatch):
  """Radius 6 by auto for 52 queries of the sharded index, each answer
  checked against a stable sort of the distances; returns (the queries,
  the size of each call auto made to the flat scan)."""
  path, packed = sharded
  scanned = []
  within = flat_numba.within
  monkeypatch.setattr(flat_numba, 'within',
                      lambda q, *a: scanned.append(len(q)) or within(q, *a))
  idx = shards.load(path)
  q = packed[np.arange(0, 5000, 97)] ^ np.uint32(1)
  found = exact.within(idx, q, 6, 'auto')
  dist = np.bitwise_count(q[:, None, :] ^ packed[None]).sum(-1)
  for qi, (d, i) in enumerate(found):
    rows = np.flatnonzero(dist[qi] <= 6)
    order = np.lexsort((rows, dist[qi][rows]))
    np.testing.assert_array_equal(i, rows[order])
    np.testing.assert_array_equal(d, dist[qi][rows][order])
  return q, scanned


@pytest.mark.parametrize('ratio', [1e-3, 3, 1e6])
def test_within_auto_sends_the_queries_mih_gives_up_on_to_the_flat_scan(
    sharded, monkeypatch, ratio):
  """auto's radius search past its size threshold: MIH with a budget of
  N / unit_cost per query; the queries that exhaust it (none, some, all)
  go to the flat scan, and every answer is exact."""
  if not mih.compiled():
    pytest.skip('the budget is the compiled loop\'s (numba)')
  monkeypatch.setattr(exact, 'RADIUS_MIN_CODES', 0)
  monkeypatch.setattr(mih, 'RADIUS_COST_RATIO_COMPILED', ratio)
  q, scanned = _exact_within_auto(sharded, monkeypatch)
  assert sum(scanned) == {1e-3: 0, 1e6: len(q)}.get(ratio, sum(scanned))
  if ratio == 3:
    assert 0 < sum(scanned) < len(q), scanned


@pytest.mark.parametrize('floor', [1e-3, 1e6])
def test_within_auto_retries_many_give_ups_with_a_measured_budget(
    sharded, monkeypatch, floor):
  """When many queries exceed auto's radius budget, the flat scan is timed
  on 8 of them and MIH on 2 more with the widest budget (N / floor); the
  rest get the measured budget (floor 1e-3: MIH may keep them) or, when
  MIH's probe queries give up too (floor 1e6), the flat scan. Every
  answer is exact either way."""
  if not mih.compiled():
    pytest.skip('the budget is the compiled loop\'s (numba)')
  monkeypatch.setattr(exact, 'RADIUS_MIN_CODES', 0)
  monkeypatch.setattr(exact, 'RADIUS_RETRY_MIN', 12)
  monkeypatch.setattr(mih, 'RADIUS_COST_RATIO_COMPILED', 1e6)
  monkeypatch.setattr(mih, 'RADIUS_COST_RATIO_FLOOR', floor)
  q, scanned = _exact_within_auto(sharded, monkeypatch)
  if floor == 1e6:
    assert scanned == [8, len(q) - 8], scanned
  else:
    assert scanned[0] == 8 and sum(scanned) <= len(q) - 2, scanned


def test_radius_retry_counts_mih_time_as_if_on_every_thread(sharded,
                                                           monkeypatch):
  """The retry times MIH on 2 queries, one a thread, and the flat scan,
  which runs on every thread: MIH's time is scaled to every thread, so
  the measured budget on a machine with 8 threads is 4 times that on one
  with 2 (the flat scan and MIH's probe sleep a set time, so the budgets
  compare exactly)."""
  if not mih.compiled():
    pytest.skip('the budget is the compiled loop\'s (numba)')
  path, packed = sharded
  idx = shards.load(path)
  q = packed[np.arange(0, 5000, 97)] ^ np.uint32(1)
  monkeypatch.setattr(mih, 'RADIUS_COST_RATIO_COMPILED', 1e6)
  monkeypatch.setattr(mih, 'RADIUS_COST_RATIO_FLOOR', 1e-6)
  radius = mih.radius
  radius(q[:2], exact.parts(idx), 6, 64, max_candidates=1e9)   # compiles
  budgets = []

  def timed_radius(qq, *a, max_candidates=None, **kw):
    if len(qq) == exact.RADIUS_PROBE_MIH:
      time.sleep(0.05)
    else:
      budgets.append(max_candidates)
    return radius(qq, *a, max_candidates=max_candidates, **kw)
  monkeypatch.setattr(mih, 'radius', timed_radius)

  def flat(qq):
    time.sleep(0.05 * len(qq))
    return flat_numba.within(qq, packed, 6, 64)
  dist = np.bitwise_count(q[:, None, :] ^ packed[None]).sum(-1)
  for threads in (2, 8):
    monkeypatch.setattr(mih, 'workers', types.SimpleNamespace(
        threads=lambda t=threads: t, run_split=mih.workers.run_split))
    found = [None] * len(q)
    rest = exact._radius_retry(q, np.arange(len(q)), found, flat,
                               exact.parts(idx), 6, 64, len(packed))
    assert [qi for qi, f in enumerate(found) if f is None] == list(rest)
    for qi in np.setdiff1d(np.arange(len(q)), rest):   # answered: exact
      i = found[qi][1]
      rows = np.flatnonzero(dist[qi] <= 6)
      np.testing.assert_array_equal(i, rows[np.lexsort((rows, dist[qi][rows]))])
  assert len(budgets) == 2 and 3 < budgets[1] / budgets[0] < 5, budgets
