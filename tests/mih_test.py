"""Multi-index hashing (hashjax/archive/mih.py) against a stable sort:
random and clustered codes with ties and exact duplicates, code lengths
with unequal substrings, several shards, the candidate budget and the
flat fallback, radius search, and the tables file."""
import functools
import os
import time

import numpy as np
import pytest

from hashjax.archive import index
from hashjax.archive import mih
from hashjax.archive import mih_numba


@pytest.fixture(params=['numpy', 'numba', 'shared'])
def kernel(request, monkeypatch):
  """Runs a test through every MIH loop: NumPy's, the compiled one query
  after another (mih_numba.knn), and the compiled one with the queries in
  step (mih_numba.knn_shared, here from one query a thread)."""
  if request.param != 'numpy' and not mih_numba.AVAILABLE:
    pytest.skip('numba is not installed (the `fast` extra)')
  monkeypatch.setattr(mih, '_COMPILED', request.param != 'numpy')
  monkeypatch.setattr(mih, 'SHARED_QUERIES',
                      1 if request.param == 'shared' else 10**9)
  return request.param


def reference(q, db, k):
  d = np.bitwise_count(q[:, None, :] ^ db[None]).sum(-1)
  order = np.argsort(d, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(d, order, 1), order


def codes(n, bits, clusters, rng):
  """Packed codes: uniform, or `clusters` centres with 5% of bits flipped
  and every 7th code an exact copy of code 3."""
  if clusters:
    centres = rng.integers(0, 2, (clusters, bits))
    c = centres[rng.integers(0, clusters, n)]
    c = np.where(rng.random((n, bits)) < 0.05, 1 - c, c)
  else:
    c = rng.integers(0, 2, (n, bits))
  packed = index.pack(c * 2 - 1)
  packed[::7] = packed[3]
  return packed


def queries(packed, bits, rng, count=12):
  """Database codes (exact hits, duplicates), near ones, random ones."""
  near = packed[rng.integers(0, len(packed), count)].copy()
  near[:, 0] ^= np.uint32(5)
  rand = index.pack(rng.integers(0, 2, (count, bits)) * 2 - 1)
  return np.concatenate([packed[:4], near, rand])


def shards(packed, bits, cuts, m=None):
  m = mih.choose_m(len(packed), bits) if m is None else m
  edges = [0] + list(cuts) + [len(packed)]
  return [(packed[a:b], mih.build(packed[a:b], bits, m=m), a)
          for a, b in zip(edges[:-1], edges[1:])]


def test_layout_and_m():
  assert mih.layout(64, 3) == ([0, 22, 43], [22, 21, 21])
  assert mih.layout(40, 3) == ([0, 14, 27], [14, 13, 13])
  assert mih.paper_m(10**6, 64) == 3 and mih.paper_m(10**7, 64) == 3
  assert mih.paper_m(10**6, 128) == 6
  # The cost model: larger buckets than the paper's where probes dominate.
  assert mih.choose_m(10**7, 64) == 4 and mih.choose_m(10**8, 64) == 3
  for n, bits in ((10**5, 64), (10**7, 64), (10**7, 128), (10**9, 256)):
    m = mih.choose_m(n, bits)
    assert mih.paper_m(n, bits) <= m <= mih.paper_m(n, bits) + 2
    costs = {c: mih.predicted_cost(n, bits, c, 10) for c in
             range(mih.paper_m(n, bits), mih.paper_m(n, bits) + 3)
             if max(mih.layout(bits, c)[1]) >= mih.MIN_KEY_BITS}
    assert costs[m] == min(costs.values())
  probes, candidates = mih.predicted_work(10**7, 64, 3, 1)
  # d = 12 = 3 * 4 + 0: table 0 (22 bits) at radius 4, the others at 3.
  assert round(probes) == (1 + 22 + 231 + 1540 + 7315) + 2 * (1 + 21 + 210 + 1330)
  assert 0 < candidates < 10**5
  for n in (10, 1000, 10**9):
    for bits in (16, 32, 48, 64, 128, 256):
      m = mih.choose_m(n, bits)
      assert max(mih.layout(bits, m)[1]) <= mih.MAX_KEY_BITS
  assert mih.choose_m(10**9, 32) == 2     # 16-bit keys, not one of 32
  packed = index.pack(np.random.default_rng(0).integers(0, 2, (5, 64)) * 2 - 1)
  for start, length in ((0, 22), (22, 21), (43, 21), (30, 5)):
    bits = index.unpack(packed, 64)[:, start:start + length] > 0
    want = (bits * (1 << np.arange(length))).sum(1)
    np.testing.assert_array_equal(mih.substring(packed, start, length), want)


def test_m_chosen_from_the_codes(monkeypatch):
  """Clustered codes (a trained model's) keep the paper's m, uniformly
  random ones get the cost model's larger m; deterministic; a tiny index
  or no numba falls back to the model."""
  if not mih_numba.AVAILABLE:
    pytest.skip('numba is not installed (the `fast` extra)')
  rng = np.random.default_rng(5)
  n, bits = 1 << 16, 64
  rand, clustered = codes(n, bits, 0, rng), codes(n, bits, 3, rng)
  assert (mih.paper_m(n, bits), mih.choose_m(n, bits)) == (4, 6)
  assert mih.choose_m_for(rand, bits) == 6
  assert mih.choose_m_for(clustered, bits) == 4
  assert mih.choose_m_for(clustered, bits) == 4          # no randomness
  # A first part standing for a bigger index: m for 10^7 codes.
  assert mih.choose_m_for(rand, bits, n=10**7) == mih.choose_m(10**7, bits)
  assert mih.choose_m_for(clustered, bits, n=10**7) == mih.paper_m(10**7, 64)
  assert mih.choose_m_for(clustered[:4000], bits) == mih.choose_m(4000, bits)
  monkeypatch.setattr(mih, '_COMPILED', False)
  assert mih.choose_m_for(clustered, bits) == mih.choose_m(n, bits)


@pytest.mark.parametrize('n, bits, clusters', [
    (3000, 64, 0), (3000, 64, 3), (2000, 128, 20), (2500, 48, 0),
    (2500, 40, 5), (1500, 32, 0), (1200, 96, 4), (2000, 64, 1)])
def test_knn_matches_stable_sort(n, bits, clusters, kernel):
  del kernel
  rng = np.random.default_rng(n + bits + clusters)
  db = codes(n, bits, clusters, rng)
  q = queries(db, bits, rng)
  tables = mih.build(db, bits)
  for k in (1, 10, 100, n + 5):
    want_d, want_i = reference(q, db, min(k, n))
    for parts in ([(db, tables, 0)], shards(db, bits, [n // 3, n // 3 + 1])):
      d, i, gave_up = mih.search(q, parts, k, bits)
      assert not gave_up.any()
      np.testing.assert_array_equal(d, want_d)
      np.testing.assert_array_equal(i, want_i)


@pytest.mark.skipif(not mih_numba.AVAILABLE, reason='needs numba')
@pytest.mark.parametrize('clusters', [0, 3])
def test_shared_loop_equals_the_one_query_loop(clusters):
  """knn_shared against knn on the same parts (three shards in one call):
  the same k best, counts, work and give-ups, with no budget, with one
  that about half the queries pass, and with fractional work weights; a
  query that gave up in an earlier call keeps what it held; the same when
  a step's pairs go in many rounds."""
  rng = np.random.default_rng(7 + clusters)
  n, bits = 5000, 64
  db = codes(n, bits, clusters, rng)
  q = np.concatenate([queries(db, bits, rng, 40), db[:30]])
  parts = mih._parts(shards(db, bits, [1000, 3000]), bits)  # pylint: disable=protected-access
  lists = mih._compiled_parts(parts)  # pylint: disable=protected-access
  qw = mih._word_layout(q, parts[0].words.dtype)  # pylint: disable=protected-access
  keys = mih._query_keys(q, parts[0].tables)  # pylint: disable=protected-access
  lengths = np.asarray(parts[0].tables.lengths, np.int64)
  held = np.array([7, 9])

  def run(loop, k, budget, step=2, probe=41):
    best = np.full((len(q), k), -1, np.int64)
    count = np.zeros(len(q), np.int64)
    work = np.zeros(len(q), np.int64)
    gave_up = np.zeros(len(q), bool)
    gave_up[5], work[5] = True, 3        # gave up in an earlier call
    count[5] = min(k, 2)
    best[5, :count[5]] = held[:count[5]]
    loop(qw, keys, lengths, *lists, n, k, budget, step, probe, best, count,
         work, gave_up)
    return best, count, work, gave_up

  for k in (1, 10, 100):
    free = run(mih_numba.knn, k, np.inf)
    best, count, work, gave_up = free
    assert work[5] == 3 and gave_up[5] and count[5] == min(k, 2)
    np.testing.assert_array_equal(best[5, :count[5]], held[:count[5]])
    assert not gave_up[np.arange(len(q)) != 5].any()
    want_d, want_i = reference(q, db, k)
    np.testing.assert_array_equal(best[6:] // n, want_d[6:])
    np.testing.assert_array_equal(best[6:] % n, want_i[6:])
    budget = float(np.median(work))      # about half the queries give up
    bound = run(mih_numba.knn, k, budget)
    assert 10 < bound[3].sum() < len(q) - 10
    weights = dict(step=0.5, probe=0.25)
    light = float(np.median(run(mih_numba.knn, k, np.inf, **weights)[2]))
    fractional = run(mih_numba.knn, k, light, **weights)
    assert 10 < fractional[3].sum() < len(q) - 10
    for want, loop_budget, kw in ((free, np.inf, {}), (bound, budget, {}),
                                  (fractional, light, weights)):
      for max_pairs in (mih_numba.PAIRS, 50):    # one round; many
        got = run(functools.partial(mih_numba.knn_shared,
                                    max_pairs=max_pairs), k, loop_budget,
                  **kw)
        for a, b in zip(want, got):
          np.testing.assert_array_equal(a, b)


def test_shards_of_one_code_and_mixed_layouts(kernel):
  del kernel
  rng = np.random.default_rng(1)
  db = codes(600, 64, 2, rng)
  q = queries(db, 64, rng, 4)
  parts = shards(db, 64, [1, 2, 300], m=4)     # parts of 1, 1, 298, 300
  d, i, _ = mih.search(q, parts, 50, 64)
  want_d, want_i = reference(q, db, 50)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)
  mixed = [parts[0], (db[1:], mih.build(db[1:], 64, m=3), 1)]
  with pytest.raises(ValueError, match='one substring layout'):
    mih.search(q, mixed, 5, 64)


def test_small_calls_split_over_threads_only_on_large_resident_tables(
    monkeypatch):
  """A k-NN call of 8 queries on 2 threads runs on one below SPLIT_CODES
  codes and past the memory budget, on both from SPLIT_CODES codes (4 a
  thread); the answers are the same."""
  if not mih_numba.AVAILABLE:
    pytest.skip('numba is not installed (the `fast` extra)')
  monkeypatch.setattr(mih, '_COMPILED', True)
  monkeypatch.setattr(mih.workers, 'threads', lambda: 2)
  rng = np.random.default_rng(3)
  db = codes(2000, 64, 0, rng)
  q = queries(db, 64, rng, 2)                   # 4 + 2 + 2 = 8 queries
  parts = shards(db, 64, [900], m=4)
  want_d, want_i = reference(q, db, 10)
  for split_codes, budget, threads in ((10**9, 1 << 40, 1),
                                       (2000, 1 << 40, 2), (2000, 0, 1)):
    monkeypatch.setattr(mih, 'SPLIT_CODES', split_codes)
    monkeypatch.setattr(mih, 'RESIDENT_BUDGET', budget)
    stats = {}
    d, i, _ = mih.search(q, parts, 10, 64, stats=stats)
    assert stats['threads'] == threads, (split_codes, budget)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)


def test_budget_gives_up_and_auto_stays_exact(monkeypatch, kernel):
  del kernel
  for name in ('STEP_WORK', 'STEP_WORK_COMPILED'):
    monkeypatch.setattr(mih, name, 0)     # count probes and rows only
  monkeypatch.setattr(mih, 'PROBE_WORK_COMPILED', 1)
  rng = np.random.default_rng(2)
  n, bits = 4000, 64
  db = codes(n, bits, 0, rng)
  q = queries(db, bits, rng)
  parts = shards(db, bits, [1500])
  stats = {}
  d, i, gave_up = mih.search(q, parts, 1, bits, max_candidates=20,
                             stats=stats)
  assert gave_up[-12:].all() and not gave_up[1:3].any()  # unique hits: cheap
  assert (stats['candidates'][~gave_up] <= 20).all()
  assert (i[gave_up] == -1).all() and (d[gave_up] == bits + 1).all()
  want_d, want_i = reference(q, db, 1)
  np.testing.assert_array_equal(d[~gave_up], want_d[~gave_up])
  np.testing.assert_array_equal(i[~gave_up], want_i[~gave_up])
  want_d, want_i = reference(q, db, 10)
  # A tiny cost ratio: a large budget, MIH answers; a huge one: all flat.
  # choose() would send a database this small to the flat scan: bypass it.
  for ratio in (1e-3, 1e6):
    d, i = _auto(q, parts, 10, bits, ratio)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)
  d, i = mih.search_auto(q, parts, 10, bits)          # choose() -> flat
  np.testing.assert_array_equal(i, want_i)
  assert mih.choose(4000, 64, 10) == 'flat'
  assert mih.choose(10**7, 64, 100) == 'mih'
  assert mih.choose(10**7, 64, 10**6) == 'flat'
  if mih.compiled():     # a probe weighs PROBE_WORK_COMPILED rows
    lighter, heavier = {}, {}
    mih.search(q, parts, 1, bits, stats=lighter)
    monkeypatch.setattr(mih, 'PROBE_WORK_COMPILED', 24)
    mih.search(q, parts, 1, bits, stats=heavier)
    probes = (heavier['candidates'] - lighter['candidates']) / 23
    assert (probes >= len(parts)).all()         # at least one per shard
    np.testing.assert_array_equal(probes, np.round(probes))
  for name in ('STEP_WORK', 'STEP_WORK_COMPILED'):
    monkeypatch.setattr(mih, name, 512)
  _, _, gave_up = mih.search(q, parts, 1, bits, max_candidates=500)
  assert gave_up.all()                                  # one step is 512


def test_auto_sends_the_rest_to_mih_at_once_when_it_wins_clearly(
    monkeypatch):
  """search_auto doubles its MIH batches while the choice is close, and
  sends every remaining query in one call once MIH has cost less than
  1 / AUTO_ALL_IN of the flat scan over its first two batches, or its
  first where the tables exceed RESIDENT_BUDGET (each call reads them
  again); the answers are exact either way."""
  rng = np.random.default_rng(4)
  db = codes(3000, 64, 3, rng)
  q = queries(db, 64, rng, 20)[:40]
  parts = shards(db, 64, [1000])
  want_d, want_i = reference(q, db, 5)
  monkeypatch.setattr(mih, 'choose', lambda *a: 'mih')
  sizes = []
  search = mih.search

  def counted(qq, *a, **kw):
    sizes.append(len(qq))
    return search(qq, *a, **kw)
  monkeypatch.setattr(mih, 'search', counted)
  for all_in, memory, want in ((mih.AUTO_ALL_IN, 1 << 40, [4, 4, 32]),
                               (mih.AUTO_ALL_IN, 1, [4, 36]),
                               (np.inf, 1, [4, 4, 8, 16, 8])):
    monkeypatch.setattr(mih, 'AUTO_ALL_IN', all_in)
    monkeypatch.setattr(mih, 'RESIDENT_BUDGET', memory)
    sizes.clear()
    d, i = mih.search_auto(q, parts, 5, 64, cost_ratio=1e-3, batch=4,
                           first_batch=4, flat_seconds=1e9)  # no give-ups
    assert sizes == want
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)


def test_auto_times_the_flat_scan_on_give_ups_and_widens_the_budget(
    monkeypatch):
  """With estimate_flat, once AUTO_FLAT_PROBE queries have given up in
  MIH, search_auto scans them flat and times it; a flat scan far slower
  than MIH widens the budget (up to N / COST_RATIO_FLOOR_COMPILED), so
  later hard queries are answered by MIH. Without the probe every hard
  query (at least) goes to the flat scan. Exact either way."""
  if not mih.compiled():
    pytest.skip('numba is not installed (the `fast` extra)')
  monkeypatch.setattr(mih, 'PROBE_WORK_COMPILED', 1)
  monkeypatch.setattr(mih, 'COST_RATIO_FLOOR_COMPILED', 0.3)  # N / 0.3
  monkeypatch.setattr(mih, 'choose', lambda *a: 'mih')
  rng = np.random.default_rng(6)
  db = codes(3000, 64, 3, rng)
  some = queries(db, 64, rng, 20)      # 24 easy, then 20 random (hard)
  q = np.concatenate([some[:24]] * 3 + [some[24:]])
  q = q[rng.permutation(len(q))]
  parts = shards(db, 64, [1000])
  want_d, want_i = reference(q, db, 5)
  stats = {}
  mih.search(q, parts, 5, 64, stats=stats)
  hard = int((stats['candidates'] > 3000).sum())   # over N / 1.0
  assert hard >= 2 * mih.AUTO_FLAT_PROBE

  def slow_flat(qq):
    time.sleep(0.5)
    flat_rows.append(len(qq))
    return reference(qq, db, 5)
  for probe in (mih.AUTO_FLAT_PROBE, 10**9):
    monkeypatch.setattr(mih, 'AUTO_FLAT_PROBE', probe)
    flat_rows = []
    d, i = mih.search_auto(q, parts, 5, 64, cost_ratio=1.0, batch=4,
                           flat_fn=slow_flat, estimate_flat=True)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)
    if probe < 10**9:
      assert len(flat_rows) == 1 and probe <= flat_rows[0] < hard
    else:   # every hard query, and more once auto turns to the flat scan
      assert sum(flat_rows) >= hard


