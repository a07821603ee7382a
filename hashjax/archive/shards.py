"""A sharded index: a directory of shard files named by a manifest.

  INDEX_DIR/manifest.json   {"format": "hashjax-index", "version": 1,
                             "bits", "words", "count", "class_names",
                             "source" (the network that made the codes),
                             "shards": [{"file", "count", "codes_sha256",
                                         "header_sha256", "bytes"}, ...],
                             "next_shard", "manifest_sha256"}
  INDEX_DIR/<shard>.hjidx   shards in the single-file format (index.py)

Rows are numbered through the shards in manifest order. Writers hold
`INDEX_DIR/manifest.json.lock` (hashjax/locking.py: one at a time), write
new shard files first and then replace the manifest atomically, so a reader
sees the old list of shards or the new one, never a partial index: an
append writes one new shard; `compact` merges small shards into new files
and deletes the old ones once the new manifest is in place (a reader that
has them open keeps reading them). A shard file is never changed.

`load` opens a directory (checking each shard against the manifest: a
missing, replaced or corrupt shard is an error naming it) or a single-file
index. Each shard's codes stay memory-mapped; `ShardedIndex.packed` reads
rows across shards without concatenating them, so a search reads an index
larger than memory a chunk at a time (hashjax/archive/topk.py).
"""
import hashlib
import json
import os

import numpy as np

from hashjax import locking
from hashjax.archive import index as index_lib
from hashjax.archive import mih

MANIFEST = 'manifest.json'
FORMAT = 'hashjax-index'
VERSION = 1
SHARD_SUFFIX = '.hjidx'
TABLES_SUFFIX = '.mih'


def tables_file(shard_file):
  """The multi-index hashing tables of a shard file (hashjax/archive/mih.py)."""
  return shard_file[:-len(SHARD_SUFFIX)] + TABLES_SUFFIX


def is_sharded(path):
  """Whether `path` names (or will name) a sharded index: an existing
  directory, or a new path without the single-file suffix."""
  path = os.fspath(path)
  if os.path.isdir(path):
    return True
  return not os.path.exists(path) and not path.endswith(SHARD_SUFFIX)


def manifest_path(path):
  return os.path.join(os.fspath(path), MANIFEST)


def identity_file(path):
  """The file whose replacement marks a new version of the index at
  `path` (its manifest, or the single file)."""
  return manifest_path(path) if os.path.isdir(path) else os.fspath(path)


class Rows:
  """The shards' packed codes as one read-only [count, words] array: rows
  are read from the memory-mapped shards on indexing, nothing is
  concatenated up front."""

  def __init__(self, parts, words):
    self.parts = parts
    self.starts = np.cumsum([0] + [len(p) for p in parts])
    self.shape = (int(self.starts[-1]), words)
    self.dtype = np.dtype('<u4')
    self.ndim = 2

  def __len__(self):
    return self.shape[0]

  def __array__(self, dtype=None, copy=None):
    del copy
    return self[0:len(self)].astype(dtype or self.dtype, copy=False)

  def __getitem__(self, key):
    if isinstance(key, slice):
      start, stop, step = key.indices(len(self))
      if step != 1:
        return self[np.arange(start, stop, step)]
      out = [np.asarray(p[max(start - s, 0):max(stop - s, 0)])
             for p, s in zip(self.parts, self.starts)
             if s < stop and s + len(p) > start]
      return (np.concatenate(out) if len(out) != 1 else out[0]) if out else \
          np.zeros((0, self.shape[1]), self.dtype)
    rows = np.asarray(key)
    if rows.ndim == 0:
      return self[int(rows):int(rows) + 1][0] if rows >= 0 else \
          self[int(rows) + len(self)]
    rows = np.where(rows < 0, rows + len(self), rows)
    if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
      raise IndexError(f'row out of range for {len(self)} codes')
    out = np.zeros((len(rows), self.shape[1]), self.dtype)
    shard = np.searchsorted(self.starts, rows, side='right') - 1
    for j in np.unique(shard):
      at = shard == j
      out[at] = self.parts[j][rows[at] - self.starts[j]]
    return out


class _PerShard:
  """Per-item values of a lazily loaded index (ids, or label rows), read
  from a shard's header when asked for, one shard cached: an index of 10^8
  items is searched without holding 10^8 ids."""

  def __init__(self, path, files, starts, field):
    self.path, self.files, self.starts, self.field = path, files, starts, field
    self._cached = (None, None)

  def __len__(self):
    return int(self.starts[-1])

  def _shard(self, j):
    if self._cached[0] != j:
      shard = index_lib.load(os.path.join(self.path, self.files[j]),
                             verify=False)
      self._cached = (j, getattr(shard, self.field))
    return self._cached[1]

  def __getitem__(self, key):
    row, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
    row = int(row) + (len(self) if int(row) < 0 else 0)
    if not 0 <= row < len(self):
      raise IndexError(f'row {row} of {len(self)}')
    j = int(np.searchsorted(self.starts, row, side='right')) - 1
    value = self._shard(j)[row - self.starts[j]]
    return value[rest] if rest else value

  def __iter__(self):
    for j in range(len(self.files)):
      yield from self._shard(j)


