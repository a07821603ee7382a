"""The sharded index: manifest + shard files; append as a new shard,
compaction, rows read across shards, and every way it can be damaged
(a corrupt, missing or replaced shard, a corrupt or edited manifest)."""
import json
import os
import shutil

import numpy as np
import pytest

from hashjax.archive import index
from hashjax.archive import shards
from hashjax.archive import topk


def _codes(rng, n, bits=64):
  return rng.integers(0, 2, (n, bits)).astype(np.int8) * 2 - 1


def _grow(tmp_path, sizes, bits=64, labels=True):
  """A sharded index of one shard per size; returns (path, codes, ids)."""
  rng = np.random.default_rng(len(sizes))
  path = str(tmp_path / 'idx')
  all_codes, all_ids = [], []
  for s, n in enumerate(sizes):
    c = _codes(rng, n, bits)
    ids = [f'img{s}_{i}.jpg' for i in range(n)]
    lab = np.eye(3, dtype=np.float32)[np.arange(n) % 3] if labels else None
    names = ['a', 'b', 'c'] if labels else None
    src = dict(workdir='/runs/x', step=5, bits=bits)
    if s == 0:
      shards.save(path, c, ids, labels=lab, class_names=names, source=src)
    else:
      shards.append(path, c, ids, labels=lab, class_names=names, source=src)
    all_codes.append(c)
    all_ids += ids
  return path, np.concatenate(all_codes), all_ids


def test_append_writes_a_shard_and_rows_read_across_shards(tmp_path):
  path, codes, ids = _grow(tmp_path, [100, 37, 250])
  idx = shards.load(path)
  assert len(idx) == 387 and len(idx.shards) == 3 and idx.bits == 64
  assert idx.ids == ids and idx.labels.shape == (387, 3)
  assert idx.label_names(101) == ['b']      # row 1 of the second shard
  packed = index.pack(codes)
  np.testing.assert_array_equal(np.asarray(idx.packed), packed)
  for key in (slice(90, 140), slice(0, 387), slice(136, 137), slice(386, 999),
              slice(5, 300, 7)):
    np.testing.assert_array_equal(idx.packed[key], packed[key])
  rows = np.array([386, 0, 137, 99, 100, 136, 5])
  np.testing.assert_array_equal(idx.packed[rows], packed[rows])
  np.testing.assert_array_equal(idx.packed[-1], packed[-1])
  np.testing.assert_array_equal(idx.codes([3, 200]), codes[[3, 200]])
  # the flat scan reads the shards a chunk at a time, chunks across shards
  q = packed[[5, 120, 300]]
  d, i = topk.search(q, idx.packed, 10, 64, db_chunk=64, group=4, fanout=2)
  dd, ii = topk.search(q, packed, 10, 64)
  np.testing.assert_array_equal(d, dd)
  np.testing.assert_array_equal(i, ii)
  # the shards are files of the single-file format, the manifest lists them
  manifest = json.load(open(os.path.join(path, 'manifest.json')))
  assert [e['count'] for e in manifest['shards']] == [100, 37, 250]
  assert manifest['count'] == 387


def test_append_refuses_what_index_append_refuses(tmp_path):
  path, codes, ids = _grow(tmp_path, [20])
  rng = np.random.default_rng(0)
  lab = np.eye(3, dtype=np.float32)[[0]]
  with pytest.raises(ValueError, match='already in'):
    shards.append(path, _codes(rng, 1), [ids[3]], labels=lab)
  with pytest.raises(ValueError, match='64-bit'):
    shards.append(path, _codes(rng, 1, 32), ['new.jpg'], labels=lab)
  with pytest.raises(ValueError, match='not comparable'):
    shards.append(path, _codes(rng, 1), ['new.jpg'], labels=lab,
                  source=dict(workdir='/runs/other', step=5))
  with pytest.raises(ValueError, match='already holds an index'):
    shards.save(path, _codes(rng, 1), ['new.jpg'])
  assert len(shards.load(path)) == 20 and len(os.listdir(path)) == 4