def _auto(q, parts, k, bits, ratio):
  choose = mih.choose
  mih.choose = lambda *a: 'mih'
  try:
    return mih.search_auto(q, parts, k, bits, cost_ratio=ratio, batch=4)
  finally:
    mih.choose = choose


@pytest.mark.parametrize('bits, clusters', [(64, 3), (40, 0), (128, 20)])
def test_radius_matches_flatnonzero(bits, clusters, kernel):
  del kernel
  rng = np.random.default_rng(bits)
  n = 2000
  db = codes(n, bits, clusters, rng)
  q = queries(db, bits, rng, 6)
  full = np.bitwise_count(q[:, None] ^ db[None]).sum(-1)
  parts = shards(db, bits, [700])
  for r in (0, 2, 5):
    got = mih.radius(q, parts, r, bits)
    flat = mih.radius_flat(q, db, r, bits, chunk=300)
    merged = mih.radius_parts_flat(q, parts, r, bits, chunk=300)
    for row, res in enumerate(zip(got, flat, merged)):
      want = np.flatnonzero(full[row] <= r)
      want = want[np.argsort(full[row, want], kind='stable')]
      for d, i in res:
        np.testing.assert_array_equal(i, want)
        np.testing.assert_array_equal(d, full[row, want])
        assert d.dtype == np.int32 and i.dtype == np.int64


