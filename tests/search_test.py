"""The exact Hamming top-k kernels against a stable sort: random codes,
heavy ties and duplicates, ragged sizes; fanout 2 makes both selection
levels of the XLA kernel prune. Each test runs the XLA kernel
(topk.py) and the compiled CPU scan (flat_numba.py)."""
import numpy as np
import pytest

from hashjax.archive import flat_numba
from hashjax.archive import index
from hashjax.archive import topk

KERNELS = pytest.mark.parametrize('kernel', ['xla', 'compiled'])


def reference(q, db, k):
  d = np.bitwise_count(q[:, None, :] ^ db[None]).sum(-1)
  order = np.argsort(d, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(d, order, 1), order


def clustered(n, bits, clusters, flip, rng):
  """Packed codes: uniform (clusters = 0), or `clusters` centres with a
  fraction `flip` of the bits flipped."""
  if clusters:
    centres = rng.integers(0, 2, (clusters, bits))
    codes = centres[rng.integers(0, clusters, n)]
    codes = np.where(rng.random((n, bits)) < flip, 1 - codes, codes)
  else:
    codes = rng.integers(0, 2, (n, bits))
  return index.pack(codes * 2 - 1)


@pytest.mark.parametrize('n, bits, k, clusters', [
    (5000, 64, 100, 0),        # random codes
    (4999, 32, 37, 0),         # ragged N, short codes
    (3000, 64, 100, 3),        # 3 exact-duplicate clusters: ties everywhere
    (2000, 128, 50, 20),       # near-duplicates, 4 words
    (70, 16, 100, 0),          # k > N: clipped
    (257, 64, 5, 1),           # every code identical
])
@pytest.mark.parametrize('fanout', [pytest.param(2, marks=pytest.mark.slow),
                                    32])
@KERNELS
def test_matches_stable_sort(n, bits, k, clusters, fanout, kernel):
  rng = np.random.default_rng(n + bits)
  packed = clustered(n, bits, clusters, 0.0 if clusters < 10 else 0.05, rng)
  q = packed[rng.integers(0, n, 70)] ^ np.uint32(rng.integers(0, 4))
  d, i = topk.search(q, packed, k, bits, query_block=32, group=4,
                     fanout=fanout, max_groups=16, kernel=kernel)
  want_d, want_i = reference(q, packed, min(k, n))
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


@pytest.mark.slow
@pytest.mark.parametrize('db_chunk', [64, 1000])
@KERNELS
def test_database_in_chunks(db_chunk, kernel):
  """The database in chunks (a memory-mapped index, one chunk at a time)
  merges to the same exact top k, duplicates across chunks included."""
  rng = np.random.default_rng(db_chunk)
  db = rng.integers(0, 2**32, (3000, 2), dtype=np.uint32)
  db[::5] = db[1]
  q = np.concatenate([db[1:4], rng.integers(0, 2**32, (20, 2),
                                            dtype=np.uint32)])
  d, i = topk.search(q, db, 100, 64, group=4, fanout=2,
                     max_groups=16, db_chunk=db_chunk, kernel=kernel)
  want_d, want_i = reference(q, db, 100)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


@pytest.mark.parametrize('k, clusters', [(300, 0), (1000, 3), (700, 40)])
def test_large_k_narrows_groups_to_sub_groups(k, clusters):
  """k > 256 re-scores sub-groups of 8 (topk.sub_for) with the default
  group of 32: the same exact top k, ties and duplicates included."""
  assert topk.sub_for(k, 32) == 8 and topk.sub_for(100, 32) == 0
  rng = np.random.default_rng(k)
  n, bits = 20_000, 64
  packed = clustered(n, bits, clusters, 0.05, rng)
  q = packed[rng.integers(0, n, 20)] ^ np.uint32(rng.integers(0, 4))
  d, i = topk.search(q, packed, k, bits, kernel='xla')
  want_d, want_i = reference(q, packed, k)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


@pytest.mark.parametrize('db_chunk', [1000, 1 << 22])
@KERNELS
def test_a_database_held_on_the_device(db_chunk, kernel):
  """topk.OnDevice (copied once, searched many times by a service): the
  same exact top k as the numpy path, in chunks too, for any query count
  (blocks of 1, 2, ... as a service compiles them)."""
  rng = np.random.default_rng(7)
  db = rng.integers(0, 2**32, (3001, 2), dtype=np.uint32)
  db[::7] = db[2]
  held = topk.OnDevice(db, group=4, fanout=2, db_chunk=db_chunk,
                       kernel=kernel)
  assert held.shape == db.shape and held.kernel == kernel
  assert (held.chunks is None) == (kernel == 'compiled')   # nothing copied
  for nq in (1, 3, 32):
    q = np.concatenate([db[2:3], rng.integers(0, 2**32, (nq - 1, 2),
                                              dtype=np.uint32)])
    d, i = topk.search(q, held, 40, 64, query_block=topk.block_for(nq),
                       max_groups=16, db_chunk=db_chunk)
    want_d, want_i = reference(q, db, 40)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)
  assert [topk.block_for(n) for n in (1, 2, 3, 5, 33, 64, 100)] == \
      [1, 2, 4, 8, 64, 64, 64]