def test_compact_merges_small_shards(tmp_path):
  path, codes, ids = _grow(tmp_path, [10, 20, 30, 200, 5, 6])
  assert shards.compact(path, target=64) == (6, 3)
  idx = shards.load(path)
  assert [len(s) for s in idx.shards] == [60, 200, 11]
  assert idx.ids == ids
  np.testing.assert_array_equal(idx.codes(), codes)
  np.testing.assert_array_equal(idx.labels[:, 0] > 0, np.r_[
      np.arange(10) % 3 == 0, np.arange(20) % 3 == 0, np.arange(30) % 3 == 0,
      np.arange(200) % 3 == 0, np.arange(5) % 3 == 0, np.arange(6) % 3 == 0])
  # the merged shards' files are gone; the big one was left alone
  after = sorted(os.listdir(path))
  assert len(after) == 8 and 'shard-000003.hjidx' in after   # 3 shards
  # and their tables, manifest, lock
  assert shards.compact(path, target=64) == (3, 3)


def test_a_single_file_index_still_loads(tmp_path):
  rng = np.random.default_rng(1)
  path = str(tmp_path / 'one.hjidx')
  index.save(path, _codes(rng, 9), [str(i) for i in range(9)])
  idx = shards.load(path)
  assert isinstance(idx, index.Index) and len(idx) == 9
  assert not shards.is_sharded(path)
  assert shards.is_sharded(str(tmp_path / 'new_dir'))
  shards.append(path, _codes(rng, 2), ['a', 'b'])
  assert len(shards.load(path)) == 11


def _shard_file(path, n=1):
  return os.path.join(path, shards.read_manifest(path)['shards'][n]['file'])


def test_a_corrupt_shard_is_named(tmp_path):
  path, _, _ = _grow(tmp_path, [50, 60])
  f = _shard_file(path)
  with open(f, 'r+b') as fh:
    fh.seek(os.path.getsize(f) - 3)
    fh.write(b'\xff\x00\xff')
  with pytest.raises(index.BadIndexError, match='do not match their checksum'
                     ) as e:
    shards.load(path)
  assert os.path.basename(f) in str(e.value)
  shards.load(path, verify=False)   # opening without checking still works
  with pytest.raises(index.BadIndexError, match=os.path.basename(f)):
    shards.compact(path)             # compaction verifies every shard


def test_a_missing_or_replaced_shard_is_named(tmp_path):
  path, _, _ = _grow(tmp_path, [50, 60, 70])
  f1, f2 = _shard_file(path, 1), _shard_file(path, 2)
  shutil.copy(f2, tmp_path / 'keep')
  shutil.copy(f1, f2)        # a valid shard file, but not the listed one
  with pytest.raises(index.BadIndexError, match='not the shard its manifest'
                     ) as e:
    shards.load(path)
  assert os.path.basename(f2) in str(e.value)
  os.remove(f2)
  with pytest.raises(index.BadIndexError, match='is missing') as e:
    shards.load(path)
  assert os.path.basename(f2) in str(e.value) and '70 codes' in str(e.value)
  shutil.copy(tmp_path / 'keep', f2)
  assert len(shards.load(path)) == 180