def test_radius_budget_gives_up_and_keeps_the_rest_exact():
  """The compiled radius loop with a budget over two parts: a query whose
  work passes it (wide radius) is None; the others are exact."""
  if not mih.compiled():
    pytest.skip('numba is not installed (the `fast` extra)')
  rng = np.random.default_rng(5)
  db = codes(3000, 64, 3, rng)
  q = queries(db, 64, rng, 6)
  full = np.bitwise_count(q[:, None] ^ db[None]).sum(-1)
  parts = shards(db, 64, [1400], m=4)
  for r, budget in ((2, None), (5, 1e9), (5, 5000.0), (5, 1.0)):
    got = mih.radius(q, parts, r, 64, max_candidates=budget)
    if budget is None or budget > 1e6:
      assert all(g is not None for g in got)
    if budget == 1.0:
      assert all(g is None for g in got)
    if budget == 5000.0:
      assert 0 < sum(g is None for g in got) < len(q)
    for row, g in enumerate(got):
      if g is not None:
        want = np.flatnonzero(full[row] <= r)
        want = want[np.argsort(full[row, want], kind='stable')]
        np.testing.assert_array_equal(g[1], want)
        np.testing.assert_array_equal(g[0], full[row, want])


def test_save_load_round_trip_and_errors(tmp_path):
  rng = np.random.default_rng(3)
  db = codes(1000, 64, 0, rng)
  tables = mih.build(db, 64)
  assert tables.bytes_per_code() > 3 * (4 + 8)  # rows, codes (+ offsets)
  for r, c in zip(tables.rows, tables.codes):     # codes in bucket order
    np.testing.assert_array_equal(c, db[r])
  path = str(tmp_path / 'db.mih')
  tables.save(path)
  loaded = mih.load(path, packed=db)
  assert isinstance(loaded.rows[0], np.memmap)
  assert isinstance(loaded.codes[0], np.memmap)
  for a, b in zip(tables.offsets + tables.rows + tables.codes,
                  loaded.offsets + loaded.rows + loaded.codes):
    np.testing.assert_array_equal(a, b)
  assert (loaded.m, loaded.lengths, loaded.n) == (tables.m, tables.lengths,
                                                  1000)
  q = queries(db, 64, rng, 3)
  d, i, _ = mih.search(q, [(db, loaded, 0)], 10, 64)
  np.testing.assert_array_equal(i, reference(q, db, 10)[1])
  # index.py's codes checksum is the same fingerprint.
  index.save(str(tmp_path / 'db.idx'), None, range(1000), packed=db, bits=64)
  idx = index.load(str(tmp_path / 'db.idx'))
  mih.load(path, fingerprint_=idx.header['codes_sha256'])

  other = db.copy()
  other[5, 0] ^= np.uint32(1)
  with pytest.raises(mih.BadTablesError, match='db.mih.*other codes'):
    mih.load(path, packed=other)
  with pytest.raises(mih.BadTablesError, match='db.mih.*shape'):
    mih.load(path, packed=db[:10])
  raw = bytearray(open(path, 'rb').read())
  bad = str(tmp_path / 'bad.mih')
  raw[-3] ^= 1                                     # a code flipped
  open(bad, 'wb').write(bytes(raw))
  with pytest.raises(mih.BadTablesError, match='bad.mih.*corrupt'):
    mih.load(bad)
  mih.load(bad, verify=False)                      # size and header fine
  open(bad, 'wb').write(bytes(raw[:-8]))
  with pytest.raises(mih.BadTablesError, match='bad.mih.*truncated'):
    mih.load(bad)
  open(bad, 'wb').write(b'not tables')
  with pytest.raises(mih.BadTablesError, match='bad.mih'):
    mih.load(bad)


def test_format_1_tables_still_load_and_search(kernel):
  """tests/data/mih_format1.mih was written by the format-1 writer (before
  the bucket-ordered codes) for these 60 codes: it loads, its codes are
  put in bucket order in memory, and the search is exact."""
  del kernel
  rng = np.random.default_rng(2026)
  db = index.pack(rng.integers(0, 2, (60, 16)) * 2 - 1)
  db[::7] = db[3]
  path = os.path.join(os.path.dirname(__file__), 'data', 'mih_format1.mih')
  tables = mih.load(path, packed=db)
  assert tables.codes is None and tables.m == 2
  q = np.concatenate([db[:5], index.pack(rng.integers(0, 2, (5, 16)) * 2 - 1)])
  d, i, gave_up = mih.search(q, [(db, tables, 0)], 7, 16)
  want_d, want_i = reference(q, db, 7)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)
  assert not gave_up.any()
  with pytest.raises(ValueError, match='bucket_codes'):
    mih.Tables(1, 16, [0, 8], [8, 8], tables.offsets, tables.rows, 'x').save(
        os.devnull)