@pytest.mark.slow
@KERNELS
def test_defaults_on_a_larger_database(kernel):
  rng = np.random.default_rng(0)
  db = rng.integers(0, 2**32, (100_000, 2), dtype=np.uint32)
  q = rng.integers(0, 2**32, (10, 2), dtype=np.uint32)
  d, i = topk.search(q, db, 100, 64, kernel=kernel)
  want_d, want_i = reference(q, db, 100)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


SHARDED = '''
import numpy as np, jax
from hashjax.archive import topk as sk
assert jax.device_count() == 8
rng = np.random.default_rng(0)
for n, bits, k in [(5000, 64, 100), (3001, 32, 50), (70, 16, 100)]:
  db = rng.integers(0, 2**32, (n, bits // 32), dtype=np.uint32)
  db[::7] = db[0]                      # duplicates across every shard
  q = np.concatenate([db[:3], rng.integers(0, 2**32, (40, bits // 32),
                                           dtype=np.uint32)])
  d, i = sk.search(q, db, k, bits, group=4, fanout=2, max_groups=16,
                   kernel='xla')
  full = np.bitwise_count(q[:, None] ^ db[None]).sum(-1)
  o = np.argsort(full, 1, kind='stable')[:, :min(k, n)]
  assert (i == o).all(), (n, bits)
  assert (d == np.take_along_axis(full, o, 1)).all(), (n, bits)
print('ok')
'''


@pytest.mark.slow
def test_sharded_over_eight_devices():
  """The database split over 8 (fake) devices: the same exact ranking."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ,
             XLA_FLAGS='--xla_force_host_platform_device_count=8')
  out = subprocess.run([sys.executable, '-c', SHARDED], env=env,
                       capture_output=True, text=True, check=False,
                       cwd=os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__))))
  assert out.returncode == 0 and out.stdout.strip().endswith('ok'), (
      out.stdout[-2000:] + out.stderr[-2000:])


@KERNELS
def test_very_large_k_keeps_the_general_selection(kernel):
  """k x 8 candidates past 2^16 (k > 8192) leave the one-sort path of
  topk._first_k for the cumsum selection: the same exact top k (and the
  compiled scan's buffers of 2k entries are compacted many times)."""
  rng = np.random.default_rng(9)
  codes = rng.integers(0, 2, (30_000, 32))
  codes[::3] = codes[1]                       # ties across the boundary
  packed = index.pack(codes * 2 - 1)
  q = packed[[1, 7]]
  d, i = topk.search(q, packed, 9000, 32, kernel=kernel)
  want_d, want_i = reference(q, packed, 9000)
  np.testing.assert_array_equal(d, want_d)
  np.testing.assert_array_equal(i, want_i)


def test_auto_picks_the_compiled_scan_on_the_cpu():
  assert topk.kernel_for('auto') == 'compiled'      # numba: a test extra
  assert topk.kernel_for('auto', mesh=object()) == 'xla'
  with pytest.raises(ValueError, match='flat-scan kernel'):
    topk.kernel_for('numba')


@pytest.mark.parametrize('nq, bits, clusters', [
    (1, 64, 0),      # one query: ranges of rows on every thread, merged
    (3, 128, 5),     # fewer query blocks than threads, heavy ties
    (9, 48, 0),      # odd word count (uint32 words), a ragged block
    (40, 16, 1),     # every code identical: ties decided by row alone
])
@pytest.mark.parametrize('k', [1, 64, 2500])
def test_compiled_scan_parts_chunks_and_groups(nq, bits, clusters, k):
  """flat_numba.search across its splits: rows split over threads (few
  queries), the database in chunks (state carried across them), queries
  in groups (a small entry limit), buffers compacted (k near N)."""
  rng = np.random.default_rng(nq * bits + k)
  n = 3001
  packed = clustered(n, bits, clusters, 0.02, rng)
  q = packed[rng.integers(0, n, nq)] ^ np.uint32(rng.integers(0, 8))
  want_d, want_i = reference(q, packed, k)
  for chunk, entries in ((1 << 22, 1 << 25), (700, 1 << 25), (999, 1)):
    d, i = flat_numba.search(q, packed, k, bits, db_chunk=chunk,
                             max_entries=entries)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)
    assert d.dtype == np.int32 and i.dtype == np.int64