def test_a_corrupt_or_edited_manifest(tmp_path):
  path, _, _ = _grow(tmp_path, [5, 6])
  m = os.path.join(path, 'manifest.json')
  text = open(m).read()
  open(m, 'w').write(text.replace('"count": 11', '"count": 12'))
  with pytest.raises(index.BadIndexError, match='checksum'):
    shards.load(path)
  open(m, 'w').write(text[:len(text) // 2])
  with pytest.raises(index.BadIndexError, match='manifest.json.*corrupt'):
    shards.load(path)
  os.remove(m)
  with pytest.raises(index.BadIndexError, match='without manifest.json'):
    shards.load(path)
  with pytest.raises(FileNotFoundError, match='No index'):
    shards.load(str(tmp_path / 'nothing'))


def test_a_killed_writer_leaves_the_index_as_it_was(tmp_path):
  """A shard written but not yet in the manifest (a writer killed between
  the two) is not part of the index; the next append works."""
  path, _, _ = _grow(tmp_path, [5])
  rng = np.random.default_rng(2)
  index.save(os.path.join(path, 'shard-000001.hjidx'), _codes(rng, 3),
             ['x', 'y', 'z'])
  open(os.path.join(path, 'manifest.json.999.tmp'), 'w').write('{"par')
  assert len(shards.load(path)) == 5
  lab = np.eye(3, dtype=np.float32)[[0]]
  idx = shards.append(path, _codes(rng, 1), ['w'], labels=lab)
  assert len(idx) == 6 and idx.ids[-1] == 'w'
  assert not os.path.exists(os.path.join(path, 'manifest.json.999.tmp'))


def test_lazy_loading_reads_ids_and_labels_a_shard_at_a_time(tmp_path):
  path, codes, ids = _grow(tmp_path, [30, 7, 40])
  idx = shards.load(path, lazy=True)
  assert all(s.ids is None for s in idx.shards)
  assert len(idx.ids) == 77 and list(idx.ids) == ids
  assert [idx.ids[r] for r in (0, 29, 30, 36, 37, 76, -1)] == [
      ids[r] for r in (0, 29, 30, 36, 37, 76, -1)]
  full = shards.load(path)
  for r in (0, 31, 76):
    assert idx.label_names(r) == full.label_names(r)
    assert [idx.labels[r, c] for c in range(3)] == list(full.labels[r])
  np.testing.assert_array_equal(idx.codes([0, 40]), codes[[0, 40]])
  with pytest.raises(IndexError):
    idx.ids[77]


def test_a_service_watching_a_sharded_index_sees_appends(tmp_path):
  """The service's Watcher follows the manifest: an append or a compaction
  by another writer is a new version; a corrupted manifest keeps the old
  one serving, with the error."""
  from hashjax.serving import snapshot  # pylint: disable=g-import-not-at-top
  path, _, _ = _grow(tmp_path, [30])
  w = snapshot.Watcher(path)
  assert w.current.version == 1 and len(w.current.index) == 30
  assert not w.check()
  rng = np.random.default_rng(5)
  shards.append(path, _codes(rng, 4), ['n1', 'n2', 'n3', 'n4'],
                labels=np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
  assert w.check() and w.current.version == 2
  assert w.current.rows_by_id['n4'] == 33
  shards.compact(path)
  assert w.check() and len(w.current.index.shards) == 1
  m = os.path.join(path, 'manifest.json')
  text = open(m).read()
  open(m, 'w').write(text[:len(text) // 2])
  assert not w.check() and 'manifest.json' in w.error
  assert w.current.version == 3 and len(w.current.index) == 34


def test_format_1_tables_are_searched_and_compaction_rewrites_them(tmp_path):
  """A shard whose tables file predates the bucket-ordered codes (the
  format-1 file of tests/mih_test.py, for the same 60 codes): searched
  exactly, and rewritten in the current format by a compaction."""
  from hashjax.archive import mih  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(2026)
  db = index.pack(rng.integers(0, 2, (60, 16)) * 2 - 1)
  db[::7] = db[3]
  path = str(tmp_path / 'idx')
  shards.save(path, np.where(index.unpack(db, 16) > 0, 1, -1).astype(np.int8),
              [f'{i}.jpg' for i in range(60)])
  name = shards.load(path).manifest['shards'][0]['file']
  tpath = os.path.join(path, shards.tables_file(name))
  assert mih.load(tpath).codes is not None
  shutil.copy(os.path.join(os.path.dirname(__file__), 'data',
                           'mih_format1.mih'), tpath)
  assert mih.load(tpath).codes is None
  q = db[[0, 5, 9]] ^ np.uint32(3)
  want = topk.search(q, db, 8, 16)
  d, i, _ = mih.search(q, shards.load(path).parts(), 8, 16)
  np.testing.assert_array_equal(d, want[0])
  np.testing.assert_array_equal(i, want[1])
  assert shards.compact(path) == (1, 1)
  assert mih.load(tpath).codes is not None
  d, i, _ = mih.search(q, shards.load(path).parts(), 8, 16)
  np.testing.assert_array_equal(i, want[1])


def test_mih_over_a_resident_budget_drops_table_pages_and_stays_exact(
    tmp_path, monkeypatch):
  """With a resident budget of 0 the compiled search drops every shard's
  memory-mapped table pages after each shard (mih.release); the answers
  are still the flat scan's."""
  from hashjax.archive import mih  # pylint: disable=g-import-not-at-top
  if not mih.compiled():
    pytest.skip('numba is not installed (the `fast` extra)')
  path, codes, _ = _grow(tmp_path, [300, 200, 250], labels=False)
  parts = shards.load(path).parts()
  assert all(isinstance(p[1].codes[0], np.memmap) for p in parts)
  released = []
  monkeypatch.setattr(mih, 'RESIDENT_BUDGET', 0)
  monkeypatch.setattr(mih, 'RELEASE_STEP', 0)
  monkeypatch.setattr(mih, '_after_release', None)
  monkeypatch.setattr(mih, 'release', lambda t, f=mih.release: (
      released.append(t), f(t)))
  assert mih.resident_bytes() > 0
  q = index.pack(codes[[3, 400, 700]])
  q[:, 0] ^= np.uint32(9)
  d, i, gave_up = mih.search(q, parts, 20, 64)
  want = topk.search(q, index.pack(codes), 20, 64)
  np.testing.assert_array_equal(d, want[0])
  np.testing.assert_array_equal(i, want[1])
  assert not gave_up.any() and len(released) == 3 * 3   # every part, thrice


def test_memory_other_than_the_tables_over_the_budget_does_not_release_every_shard(
    tmp_path, monkeypatch):
  """When the process stays over RESIDENT_BUDGET after a release (memory
  that is not the tables), the next release waits for RELEASE_STEP more
  resident memory: one release, not one after every shard of every
  search; the answers are still the flat scan's."""
  from hashjax.archive import mih  # pylint: disable=g-import-not-at-top
  if not mih.compiled():
    pytest.skip('numba is not installed (the `fast` extra)')
  path, codes, _ = _grow(tmp_path, [300, 200, 250], labels=False)
  parts = shards.load(path).parts()
  released = []
  monkeypatch.setattr(mih, 'RESIDENT_BUDGET', 1)    # below this process
  monkeypatch.setattr(mih, 'RELEASE_STEP', 1 << 30)  # above its tables
  monkeypatch.setattr(mih, '_after_release', None)
  monkeypatch.setattr(mih, 'release', lambda t, f=mih.release: (
      released.append(t), f(t)))
  q = index.pack(codes[[3, 400, 700]])
  want = topk.search(q, index.pack(codes), 20, 64)
  for _ in range(2):
    d, i, gave_up = mih.search(q, parts, 20, 64)
    np.testing.assert_array_equal(d, want[0])
    np.testing.assert_array_equal(i, want[1])
    assert not gave_up.any()
  assert len(released) == 3            # once, every part's tables
  assert mih._after_release > mih.RESIDENT_BUDGET  # pylint: disable=protected-access


def test_radius_search_drops_the_tables_pages_between_shards(
    tmp_path, monkeypatch):
  """Radius search goes a shard at a time and, over the memory budget,
  drops the memory-mapped tables' pages as the k-nearest search does; its
  answers are the flat scan's."""
  from hashjax.archive import mih  # pylint: disable=g-import-not-at-top
  path, codes, _ = _grow(tmp_path, [300, 200, 250], labels=False)
  parts = shards.load(path).parts()
  released = []
  monkeypatch.setattr(mih, 'RESIDENT_BUDGET', 1)    # below this process
  monkeypatch.setattr(mih, 'RELEASE_STEP', 0)
  monkeypatch.setattr(mih, '_after_release', None)
  monkeypatch.setattr(mih, 'release', lambda t, f=mih.release: (
      released.append(t), f(t)))
  q = index.pack(codes[[3, 400, 700]])
  got = mih.radius(q, parts, 24, 64)
  want = mih.radius_flat(q, index.pack(codes), 24, 64)
  for (gd, gi), (wd, wi) in zip(got, want):
    np.testing.assert_array_equal(gd, wd)
    np.testing.assert_array_equal(gi, wi)
  assert sum(len(g[0]) for g in got) > 3              # more than the hits
  assert len(released) == 3 * 3        # after each part, every part's
