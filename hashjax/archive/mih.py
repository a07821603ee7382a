"""Exact Hamming search by multi-index hashing (MIH).

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing" (CVPR 2012; TPAMI 2014). Each b-bit code is cut into m disjoint
contiguous substrings (lengths differing by at most one); substring j of
every code is the key of a bucket table. Two codes at Hamming distance d
differ in some substring by at most floor(d / m) bits (pigeonhole), so
their neighbours are found by probing each table with the keys near the
query's substring and verifying the candidates with the full distance.

Tables: for each substring j a CSR bucket table, `offsets[j]` (2^L_j + 1)
and `rows[j]` (int32 [N], the rows sorted by their key, stably, so rows
ascend within a bucket): bucket `key` holds rows[j][offsets[j][key]:
offsets[j][key + 1]]. `codes[j]` holds the codes themselves in that
order (codes[j][i] = packed[rows[j][i]]), so that verifying a bucket reads
one contiguous run instead of one random row per candidate: the compiled
loop (mih_numba) reads a row only for a candidate that enters the top k.
It costs m copies of the codes (8 m bytes per 64-bit code).

k nearest (`search`): radius s = 0, 1, 2, ... and, at each, substring
j = 0..m-1: probe every key at exactly s bits from the query's substring
j (key = q_j ^ mask, masks of weight s cached per (L, s)), verify. An item
not yet found after substring j at radius s differs in substrings 0..j by
>= s + 1 bits and in the others by >= s, so its distance is >= m s + j + 1:
every item within m s + j has been found, and the search stops once the
k-th best distance is <= m s + j. Candidates are kept as one int64 key,
distance * N_total + global row, so the best k (the ranking rule of
topk.py: ascending distance, ties by index) are the k smallest unique keys
and an item found again in another substring is dropped by the union.

Radius r (`radius`): with r = m s0 + t, the same order up to substring t
at radius s0 finds every item within r.

Several shards (`parts`: packed codes, their Tables, the global row of
their first code) are searched jointly. A query whose candidates pass
`max_candidates` gives up (random codes at a long k-th distance, a huge
bucket of near-duplicates): `search_auto` scans those queries flat with
topk.search, with a budget of N / unit_cost() units of work, where a unit
is a row verified or a bucket probed (PROBE_WORK_COMPILED units in the
compiled loop) and unit_cost() what one costs against one code of the
flat scan.

Tables persist in one file (`save`, `load`; the layout of headed_file.py):
a JSON header (N, bits, layout, the SHA-256 of the codes indexed and of
each array) then the arrays, 64-byte aligned and memory-mapped on load.
Files of format 1 (without the bucket-ordered codes) still load: their
codes are put in bucket order in memory when first searched by the
compiled loop.
"""
import functools
import hashlib
import itertools
import math
import mmap
import os
import threading

import numpy as np

from hashjax.archive import headed_file
from hashjax.archive import index as index_lib
from hashjax.archive import mih_numba
from hashjax.archive import workers

MAGIC = b'HASHJAXM'
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
MAX_KEY_BITS = 24
MIN_KEY_BITS = 8

# Seconds per unit of MIH work (a bucket probed or a row verified: random
# gathers, popcount, merge) over seconds per code per query of
# topk.search's flat scan: bench/archive.py's "cost ratio" column measured
# 18-147 (most 40-100) at 10^6 codes, 64 and 128 bits, 2 CPU cores.
COST_RATIO = 60
# Work units charged per table probe step (a substring at a radius, in a
# part): the fixed cost of its ~20 numpy calls (~30 us) in the same units.
STEP_WORK = 512
# With numba (mih_numba, the `fast` extra) a whole query runs compiled: a
# probe step has no fixed cost beyond its probes; a probed bucket (two
# random reads: its bounds, the start of its codes) costs about
# PROBE_WORK_COMPILED verified codes (read in runs), and a unit of that
# work about COST_RATIO_COMPILED flat-scan code visits. bench/mih_cost.py
# at 10^7 x 64 random codes, m = 3 and 4 (buckets of ~2 and ~150 codes),
# fitted on relative errors against the XLA flat scan: a probe 167 flat
# visits, a verified code 4.1. The compiled flat scan (flat_numba, what a
# CPU with numba runs) visits a code about 4x faster, and the compiled
# MIH loop runs its queries on every CPU too: against it a unit costs 6.5-
# 11.7 visits on random codes at m = 3 and 4, median 9.1 and 8.2 in two
# runs (2.9-6.9 on clustered ones, read in long runs; bench/mih_cost.py,
# docs/benchmarks.md). The higher median: too low a ratio would let auto
# keep MIH where the flat scan is faster.
_COMPILED = True
STEP_WORK_COMPILED = 0
PROBE_WORK_COMPILED = 41
COST_RATIO_COMPILED = 9
# The same for the radius search: a unit of mih_numba.radius's work (its
# keys sorted and deduplicated too) in visits of the compiled flat radius
# scan (a count per tile, cheaper than the top k's scan): 22-43 on
# clustered codes at 10^6 and 10^7, r = 2, 4, 6 (bench/archive.py's radius
# "cost ratio" column, two runs in docs/benchmarks.md).
RADIUS_COST_RATIO_COMPILED = 30
# The least that ratio was measured: 8-15 on uniformly random codes at
# 10^7, r = 10, 12, 14 (three runs in docs/benchmarks.md). A query whose
# radius search needs more than N / this many units cannot beat the flat
# scan.
RADIUS_COST_RATIO_FLOOR = 8