class ShardedIndex(index_lib.Index):
  """A loaded sharded index, used like an Index: `packed` (Rows), `bits`,
  `ids`, `labels`, `class_names`, `source`, `path`; plus `shards` (each an
  Index) and `manifest`."""

  def __init__(self, path, manifest, shards, lazy=False):
    self.path = path
    self.manifest = manifest
    self.shards = shards
    self.header = {k: v for k, v in manifest.items() if k != 'shards'}
    self.bits = manifest['bits']
    self.packed = Rows([s.packed for s in shards], manifest['words'])
    self.starts = self.packed.starts
    self.class_names = manifest.get('class_names')
    self.source = manifest.get('source', {})
    files = [e['file'] for e in manifest['shards']]
    if lazy:
      self.ids = _PerShard(path, files, self.starts, 'ids')
      self.labels = (_PerShard(path, files, self.starts, 'labels')
                     if self.class_names else None)
      return
    self.ids = [i for s in shards for i in s.ids]
    labelled = [s.labels for s in shards if s.labels is not None]
    self.labels = (np.concatenate(labelled) if labelled and
                   len(labelled) == len(shards) else None)

  def parts(self, verify=True):
    """[(packed codes, mih.Tables, first row)] per shard, for mih.search:
    each shard's tables file, checked against the shard's codes (a corrupt
    one is an error naming it); built in memory where a shard has none.
    Loaded once per ShardedIndex."""
    if getattr(self, '_parts', None) is None:
      self._parts = self._load_parts(verify)
    return self._parts

  def _load_parts(self, verify):
    out = []
    for shard, entry, start in zip(self.shards, self.manifest['shards'],
                                   self.starts):
      fp = shard.header['codes_sha256']
      tpath = os.path.join(self.path, tables_file(entry['file']))
      if os.path.exists(tpath):
        tables = mih.load(tpath, fingerprint_=fp, verify=verify)
        if tables.m != self.manifest.get('mih_m', tables.m):
          raise index_lib.BadIndexError(
              f'{tpath!r} splits codes in {tables.m} substrings; the index '
              f'uses {self.manifest["mih_m"]}. Delete it to rebuild it.')
      else:
        tables = mih.build(shard.packed, self.bits, self.mih_m(), fp)
      out.append((shard.packed, tables, int(start)))
    return out

  def mih_m(self):
    """Substrings per code for the tables of this index's shards."""
    return self.manifest.get('mih_m') or mih.choose_m(len(self), self.bits)


def _manifest_sha256(manifest):
  rest = {k: v for k, v in manifest.items() if k != 'manifest_sha256'}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def read_manifest(path):
  """The manifest of the index directory `path`, checked."""
  mpath = manifest_path(path)
  if not os.path.exists(mpath):
    if os.path.isdir(path):
      raise index_lib.BadIndexError(
          f'{path!r} is a folder without {MANIFEST}: not a hashjax index (or '
          'its first encode has not finished; rerun that command to finish '
          'it).')
    raise FileNotFoundError(f'No index at {path!r}. Build one with '
                            'python -m hashjax.search --workdir=RUN '
                            '--images=IMAGES --out=DIR.')
  try:
    with open(mpath) as f:
      manifest = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise index_lib.BadIndexError(
        f'{mpath!r} is corrupt ({e}). Restore it or rebuild the index.') \
        from e
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    raise index_lib.BadIndexError(f'{mpath!r} is not a hashjax index '
                                  'manifest.')
  if manifest.get('version') != VERSION:
    raise index_lib.BadIndexError(
        f'{mpath!r} is sharded-index version {manifest.get("version")}; this '
        f'hashjax reads version {VERSION}. Rebuild the index.')
  if _manifest_sha256(manifest) != manifest.get('manifest_sha256'):
    raise index_lib.BadIndexError(
        f'{mpath!r} does not match its checksum (the file is corrupt or was '
        'edited). Restore it or rebuild the index.')
  return manifest