@pytest.mark.parametrize('nq, bits, clusters', [
    (1, 64, 0), (3, 128, 5), (9, 48, 0), (20, 16, 1)])
@pytest.mark.parametrize('r', [0, 2, 9, 64])
def test_compiled_radius_scan(nq, bits, clusters, r):
  """flat_numba.within against every distance <= r of a brute-force
  matrix, by (distance, row): one query (rows split over threads), blocks
  of queries, the database in chunks (a ragged last tile), matches past a
  buffer's first size, r beyond the bits (every code)."""
  rng = np.random.default_rng(nq * bits + r)
  n = 3001
  packed = clustered(n, bits, clusters, 0.02, rng)
  q = packed[rng.integers(0, n, nq)] ^ np.uint32(rng.integers(0, 8))
  dist = np.bitwise_count(q[:, None, :] ^ packed[None]).sum(-1)
  for chunk in (1 << 22, 700, 999):
    found = flat_numba.within(q, packed, r, bits, db_chunk=chunk)
    assert len(found) == nq
    for qi, (d, i) in enumerate(found):
      rows = np.flatnonzero(dist[qi] <= r)
      order = np.argsort(dist[qi, rows], kind='stable')
      np.testing.assert_array_equal(i, rows[order])
      np.testing.assert_array_equal(d, dist[qi, rows[order]])
      assert d.dtype == np.int32 and i.dtype == np.int64


def test_compiled_scan_from_several_threads_at_once():
  """A service calls the scan from several threads at once: each call
  gets its own exact answer (the kernels share one pool of threads)."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(11)
  db = rng.integers(0, 2**32, (20_000, 2), dtype=np.uint32)
  queries = [rng.integers(0, 2**32, (nq, 2), dtype=np.uint32)
             for nq in (1, 5, 17, 40, 1, 9)]
  with concurrent.futures.ThreadPoolExecutor(6) as ex:
    got = list(ex.map(lambda q: topk.search(q, db, 50, 64,
                                            kernel='compiled'), queries))
  for q, (d, i) in zip(queries, got):
    want_d, want_i = reference(q, db, 50)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(i, want_i)


def test_run_split_covers_every_item_once_and_raises():
  from hashjax.archive import workers  # pylint: disable=g-import-not-at-top
  seen = np.zeros(1001, np.int64)

  def mark(lo, hi):
    seen[lo:hi] += 1
  for pieces in (None, 1, 3, 5000):
    seen[:] = 0
    workers.run_split(mark, len(seen), pieces)
    assert (seen == 1).all()

  def fail(lo, hi):
    raise ValueError(f'range {lo}-{hi}')
  with pytest.raises(ValueError, match='range'):
    workers.run_split(fail, 10, 2)