# Resident memory above which the compiled search drops the pages of
# memory-mapped tables between shards (bench/archive_disk.py: 10^8 codes,
# 4.2 GiB of tables; dropping them after every shard cost 5-10x in speed).
RESIDENT_BUDGET = 5 << 29   # 2.5 GiB
# When a release leaves the process above the budget (memory that is not
# the tables: a large query batch, caches), the next release waits until
# resident memory has grown RELEASE_STEP more, instead of dropping the
# tables after every shard (which cost 5-10x in speed).
RELEASE_STEP = 1 << 28      # 256 MiB
# The compiled search splits a call's queries over threads only from this
# many queries per thread: waking them costs about a query's time on
# clustered codes (a call of 16 queries ran at 0.8x on two threads).
MIN_QUERIES_PER_THREAD = 16
# ... but a k-NN query over resident tables of SPLIT_CODES codes or more
# costs 0.1-3 ms, so there from MIN_QUERIES_PER_THREAD_LARGE: at 10^7
# codes auto (its second call is 16 queries) then ran at 0.84-0.98x of
# MIH, against 0.75-0.96x (bench/archive_auto.py, docs/benchmarks.md).
SPLIT_CODES = 1 << 22
MIN_QUERIES_PER_THREAD_LARGE = 4
# A thread given at least this many queries runs them in step
# (mih_numba.knn_shared: each step's buckets verified in bucket order for
# every query that probes them), fewer one query after another
# (mih_numba.knn), and so do tables past RESIDENT_BUDGET, read from disk
# (at 10^8 codes the shared loop was no faster). bench/mih_shared.py, one
# core, 10^7 codes, twice: calls of 64 queries ran 1.04-1.30x faster in
# step on random codes and 0.91-1.03x on clustered ones; 96-100 queries
# 1.10-1.52x and 1.00-1.11x. From 64, auto's last batch of a 200-query
# call (90 a thread) runs in step too (docs/benchmarks.md).
SHARED_QUERIES = 64
# search_auto sends all its remaining queries to MIH at once when MIH has
# cost less than 1 / AUTO_ALL_IN of the flat scan per query so far (after
# its first two batches; after the first where the tables exceed
# RESIDENT_BUDGET, as each call then reads their pages again).
AUTO_ALL_IN = 2
# With estimate_flat, search_auto times the flat scan itself once this many
# queries have given up in MIH (they need the flat scan anyway), and widens
# the MIH budget to the work that costs one flat scan at the measured
# speeds, up to N / COST_RATIO_FLOOR_COMPILED: the least cost ratio
# measured (2.9, clustered codes, bench/mih_cost.py). Two: waiting for 8
# left auto at k = 10 on clustered 128-bit codes paying budget and flat
# scan for all 15 give-ups of 200 queries. A flat call of 2 queries costs
# 1.2-2.4x per query what a call of 64 does (bench/archive_auto.py
# --flat_batches), so the budget and the choice err towards MIH by up to
# that much until more flat calls are timed (docs/benchmarks.md).
AUTO_FLAT_PROBE = 2
COST_RATIO_FLOOR_COMPILED = 3
_after_release = None       # resident bytes right after the last release


def compiled():
  """Whether `search` runs the compiled loop (numba is installed)."""
  return mih_numba.AVAILABLE and _COMPILED


def unit_cost():
  """The cost ratio of the loop `search` runs (COST_RATIO or
  COST_RATIO_COMPILED)."""
  return COST_RATIO_COMPILED if compiled() else COST_RATIO


class BadTablesError(ValueError):
  """A problem with a tables file (the message names the file and the fix)."""


def _within(length, s):
  """P(a uniformly random length-bit key is within s bits of a given one)."""
  return sum(math.comb(length, i) for i in range(s + 1)) / 2.0 ** length


def predicted_work(n, bits, m, k):
  """(buckets probed, codes verified) per query that `search` needs on n
  uniformly random codes: the k-th neighbour's expected distance d (the
  smallest d with n P(distance <= d) >= k), then the probes and the
  candidates of the step (s, j) = divmod(d, m) that certifies it (tables
  0..j at radius s, the others at s - 1)."""
  k = max(1, min(k, n))
  d = next(d for d in range(bits + 1) if n * _within(bits, d) >= k)
  s, j = divmod(d, m)
  probes = candidates = 0.0
  for t, length in enumerate(layout(bits, m)[1]):
    r = min(s if t <= j else s - 1, length)
    if r >= 0:
      probes += sum(math.comb(length, i) for i in range(r + 1))
      candidates += n * _within(length, r)
  return probes, candidates


def predicted_cost(n, bits, m, k):
  """The compiled search's predicted time per query on n uniformly random
  codes, in flat-scan code visits (a flat scan costs n): predicted_work
  with a probe costed PROBE_WORK_COMPILED units and a unit
  COST_RATIO_COMPILED visits. bench/mih_m.py prints it beside
  measurements (within 25 % at 10^7)."""
  probes, candidates = predicted_work(n, bits, m, k)
  return COST_RATIO_COMPILED * (PROBE_WORK_COMPILED * probes + candidates)