def load(path, verify=True, lazy=False):
  """Opens a sharded index directory, or a single-file index.

  Every shard is checked against the manifest (present, same codes and
  header checksums) and, with verify, its codes against their checksum.
  Raises BadIndexError naming the shard or manifest at fault. `lazy`
  keeps only the codes (memory-mapped): ids and labels are read from a
  shard's header when asked for (a search of an index bigger than memory).
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return index_lib.load(path, verify)
  manifest = read_manifest(path)
  shards = []
  for entry in manifest['shards']:
    spath = os.path.join(path, entry['file'])
    if not os.path.exists(spath):
      raise index_lib.BadIndexError(
          f'Shard {entry["file"]!r} of {path!r} is missing '
          f'({entry["count"]:,} codes). Restore it, or rebuild the index.')
    shard = index_lib.load(spath, verify)
    if (shard.header['codes_sha256'] != entry['codes_sha256'] or
        shard.header.get('header_sha256') != entry['header_sha256'] or
        len(shard) != entry['count']):
      raise index_lib.BadIndexError(
          f'Shard {entry["file"]!r} of {path!r} is not the shard its manifest '
          'lists (its checksums differ: replaced or edited). Restore it, or '
          'rebuild the index.')
    if shard.bits != manifest['bits']:
      raise index_lib.BadIndexError(
          f'Shard {entry["file"]!r} of {path!r} holds {shard.bits}-bit codes; '
          f'the index is {manifest["bits"]} bits.')
    if lazy:   # the ids and labels of one shard at a time
      shard.ids = shard.labels = shard.header['ids'] = None
    shards.append(shard)
  return ShardedIndex(path, manifest, shards, lazy)


def _entry(path, name):
  shard = index_lib.load(os.path.join(path, name), verify=False)
  return dict(file=name, count=len(shard),
              codes_sha256=shard.header['codes_sha256'],
              header_sha256=shard.header['header_sha256'],
              bytes=os.path.getsize(os.path.join(path, name)))


def _write_manifest(path, manifest):
  manifest = dict(manifest)
  manifest['count'] = sum(e['count'] for e in manifest['shards'])
  manifest['manifest_sha256'] = _manifest_sha256(manifest)
  mpath = manifest_path(path)
  index_lib._remove_leftovers(mpath)  # pylint: disable=protected-access
  tmp = f'{mpath}.{os.getpid()}.tmp'
  with open(tmp, 'w') as f:
    json.dump(manifest, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, mpath)
  return manifest


def commit(path, names, *, bits, class_names=None, source=None,
           next_shard=None, expected=None, plan=None):
  """Adds the shard files `names` (already in the directory `path`) to its
  manifest, creating the index if it has none, and writes each shard's
  multi-index hashing tables where missing. The caller holds the lock
  (`hold`). `expected`: the index's expected size; with the codes of
  `names` it sets the tables' substrings when the index is created
  (`mih.choose_m_for`); `plan`: an encode to record as finished. Returns
  the manifest written."""
  if os.path.exists(manifest_path(path)):
    manifest = read_manifest(path)
  else:
    manifest = dict(format=FORMAT, version=VERSION, bits=int(bits),
                    words=-(-int(bits) // 32), class_names=class_names,
                    source=source or {}, shards=[], next_shard=0,
                    mih_m=_choose_m(path, names, int(bits), expected),
                    encodes=[])
  listed = {e['file'] for e in manifest['shards']}
  for name in names:
    if name not in listed:
      write_tables(path, name, manifest['mih_m'])
  manifest['shards'] = manifest['shards'] + [
      _entry(path, n) for n in names if n not in listed]
  if next_shard is not None:
    manifest['next_shard'] = next_shard
  if plan:
    manifest['encodes'] = manifest.get('encodes', []) + [plan]
  return _write_manifest(path, manifest)


def _choose_m(path, names, bits, expected, limit=(1 << 20) + 64):
  """mih.choose_m_for over the codes of the shard files `names` (in name
  order, up to `limit` codes), for an index of `expected` codes."""
  codes, have = [], 0
  for name in sorted(names):
    if have >= limit:
      break
    packed = index_lib.load(os.path.join(path, name), verify=False).packed
    codes.append(np.asarray(packed[:limit - have]))
    have += len(codes[-1])
  if not have:
    return mih.choose_m(expected or 1, bits)
  return mih.choose_m_for(np.concatenate(codes), bits,
                          n=max(expected or 0, have))


def write_tables(path, name, m):
  """Writes the tables of shard file `name` unless a valid file of the
  current format is there."""
  tpath = os.path.join(path, tables_file(name))
  shard = index_lib.load(os.path.join(path, name), verify=False)
  if os.path.exists(tpath):
    try:
      t = mih.load(tpath, fingerprint_=shard.header['codes_sha256'])
      if t.m == m and t.codes is not None:   # format 1 has no codes
        return
    except (mih.BadTablesError, ValueError):
      pass
  mih.build(shard.packed, shard.bits, m,
            shard.header['codes_sha256']).save(tpath)


def _format_1_tables(path, name):
  """Whether shard `name` has a tables file of format 1 (read from its
  header only: a compaction leaves current or unreadable files alone)."""
  try:
    return mih.load(os.path.join(path, tables_file(name)),
                    verify=False).codes is None
  except (OSError, mih.BadTablesError, ValueError):
    return False


def hold(path):
  """The writers' lock of the index directory `path`."""
  os.makedirs(path, exist_ok=True)
  return locking.hold(manifest_path(path), 'The index')