def paper_m(n, bits):
  """The paper's m ~ bits / log2(n), clipped so each substring has
  MIN_KEY_BITS..MAX_KEY_BITS bits (and m >= 1)."""
  m = round(bits / math.log2(max(n, 2)))
  m = max(m, -(-bits // MAX_KEY_BITS))
  m = min(m, max(1, bits // MIN_KEY_BITS))
  return max(1, min(m, bits))


def choose_m(n, bits, k=10):
  """Substrings per code for n codes, without looking at them: of the m
  from paper_m(n, bits) to two more (each substring MIN_KEY_BITS..
  MAX_KEY_BITS bits; each m costs a copy of the codes and a row table),
  the one `predicted_cost` rates fastest at k on uniformly random codes;
  the smaller on a tie. `choose_m_for` decides from the codes themselves
  and falls back to this.

  The paper's rule counts every probe and candidate alike; here a probe
  costs ~40 verified codes, so buckets are worth making larger on random
  codes: 4 substrings at 10^7 x 64 bits (paper: 3), 3 at 10^8.
  bench/mih_m.py at 10^7 x 64: m = 4 over m = 3 was 2-4x on random codes
  but 0.5-0.7x on clustered ones (docs/benchmarks.md)."""
  n = max(int(n), 1)
  return min(_candidate_ms(n, bits),
             key=lambda m: (predicted_cost(n, bits, m, k), m))


def _candidate_ms(n, bits):
  """The m that choose_m and choose_m_for weigh: paper_m(n, bits) to two
  more, while each substring keeps MIN_KEY_BITS bits."""
  lo = paper_m(n, bits)
  return range(lo, max(lo, min(lo + 2, bits // MIN_KEY_BITS)) + 1)


def choose_m_for(packed, bits, n=None, k=10, sample=1 << 20, queries=64):
  """Substrings per code chosen from the codes themselves: of the m that
  `choose_m` considers, the one that needs the least work on these codes.

  Codes as a trained model makes them (clusters) have near neighbours in
  buckets that longer substrings keep small; uniformly random ones need
  shorter substrings. Up to `sample` codes (a random subset of `packed`)
  get tables for each m, and `queries` other codes of `packed` are
  searched in them for their k' = k * sample / n nearest (so that the
  k'-th neighbour in the sample lies about where the k-th lies in n
  codes): the buckets probed and the codes verified, the latter scaled by
  n / sample, costed as `predicted_cost` costs them. Deterministic (a
  fixed seed, work counts, no timing). Falls back to `choose_m(n, bits,
  k)` without numba or with fewer than 4,096 codes.

  Args:
    packed: uint32 [N', W] codes of the index (all or a first part).
    bits: code length.
    n: the index's size (default N').
  """
  have = packed.shape[0]
  n = have if n is None else max(int(n), have)
  candidates = _candidate_ms(n, bits)
  if len(candidates) == 1 or have < 4096 or not compiled():
    return choose_m(n, bits, k)
  size = min(sample, have - queries)
  picks = np.random.default_rng(0).choice(have, size + queries,
                                          replace=False)   # not all N rows
  s = np.ascontiguousarray(packed[np.sort(picks[:size])], np.uint32)
  q = np.ascontiguousarray(packed[np.sort(picks[size:])], np.uint32)
  k_s = max(1, round(k * size / n))
  costs = {}
  for m in candidates:
    parts = [(s, build(s, bits, m=m, fingerprint_='sample'), 0)]
    probes, codes = _work(q, parts, k_s, bits)
    costs[m] = PROBE_WORK_COMPILED * probes + codes * (n / size)
  return min(costs, key=lambda m: (costs[m], m))


def _work(q, parts, k, bits):
  """(buckets probed, codes verified) per query of the compiled search."""
  parts = _parts(parts, bits)
  total = sum(p.n for p in parts)
  k = int(min(k, total))
  keys = _query_keys(q, parts[0].tables)
  qw = _word_layout(q, parts[0].words.dtype)
  lengths = np.asarray(parts[0].tables.lengths, np.int64)
  out = []
  for probe_work in (0, 1):
    seen = np.zeros(len(q), np.int64)
    mih_numba.knn(qw, keys, lengths, *_compiled_parts(parts), total, k,
                  np.inf, 0, probe_work, np.full((len(q), k), -1, np.int64),
                  np.zeros(len(q), np.int64), seen, np.zeros(len(q), bool))
    out.append(seen.mean())
  return out[1] - out[0], out[0]


def layout(bits, m):
  """(starts, lengths) of m contiguous substrings of a `bits`-bit code,
  the longer ones first, lengths differing by at most one."""
  base, extra = divmod(bits, m)
  lengths = [base + 1] * extra + [base] * (m - extra)
  starts = [int(s) for s in np.cumsum([0] + lengths[:-1])]
  return starts, lengths


def substring(packed, start, length):
  """uint32 [N, W] packed codes -> uint32 [N], bits start..start+length-1
  (bit j of a code is bit j % 32 of word j // 32)."""
  w, shift = divmod(start, 32)
  v = np.asarray(packed[:, w], np.uint64)
  if shift + length > 32:
    v = v | (np.asarray(packed[:, w + 1], np.uint64) << np.uint64(32))
  mask = np.uint64((1 << length) - 1)
  return ((v >> np.uint64(shift)) & mask).astype(np.uint32)


def fingerprint(packed):
  """SHA-256 of packed codes (the same digest as index.py's codes_sha256,
  so an index header's checksum can be passed instead of rehashing)."""
  h = hashlib.sha256()
  flat = np.ascontiguousarray(packed, dtype='<u4').reshape(-1).view(np.uint8)
  for start in range(0, flat.size, 1 << 26):
    h.update(flat[start:start + (1 << 26)])
  return h.hexdigest()


class Tables:
  """The m bucket tables of N codes: `offsets[j]`, `rows[j]`, `codes[j]`
  (see the module docstring; `codes` is None for tables read from a
  format-1 file until `bucket_codes` fills it), `n`, `bits`, `m`,
  `starts`, `lengths`, `codes_sha256` (the fingerprint of the codes
  indexed)."""

  def __init__(self, n, bits, starts, lengths, offsets, rows, codes_sha256,
               codes=None):
    self.n, self.bits = int(n), int(bits)
    self.starts, self.lengths = list(starts), list(lengths)
    self.m = len(lengths)
    self.offsets, self.rows = list(offsets), list(rows)
    self.codes = None if codes is None else list(codes)
    self.codes_sha256 = codes_sha256

  @property
  def nbytes(self):
    return sum(a.nbytes for a in self.offsets + self.rows +
               (self.codes or []))

  def bytes_per_code(self):
    """Table bytes per code indexed (the bucket-ordered copies counted,
    the codes themselves not)."""
    return self.nbytes / max(self.n, 1)

  def bucket_codes(self, packed):
    """`codes`, made from `packed` (the codes indexed) in memory where
    they are missing: by `build`, or for tables from a format-1 file."""
    if self.codes is None:
      packed = np.asarray(packed)
      self.codes = [np.take(packed, r, axis=0) for r in self.rows]
    return self.codes

  def save(self, path):
    """Writes the tables to `path` (one file, replaced atomically)."""
    save(path, self)


def _table(keys, length, n):
  """CSR bucket table of one substring: (offsets, rows), rows stable."""
  counts = np.bincount(keys, minlength=1 << length)
  dtype = np.int32 if n < 2**31 else np.int64
  offsets = np.zeros((1 << length) + 1, dtype)
  np.cumsum(counts, out=offsets[1:])
  rows = np.argsort(keys, kind='stable').astype(np.int32)
  return offsets, rows


def build(packed, bits, m=None, fingerprint_=None):
  """Tables of packed codes uint32 [N, W] (numpy or memory-mapped).

  Args:
    packed: the codes, index.pack layout.
    bits: code length.
    m: substrings per code (default choose_m(N, bits)).
    fingerprint_: the codes' fingerprint if already known (an index
      header's codes_sha256), else computed here.
  Returns:
    Tables.
  """
  n = packed.shape[0]
  if n >= 2**31:
    raise ValueError(f'{n} codes in one part; split them into parts of '
                     'fewer than 2^31.')
  m = choose_m(n, bits) if m is None else int(m)
  starts, lengths = layout(bits, m)
  if max(lengths) > MAX_KEY_BITS:
    raise ValueError(f'{bits}-bit codes in {m} substrings: a substring of '
                     f'{max(lengths)} bits (a table of 2^{max(lengths)} '
                     f'buckets); use m >= {-(-bits // MAX_KEY_BITS)}.')
  offsets, rows = [], []
  for start, length in zip(starts, lengths):
    o, r = _table(substring(packed, start, length), length, n)
    offsets.append(o)
    rows.append(r)
  tables = Tables(n, bits, starts, lengths, offsets, rows,
                  fingerprint_ or fingerprint(packed))
  tables.bucket_codes(packed)
  return tables


# ---------------------------------------------------------------- the file


def _array_sha256(a):
  return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def save(path, tables):
  """Writes `tables` to `path`: prefix (magic, version, header length),
  JSON header, then offsets[0], rows[0], codes[0], offsets[1], ... each
  64-byte aligned (relative to the end of the header)."""
  if tables.codes is None:
    raise ValueError('These tables have no bucket-ordered codes: call '
                     'tables.bucket_codes(packed) before saving them.')
  arrays = []
  for j in range(tables.m):
    arrays += [(f'offsets{j}', tables.offsets[j]),
               (f'rows{j}', tables.rows[j]), (f'codes{j}', tables.codes[j])]
  entries, pos = [], 0
  for name, a in arrays:
    pos += (-pos) % headed_file.ALIGN
    entries.append(dict(name=name, offset=pos, dtype=a.dtype.str,
                        shape=list(a.shape), sha256=_array_sha256(a)))
    pos += a.nbytes
  header = dict(n=tables.n, bits=tables.bits, m=tables.m,
                starts=tables.starts, lengths=tables.lengths,
                codes_sha256=tables.codes_sha256, arrays=entries,
                data_bytes=pos)
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'wb') as f:
    headed_file.write_header(f, MAGIC, FORMAT_VERSION, header)
    at = 0
    for (_, a), e in zip(arrays, entries):
      f.write(b'\0' * (e['offset'] - at))
      f.write(np.ascontiguousarray(a).tobytes())
      at = e['offset'] + a.nbytes
  os.replace(tmp, path)


def load(path, packed=None, fingerprint_=None, verify=True):
  """Opens tables written by `save`, memory-mapping the arrays.

  Args:
    path: the file.
    packed: optional codes the tables must index: their count, width and
      (unless fingerprint_ is given) SHA-256 are checked.
    fingerprint_: optional codes fingerprint to check (e.g. an index
      header's codes_sha256).
    verify: check every array's SHA-256 (reads the whole file).
  Raises:
    BadTablesError naming the file: missing, foreign, truncated, corrupt,
    or built from other codes.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'No MIH tables at {path!r}. Build them with '
                            'mih.build(packed, bits).save(path).')
  version, header, base, size = headed_file.read_header(
      path, MAGIC, _READABLE_VERSIONS, 'MIH tables', BadTablesError)
  if size != base + header['data_bytes']:
    raise BadTablesError(
        f'{path!r} is {size} bytes; its header describes '
        f'{base + header["data_bytes"]}: the file is truncated or padded. '
        'Rebuild the tables.')
  arrays = {}
  for e in header['arrays']:
    a = np.memmap(path, dtype=e['dtype'], mode='r', offset=base + e['offset'],
                  shape=tuple(e['shape']))
    if verify and _array_sha256(a) != e['sha256']:
      raise BadTablesError(f'{path!r}: array {e["name"]} does not match its '
                           'checksum (the file is corrupt). Rebuild the '
                           'tables.')
    arrays[e['name']] = a
  m = header['m']
  tables = Tables(header['n'], header['bits'], header['starts'],
                  header['lengths'], [arrays[f'offsets{j}'] for j in range(m)],
                  [arrays[f'rows{j}'] for j in range(m)],
                  header['codes_sha256'],
                  [arrays[f'codes{j}'] for j in range(m)] if version >= 2
                  else None)
  if packed is not None:
    words = -(-tables.bits // 32)
    if tuple(packed.shape) != (tables.n, words):
      raise BadTablesError(
          f'{path!r} indexes {tables.n} codes of {tables.bits} bits; the '
          f'codes given have shape {tuple(packed.shape)}. Rebuild the tables '
          'for these codes.')
    if fingerprint_ is None:
      fingerprint_ = fingerprint(packed)
  if fingerprint_ is not None and fingerprint_ != tables.codes_sha256:
    raise BadTablesError(f'{path!r} was built from other codes (their '
                         'SHA-256 differs). Rebuild the tables for these '
                         'codes.')
  return tables


# ---------------------------------------------------------------- search


@functools.lru_cache(maxsize=8)
def _by_weight(length):
  """Every length-bit value, grouped by popcount: (values int64, start of
  each weight's group)."""
  values = np.arange(1 << length, dtype=np.int64)
  weight = np.bitwise_count(values)
  order = np.argsort(weight, kind='stable')
  starts = np.zeros(length + 2, np.int64)
  np.cumsum(np.bincount(weight, minlength=length + 1), out=starts[1:])
  return values[order], starts


@functools.lru_cache(maxsize=256)
def masks(length, s):
  """int64 XOR masks of exactly s bits among `length` (empty if s >
  length), cached: itertools.combinations while there are few, else a
  slice of all 2^length values sorted by weight."""
  if s > length:
    return np.zeros(0, np.int64)
  if s == 0:
    return np.zeros(1, np.int64)
  if math.comb(length, s) <= 1 << 15:
    bit = 1 << np.arange(length, dtype=np.int64)
    combos = np.array(list(itertools.combinations(range(length), s)),
                      np.int64).reshape(-1, s)
    return bit[combos].sum(1)
  values, starts = _by_weight(length)
  return values[starts[s]:starts[s + 1]]


class _Part:
  """One shard: codes as uint64 words (uint32 for an odd word count; 1-D
  for a single word), its tables, the global row of its first code."""

  def __init__(self, packed, tables, offset):
    packed = np.asarray(packed)
    if packed.shape[0] != tables.n:
      raise ValueError(f'A part of {packed.shape[0]} codes with tables of '
                       f'{tables.n}.')
    w = packed.shape[1]
    words = (packed.view(np.uint64) if w % 2 == 0 and
             packed.flags.c_contiguous else packed)
    self.words = words[:, 0] if words.shape[1] == 1 else words
    self.packed, self.tables, self.offset = packed, tables, int(offset)
    self.n = tables.n

  def query(self, q):
    """q uint32 [W] -> the query in this part's word layout."""
    if self.words.dtype == np.uint64:
      q = np.ascontiguousarray(q).view(np.uint64)
    return q[0] if self.words.ndim == 1 else q

  def candidates(self, j, keys):
    """Rows of the buckets `keys` (int64) of table j, concatenated."""
    offsets = self.tables.offsets[j]
    first = np.take(offsets, keys)
    size = np.take(offsets[1:], keys) - first
    keep = np.flatnonzero(size)
    if not keep.size:
      return np.zeros(0, np.int32)
    first, size = first[keep], size[keep]
    ends = np.cumsum(size, dtype=np.int64)
    pos = np.repeat(first - (ends - size), size)
    pos += np.arange(ends[-1])
    return np.take(self.tables.rows[j], pos)

  def distances(self, qw, rows):
    x = np.bitwise_count(self.words[rows] ^ qw)
    return x.astype(np.int64) if x.ndim == 1 else x.sum(1, dtype=np.int64)


def _parts(parts, bits):
  """[(packed, tables, row_offset)] -> [_Part], checking one layout."""
  out = [_Part(*p) for p in parts]
  if not out:
    raise ValueError('No parts to search.')
  first = out[0].tables
  for p in out:
    t = p.tables
    if t.bits != bits or t.starts != first.starts or \
        t.lengths != first.lengths:
      raise ValueError(
          'All parts must share one substring layout: got bits/starts/'
          f'lengths {t.bits}/{t.starts}/{t.lengths} and {first.bits}/'
          f'{first.starts}/{first.lengths} (searched with bits={bits}); '
          'build their tables with the same m.')
  return out


def _query_keys(q, tables):
  """uint32 [Q, W] -> int64 [Q, m] substrings."""
  return np.stack([substring(q, s, l) for s, l in zip(tables.starts,
                                                      tables.lengths)],
                  1).astype(np.int64)


def _compiled_parts(parts):
  """The arrays of `parts` as mih_numba.knn takes them: typed lists of the
  tables and of their bucket-ordered codes [N_p, W'] in the parts' word
  layout (part-major), and the row offsets."""
  from numba import typed  # pylint: disable=g-import-not-at-top
  m = parts[0].tables.m
  offsets = typed.List([np.asarray(p.tables.offsets[j]) for p in parts
                        for j in range(m)])
  rows = typed.List([np.asarray(p.tables.rows[j]) for p in parts
                     for j in range(m)])
  codes = typed.List([_word_layout(c, p.words.dtype) for p in parts
                      for c in p.tables.bucket_codes(p.packed)])
  return offsets, rows, codes, np.array([p.offset for p in parts], np.int64)


def _compiled_part(part):
  """_compiled_parts([part]), kept on the part's Tables for the calling
  thread: making numba's typed lists costs ~0.1 ms a call, and each
  thread keeps its own (they are not shared between threads)."""
  cache = part.tables.__dict__.setdefault('_compiled_lists', {})
  key = (threading.get_ident(), part.words.dtype.str, part.offset)
  if key not in cache:
    cache[key] = _compiled_parts([part])
  return cache[key]


def resident_bytes():
  """This process's resident memory (Linux /proc/self/statm; 0 where it
  cannot be read, so nothing is released there)."""
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * mmap.PAGESIZE
  except (OSError, ValueError, IndexError):
    return 0


def release(tables):
  """Drops the resident pages of memory-mapped tables (np.memmap from
  `load`; in-memory tables are left alone). They stay in the page cache and
  are read back on the next touch; resident memory no longer counts them."""
  for a in tables.offsets + tables.rows + (tables.codes or []):
    mapping = getattr(a, '_mmap', None)   # np.memmap's mmap.mmap
    if mapping is not None and hasattr(mapping, 'madvise'):
      mapping.madvise(mmap.MADV_DONTNEED)


def _release_level():
  """Resident bytes at which the compiled search drops the tables' pages:
  RESIDENT_BUDGET, or RELEASE_STEP above what the last release left."""
  if _after_release is None:
    return RESIDENT_BUDGET
  return max(RESIDENT_BUDGET, _after_release + RELEASE_STEP)


def _past_budget(tables):
  """Whether these tables together pass RESIDENT_BUDGET: searched as
  parts, their pages are then dropped between calls and read again."""
  return sum(t.nbytes for t in tables) >= RESIDENT_BUDGET


def _release_all(parts):
  global _after_release
  for p in parts:
    release(p.tables)
  _after_release = resident_bytes()


def _threads_for(num_queries, threads=None,
                 per_thread=MIN_QUERIES_PER_THREAD):
  """Threads a compiled call splits its queries over: `threads` if given
  (at most one a query, at most every thread), else every thread once
  each gets `per_thread` queries, else one."""
  if threads:
    return max(1, min(int(threads), num_queries, workers.threads()))
  if num_queries >= per_thread * workers.threads():
    return workers.threads()
  return 1


def _word_layout(packed, dtype):
  """uint32 [N, W] codes or queries -> [N, W'] as `dtype` words (uint64
  pairs or uint32), the layout of a _Part's words."""
  if dtype == np.uint64:
    return index_lib.words(packed)
  return np.ascontiguousarray(packed, np.uint32)


def _knn_one(q, keys, parts, k, total, budget):
  """(best k keys (distance * total + global row) ascending, or None when
  the work passed `budget`; the work: buckets probed + rows verified +
  STEP_WORK per probe step)."""
  t = parts[0].tables
  m, lengths = t.m, t.lengths
  qws = [p.query(q) for p in parts]
  best = np.zeros(0, np.int64)
  seen = 0
  for s in range(max(lengths) + 1):
    for j in range(m):
      probe = keys[j] ^ masks(lengths[j], s)
      if probe.size:
        for p, qw in zip(parts, qws):
          seen += probe.size + STEP_WORK
          if seen > budget:
            return None, seen
          rows = p.candidates(j, probe)
          if not rows.size:
            continue
          seen += rows.size
          if seen > budget:
            return None, seen
          cand = p.distances(qw, rows) * total + (rows + p.offset)
          if best.size == k:
            cand = cand[cand < best[-1]]
          elif cand.size > 2 * k:
            cand = np.partition(cand, k - 1)[:k]
          if cand.size:
            best = np.union1d(best, cand)[:k]
      if best.size == k and best[-1] // total <= m * s + j:
        return best, seen
  return best, seen


def search(q_packed, parts, k, bits, *, max_candidates=None, stats=None):
  """Exact k nearest neighbours of each query over all parts.

  Args:
    q_packed: uint32 [Q, W] packed queries.
    parts: [(packed codes [N_i, W], Tables, row offset)], one layout.
    k: results per query, clipped to the total number of codes.
    bits: code length.
    max_candidates: per query; a query whose work (buckets probed + rows
      verified, + STEP_WORK per table probed; in the compiled loop each
      bucket probed counts PROBE_WORK_COMPILED) passes
      it gives up (its row of the result is dist bits + 1, index
      -1) and is flagged in `gave_up`.
    stats: optional dict, given 'candidates' (int64 [Q], the work per
      query as counted for max_candidates) and 'threads' (how many threads
      the queries were split over).
  Returns:
    (dist [Q, k] int32, idx [Q, k] int64, gave_up [Q] bool): ascending
    distance, ties by global index (row offset + row).
  """
  parts = _parts(parts, bits)
  total = sum(p.n for p in parts)
  k = int(min(k, total))
  if k < 1:
    raise ValueError('search needs a non-empty database and k >= 1.')
  budget = np.inf if max_candidates is None else max_candidates
  q = np.ascontiguousarray(q_packed, np.uint32)
  keys = _query_keys(q, parts[0].tables)
  dist = np.full((len(q), k), bits + 1, np.int32)
  idx = np.full((len(q), k), -1, np.int64)
  gave_up = np.zeros(len(q), bool)
  seen = np.zeros(len(q), np.int64)
  pieces = 1
  if compiled():
    # A part at a time, every query carrying its k best so far (a bound
    # for the next part). Memory-mapped tables' pages stay resident until
    # the process reaches _release_level() (RESIDENT_BUDGET); then every
    # part's are dropped (`release`), so a search over an index bigger than
    # memory holds at most about the budget plus one shard's tables.
    # Queries in ranges on every CPU (workers; knn releases the GIL), if
    # there are enough of them to pay for waking the threads.
    best = np.full((len(q), k), -1, np.int64)
    count = np.zeros(len(q), np.int64)
    qw = _word_layout(q, parts[0].words.dtype)
    lengths = np.asarray(parts[0].tables.lengths, np.int64)
    resident = not _past_budget(p.tables for p in parts)
    pieces = _threads_for(len(q), per_thread=(
        MIN_QUERIES_PER_THREAD_LARGE if resident and total >= SPLIT_CODES
        else MIN_QUERIES_PER_THREAD))
    knn = mih_numba.knn
    if len(q) >= SHARED_QUERIES * pieces and resident:
      knn = mih_numba.knn_shared
    for part in parts:

      def queries(lo, hi, part=part):
        knn(qw[lo:hi], keys[lo:hi], lengths, *_compiled_part(part), total,
            k, float(budget), STEP_WORK_COMPILED, PROBE_WORK_COMPILED,
            best[lo:hi], count[lo:hi], seen[lo:hi], gave_up[lo:hi])
      workers.run_split(queries, len(q), pieces)
      if len(parts) > 1 and resident_bytes() >= _release_level():
        _release_all(parts)
    ok = ~gave_up
    dist[ok], idx[ok] = best[ok] // total, best[ok] % total
  else:
    for i in range(len(q)):
      best, seen[i] = _knn_one(q[i], keys[i], parts, k, total, budget)
      if best is None:
        gave_up[i] = True
      else:
        dist[i], idx[i] = best // total, best % total
  if stats is not None:
    stats['candidates'] = seen
    stats['threads'] = pieces
  return dist, idx, gave_up


def flat(q_packed, parts, k, bits, **kwargs):
  """topk.search over every part, merged by (distance, global index).
  Queries go in blocks of topk.block_for(Q) (a few queries are not padded
  to 64) unless query_block= is given."""
  from hashjax.archive import topk  # pylint: disable=g-import-not-at-top
  best_d = best_i = None
  total = sum(p[0].shape[0] for p in parts)
  k = int(min(k, total))
  kwargs.setdefault('query_block', topk.block_for(
      len(q_packed), 64 if k <= 256 else 16))
  for packed, _, offset in parts:
    d, i = topk.search(q_packed, packed, k, bits, **kwargs)
    i = i + offset
    if best_d is not None:
      d, i = np.concatenate([best_d, d], 1), np.concatenate([best_i, i], 1)
      order = np.lexsort((i, d), axis=1)[:, :k]
      d, i = np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
    best_d, best_i = d, i
  return best_d.astype(np.int32), best_i.astype(np.int64)


def choose(n, bits, k):
  """'flat' or 'mih' for a database of n codes: flat below 2 x 10^6 codes
  or for k > n / COST_RATIO (k alone would use the NumPy loop's budget;
  the compiled loop keeps its top k sorted by insertion, O(k) each).

  bench/archive.py at 10^6 codes, compiled loop, both runs: MIH was 14-18x
  the flat scan on clustered 64-bit codes at k = 1 but 0.02-0.8x on random
  codes and 0.4-0.7x at k = 1,000, and auto, trying MIH there, was slower
  than the flat scan in 11 of 16 random-code cells (0.69-0.97x) and 5 of
  16 clustered ones (0.59-0.92x): at 10^6 the flat scan (about 0.4 ms a
  query) leaves no room for exploring."""
  del bits
  if n < 2_000_000 or k * COST_RATIO > n:
    return 'flat'
  return 'mih'


def on_every_thread(seconds, stats):
  """The `seconds` a `search` or `radius` call took (its `stats`), as if
  its queries had been split over every thread, as the flat scan's are: a
  call of few queries runs on one thread, and its time would otherwise make
  MIH look slower than it is on a machine with many cores."""
  return seconds * stats['threads'] / workers.threads()


def search_auto(q_packed, parts, k, bits, *, cost_ratio=None,
                batch=16, first_batch=4, flat_fn=None, flat_seconds=None,
                estimate_flat=False, flat_block=None, **flat_kwargs):
  """Exact k nearest neighbours by MIH or the flat scan, whichever is
  faster here, measured.

  Which wins depends on the codes (how near the k-th neighbour is) and on
  the machine, so this measures rather than predicts. `choose` sends small
  databases and large k to the flat scan at once. Otherwise a first
  batch of `first_batch` queries runs MIH with a budget of N / cost_ratio
  (about one flat scan each, so where MIH cannot prune the exploration
  costs at most `first_batch` flat scans): a query that exhausts it is set
  aside for the flat scan.
  The next batch, with those, runs the flat scan (its first query alone,
  so a first compilation is not counted), unless `flat_seconds` is given
  or `estimate_flat` derives it from MIH's measured speed.
  The remaining queries then go, batch by batch, to MIH while it has cost
  less per query than the flat scan (MIH's cost including the flat scans
  of its queries that gave up), else all at once to the flat scan. Each
  MIH batch is twice the one before (from `batch`): the choice is checked
  after every batch, but a call's fixed cost (threads, tables' lists) is
  paid O(log Q) times, not Q / batch. Once MIH has cost less than
  1 / AUTO_ALL_IN of the flat scan per query over more than the first
  batch (4 queries are too few to judge a heavy tail of hard ones), the
  next batch is all the remaining queries: each call walks every part,
  and a query that turns out hard still costs at most its budget and a
  flat scan. Where the parts' tables exceed RESIDENT_BUDGET (10^8 codes)
  every call reads their pages again, and a call of 4 or 16 queries costs
  nearly what one of 80 does: there the first batch is enough to judge.

  Args:
    flat_fn: q_packed -> (dist, idx), the flat scan to use (default:
      `flat` over the parts, with flat_kwargs).
    flat_seconds: the flat scan's seconds per query if known: then no
      batch is spent measuring it.
    estimate_flat: without flat_seconds, estimate the flat scan's seconds
      per query from MIH's own measured seconds per unit of work (a flat
      scan costs N / cost_ratio units) instead of spending a batch on it;
      once AUTO_FLAT_PROBE queries have given up in MIH (and the flat scan
      does not pad), scan them flat at once and use that time instead,
      widening the MIH budget to the work that costs one flat scan at the
      measured speeds (cost_ratio is fitted on random codes; a unit of
      work costs fewer flat visits on clustered ones, so N / cost_ratio
      turns away queries MIH would answer faster than the flat scan).
    flat_block: queries per (padded) call of flat_fn, if it pads: fewer
      left-over queries than that first get MIH with the block's budget.

  Returns:
    (dist [Q, k] int32, idx [Q, k] int64), as topk.search.
  """
  import time  # pylint: disable=g-import-not-at-top
  cost_ratio = unit_cost() if cost_ratio is None else cost_ratio
  total = sum(p[0].shape[0] for p in parts)
  q = np.ascontiguousarray(q_packed, np.uint32)
  k = int(min(k, total))
  if flat_fn is None:
    flat_fn = lambda qq: flat(qq, parts, k, bits, **flat_kwargs)  # pylint: disable=unnecessary-lambda-assignment
  if choose(total, bits, k) == 'flat':
    return flat_fn(q)
  dist = np.zeros((len(q), k), np.int32)
  idx = np.zeros((len(q), k), np.int64)
  pending = np.zeros(len(q), bool)     # gave up in MIH: flat scan later
  spent = {'mih': [0.0, 0], 'flat': [0.0, 0]}   # seconds, queries
  gave_up = 0                          # MIH queries that exhausted the budget
  mih_work = [0]                       # MIH's units of work so far
  budget = total / cost_ratio          # per MIH query, in units of work
  # Past the memory budget every call reads the tables' pages again: a
  # small call costs nearly what a large one does, so go all in sooner.
  judge_after = 0 if (len(parts) > 1 and _past_budget(
      p[1] for p in parts)) else first_batch

  def per_query(way):
    s, n = spent[way]
    if way == 'flat' and not n:
      if flat_seconds is not None:
        return flat_seconds
      if estimate_flat and mih_work[0]:
        return spent['mih'][0] / mih_work[0] * total / cost_ratio
    return s / n if n else None

  def run_flat(rows):
    t0 = time.perf_counter()
    dist[rows], idx[rows] = flat_fn(q[rows])
    spent['flat'][0] += time.perf_counter() - t0
    spent['flat'][1] += len(rows)

  start, size = 0, batch
  while start < len(q):
    rows = np.arange(start, min(start + (size if start else first_batch),
                                len(q)))
    start = rows[-1] + 1
    t_flat, t_mih = per_query('flat'), per_query('mih')
    if t_mih is not None and t_flat is not None:
      mih_cost = t_mih + t_flat * gave_up / spent['mih'][1]
      way = 'mih' if mih_cost < t_flat else 'flat'
      if mih_cost * AUTO_ALL_IN < t_flat and spent['mih'][1] > judge_after:
        rows = np.arange(rows[0], len(q))
        start = len(q)
    else:
      way = 'mih' if t_mih is None else 'flat'
    if way == 'mih':
      t0 = time.perf_counter()
      stats = {}
      d, i, g = search(q[rows], parts, k, bits, max_candidates=budget,
                       stats=stats)
      spent['mih'][0] += on_every_thread(time.perf_counter() - t0, stats)
      mih_work[0] += int(stats['candidates'].sum())
      spent['mih'][1] += len(rows)
      dist[rows], idx[rows] = d, i
      pending[rows] = g
      gave_up += int(g.sum())
      if rows[0]:
        size *= 2
      if (estimate_flat and flat_seconds is None and flat_block is None and
          not spent['flat'][1] and pending.sum() >= AUTO_FLAT_PROBE):
        run_flat(np.flatnonzero(pending))
        pending[:] = False
        units = per_query('flat') / (spent['mih'][0] / mih_work[0])
        budget = min(max(budget, units), total / COST_RATIO_FLOOR_COMPILED)
    else:
      if t_mih is not None and t_flat is not None:   # decided: all the rest
        rows = np.arange(rows[0], len(q))
        start = len(q)
      rows = np.concatenate([np.flatnonzero(pending), rows])
      pending[:] = False
      if (spent['flat'][1] == 0 and flat_seconds is None and
          not estimate_flat and len(rows) > 1):
        dist[rows[:1]], idx[rows[:1]] = flat_fn(q[rows[:1]])  # compiles
        rows = rows[1:]
      run_flat(rows)
  rows = np.flatnonzero(pending)
  if flat_block and 0 < len(rows) < flat_block:
    # A flat call costs a whole padded block of flat_block queries: spend
    # that on MIH for these few first, and scan only what still gives up.
    d, i, g = search(q[rows], parts, k, bits, max_candidates=(
        total / cost_ratio * flat_block / len(rows)))
    dist[rows[~g]], idx[rows[~g]] = d[~g], i[~g]
    rows = rows[g]
  if len(rows):
    run_flat(rows)
  return dist, idx


# ---------------------------------------------------------------- radius


def _radius_one(q, keys, parts, r, total):
  t = parts[0].tables
  m, lengths = t.m, t.lengths
  s0, last = divmod(r, m)
  qws = [p.query(q) for p in parts]
  found = []
  for s in range(s0 + 1):
    for j in range(m if s < s0 else last + 1):
      probe = keys[j] ^ masks(lengths[j], s)
      if not probe.size:
        continue
      for p, qw in zip(parts, qws):
        rows = p.candidates(j, probe)
        if rows.size:
          d = p.distances(qw, rows)
          near = d <= r
          found.append(d[near] * total + (rows[near] + p.offset))
  best = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
  return (best // total).astype(np.int32), best % total


def radius(q_packed, parts, r, bits, *, max_candidates=None, stats=None,
           threads=None):
  """Every item within Hamming distance r of each query, by MIH.

  A part (shard) at a time for every query, so that, as in `search`,
  memory-mapped tables' pages are dropped between parts once the process
  passes _release_level() (an index bigger than memory). The compiled
  loop (mih_numba.radius) where numba is installed, else a NumPy loop.

  Args:
    max_candidates: per query, in the compiled loop: a query whose work
      (PROBE_WORK_COMPILED per bucket probed + codes verified, over all
      parts) passes it gives up, and its entry is None (the NumPy loop has
      no budget).
    stats: optional dict, given 'work' (float [Q], the compiled loop's
      work per query as counted for max_candidates) and 'threads' (how
      many threads ran the queries: one for a call of few queries).
    threads: split the queries over this many threads instead
      (`_threads_for`).

  Returns:
    A list with, per query, (dist int32, idx int64) sorted by (distance,
    global index), or None for a query that gave up.
  """
  parts = _parts(parts, bits)
  total = sum(p.n for p in parts)
  q = np.ascontiguousarray(q_packed, np.uint32)
  keys = _query_keys(q, parts[0].tables)
  found = [[] for _ in range(len(q))]
  budget = np.inf if max_candidates is None else float(max_candidates)
  gave_up = np.zeros(len(q), bool)
  spent = np.zeros(len(q))              # work so far, over the parts
  pieces = 1
  if compiled():
    qw = _word_layout(q, parts[0].words.dtype)
    lengths = np.asarray(parts[0].tables.lengths, np.int64)
    pieces = _threads_for(len(q), threads)
  for part in parts:
    if compiled():

      def queries(lo, hi, part=part):
        got, ends, g, work = mih_numba.radius(
            qw[lo:hi], keys[lo:hi], lengths, *_compiled_part(part), total,
            int(r), np.where(gave_up[lo:hi], -1.0, budget - spent[lo:hi]),
            PROBE_WORK_COMPILED)
        for i, (a, b) in enumerate(zip(np.r_[0, ends[:-1]], ends)):
          found[lo + i].append(got[a:b])
        gave_up[lo:hi] |= g
        spent[lo:hi] += work
      workers.run_split(queries, len(q), pieces)
    else:
      for i in range(len(q)):
        d, idx = _radius_one(q[i], keys[i], [part], int(r), total)
        found[i].append(d.astype(np.int64) * total + idx)
    if len(parts) > 1 and resident_bytes() >= _release_level():
      _release_all(parts)
  if stats is not None:
    stats['work'] = spent
    stats['threads'] = pieces
  out = []
  for f, g in zip(found, gave_up):
    best = np.sort(np.concatenate(f))   # parts hold different rows
    out.append(None if g else ((best // total).astype(np.int32),
                               best % total))
  return out


def radius_flat(q_packed, packed, r, bits, chunk=1 << 15, row_offset=0):
  """Every item within r of each query by a flat numpy scan (the oracle
  for `radius`): np.bitwise_count over chunks of `chunk` codes, so memory
  stays at Q x chunk distances. Same output as `radius`."""
  del bits
  q = np.ascontiguousarray(q_packed, np.uint32)
  wide = q.shape[1] % 2 == 0
  qw = q.view(np.uint64) if wide else q
  found_d = [[] for _ in range(len(q))]
  found_i = [[] for _ in range(len(q))]
  step = max(1, int(chunk))
  for start in range(0, packed.shape[0], step):
    db = np.ascontiguousarray(packed[start:start + step], np.uint32)
    dbw = db.view(np.uint64) if wide else db
    d = np.zeros((len(q), len(db)), np.int32)
    for w in range(dbw.shape[1]):
      d += np.bitwise_count(qw[:, w, None] ^ dbw[None, :, w])
    qi, ri = np.nonzero(d <= r)
    if qi.size:
      cut = np.searchsorted(qi, np.arange(len(q) + 1))
      for i in np.flatnonzero(np.diff(cut)):
        rows = ri[cut[i]:cut[i + 1]]
        found_d[i].append(d[i, rows])
        found_i[i].append(rows.astype(np.int64) + start + row_offset)
  out = []
  for fd, fi in zip(found_d, found_i):
    d = np.concatenate(fd) if fd else np.zeros(0, np.int32)
    i = np.concatenate(fi) if fi else np.zeros(0, np.int64)
    order = np.argsort(d, kind='stable')
    out.append((d[order].astype(np.int32), i[order]))
  return out


def radius_parts_flat(q_packed, parts, r, bits, chunk=1 << 15):
  """radius_flat over every part, merged by (distance, global index)."""
  per = [radius_flat(q_packed, p[0], r, bits, chunk, p[2]) for p in parts]
  out = []
  for res in zip(*per):
    d = np.concatenate([x[0] for x in res])
    i = np.concatenate([x[1] for x in res])
    order = np.lexsort((i, d))
    out.append((d[order], i[order]))
  return out