def _next_name(path):
  taken = set(os.listdir(path))
  n = (read_manifest(path).get('next_shard', 0)
       if os.path.exists(manifest_path(path)) else 0)
  while f'shard-{n:06d}{SHARD_SUFFIX}' in taken:
    n += 1
  return f'shard-{n:06d}{SHARD_SUFFIX}', n + 1


def save(path, codes, ids, *, labels=None, class_names=None, source=None):
  """A new sharded index at directory `path` holding one shard; refuses to
  overwrite an existing index. Returns the ShardedIndex."""
  with hold(path):
    if os.path.exists(manifest_path(path)):
      raise ValueError(f'{path!r} already holds an index: add to it with '
                       '--append, or choose another --out.')
    name, nxt = _next_name(path)
    index_lib._write(os.path.join(path, name), codes, ids, labels=labels,  # pylint: disable=protected-access
                     class_names=class_names, source=source, packed=None,
                     bits=None)
    commit(path, [name], bits=np.asarray(codes).shape[1],
           class_names=class_names, source=source, next_shard=nxt,
           expected=len(ids))
  return load(path, verify=False)


def append(path, codes, ids, labels=None, source=None, class_names=None,
           allow_other_network=False):
  """Adds `codes` with `ids` (and labels) as one new shard: the old shards
  are not read beyond their ids. Checks as index.append. Returns the new
  ShardedIndex (a single-file index at `path` is appended to by
  index.append)."""
  if os.path.isfile(path):
    return index_lib.append(path, codes, ids, labels=labels, source=source,
                            class_names=class_names,
                            allow_other_network=allow_other_network)
  with hold(path):
    old = load(path, verify=False)
    codes, labels = index_lib.check_addition(
        old, codes, ids, labels, source, class_names, allow_other_network)
    name, nxt = _next_name(path)
    index_lib._write(os.path.join(path, name), codes, ids, labels=labels,  # pylint: disable=protected-access
                     class_names=old.class_names, source=source,
                     packed=None, bits=None)
    commit(path, [name], bits=old.bits, next_shard=nxt)
  return load(path, verify=False)


def compact(path, target=1 << 22):
  """Merges runs of consecutive shards into shards of at most `target`
  codes (a shard already that big is left alone); verifies every shard
  first. Returns (shards before, shards after)."""
  with hold(path):
    return compact_held(path, target)


def compact_held(path, target=1 << 22):
  """`compact`, for a caller that holds the lock."""
  idx = load(path, verify=True)
  groups, current = [], []
  for shard, entry in zip(idx.shards, idx.manifest['shards']):
    if current and sum(len(s) for s, _ in current) + len(shard) > target:
      groups.append(current)
      current = []
    current.append((shard, entry))
  if current:
    groups.append(current)
  entries, removed = [], []
  manifest = dict(idx.manifest, mih_m=idx.mih_m())
  for group in groups:
    if len(group) == 1:
      if _format_1_tables(path, group[0][1]['file']):
        write_tables(path, group[0][1]['file'], idx.mih_m())
      entries.append(group[0][1])
      continue
    name, manifest['next_shard'] = _next_name(path)
    shards = [s for s, _ in group]
    labels = (None if idx.labels is None else
              np.concatenate([s.labels for s in shards]))
    index_lib._write(  # pylint: disable=protected-access
        os.path.join(path, name), None, [i for s in shards for i in s.ids],
        labels=labels, class_names=idx.class_names,
        source=dict(shards[0].source,
                    merged=[e['file'] for _, e in group]),
        packed=np.concatenate([np.asarray(s.packed) for s in shards]),
        bits=idx.bits)
    write_tables(path, name, idx.mih_m())
    entries.append(_entry(path, name))
    removed += [e['file'] for _, e in group]
  manifest['shards'] = entries
  before = len(idx.shards)
  del idx
  _write_manifest(path, manifest)
  for name in removed:
    for f in (name, tables_file(name)):
      if os.path.exists(os.path.join(path, f)):
        os.remove(os.path.join(path, f))
  return before, len(entries)
