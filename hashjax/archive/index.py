"""A searchable archive: bit-packed binary codes in one versioned file.

File layout (little-endian):

  bytes 0-7    magic b'HASHJAXI'
  bytes 8-11   format version (uint32), FORMAT_VERSION
  bytes 12-19  header length H (uint64)
  bytes 20-    header: UTF-8 JSON (bits, count, words, ids, labels,
               class_names, source, codes_sha256, ...), space-padded so the
               codes start at a multiple of 64 bytes (headed_file.py)
  then         codes: uint32 [count, words], bit j of a code is bit j % 32
               of word j // 32, set where the ±1 code is +1

`load` memory-maps the codes (nothing is read until searched) and checks
the file size, the version, the SHA-256 of the header and (unless
verify=False) the SHA-256 of the codes, so a truncated, corrupt or foreign
file is a clear error. `append` adds new codes after the old ones without
re-encoding them, and refuses codes of another run or checkpoint unless
asked. Writers hold `<file>.lock` (hashjax/locking.py): one at a time.
"""
import collections
import hashlib
import os

import numpy as np

from hashjax import locking
from hashjax.archive import headed_file

MAGIC = b'HASHJAXI'
FORMAT_VERSION = 1


class BadIndexError(ValueError):
  """A problem with an index file (the message names the file and the fix)."""


def pack(codes):
  """[N, bits] ±1 (or 0/1, or bool) codes -> uint32 [N, ceil(bits/32)]."""
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ValueError(f'codes must be [N, bits], got shape {codes.shape}.')
  bits = codes.shape[1]
  on = codes > 0
  words = -(-bits // 32)
  padded = np.zeros((codes.shape[0], words * 32), np.uint8)
  padded[:, :bits] = on
  # packbits 'little' puts bit j of each byte at position j; 4 bytes per word.
  as_bytes = np.packbits(padded, axis=1, bitorder='little')
  return as_bytes.view('<u4').reshape(codes.shape[0], words).astype(np.uint32)


def words(packed):
  """uint32 [N, W] packed codes -> contiguous uint64 [N, W / 2] when W is
  even (one popcount per 64 bits: the compiled scans' layout), else
  contiguous uint32 [N, W]. Little-endian: word pairs keep the bit order."""
  packed = np.ascontiguousarray(packed, np.uint32)
  return packed.view(np.uint64) if packed.shape[1] % 2 == 0 else packed


def unpack(packed, bits):
  """uint32 [N, words] -> int8 ±1 [N, bits] (the inverse of `pack`)."""
  packed = np.ascontiguousarray(packed, dtype='<u4')
  as_bytes = packed.view(np.uint8).reshape(packed.shape[0], -1)
  on = np.unpackbits(as_bytes, axis=1, bitorder='little')[:, :bits]
  return np.where(on > 0, 1, -1).astype(np.int8)


def _sha256(array):
  h = hashlib.sha256()
  flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
  for start in range(0, flat.size, 1 << 26):
    h.update(flat[start:start + (1 << 26)])
  return h.hexdigest()


def save(path, codes, ids, *, labels=None, class_names=None, source=None,
         packed=None, bits=None):
  """Writes an index of `codes` ([N, bits] ±1) or `packed` (+ `bits`).

  Args:
    path: the file to write (replaced atomically).
    codes: ±1 codes, or None with packed= and bits=.
    ids: N item ids (image paths or names), str.
    labels: optional [N, C] multi-hot labels (relevance in reports).
    class_names: optional C class names.
    source: optional dict describing where the codes came from (the
      workdir, checkpoint step, method, config), stored verbatim.

  Returns:
    The header dict written.
  """
  with locking.hold(path, 'The index'):
    return _write(path, codes, ids, labels=labels, class_names=class_names,
                  source=source, packed=packed, bits=bits)


def _write(path, codes, ids, *, labels, class_names, source, packed, bits):
  if packed is None:
    codes = np.asarray(codes)
    bits = codes.shape[1]
    packed = pack(codes)
  elif bits is None:
    raise ValueError('save(packed=...) needs bits=.')
  packed = np.ascontiguousarray(packed, dtype='<u4')
  ids = [str(i) for i in ids]
  if len(ids) != packed.shape[0]:
    raise ValueError(f'{len(ids)} ids for {packed.shape[0]} codes.')
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape[0] != packed.shape[0]:
      raise ValueError(f'{labels.shape[0]} label rows for {packed.shape[0]} '
                       'codes.')
  header = dict(
      bits=int(bits), count=int(packed.shape[0]), words=int(packed.shape[1]),
      ids=ids,
      labels=None if labels is None else labels.astype(int).tolist(),
      class_names=None if class_names is None else list(class_names),
      source=source or {}, codes_sha256=_sha256(packed))
  _remove_leftovers(path)
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'wb') as f:
    headed_file.write_header(f, MAGIC, FORMAT_VERSION, header)
    f.write(packed.tobytes())
  os.replace(tmp, path)
  return header


def _remove_leftovers(path):
  """Deletes the partial files of writers killed mid-write (the caller
  holds the lock, so no other writer is running). The index itself was
  never touched by them: it is only ever replaced whole."""
  folder = os.path.dirname(os.path.abspath(path))
  base = os.path.basename(path) + '.'
  for name in os.listdir(folder):
    if name.startswith(base) and name.endswith('.tmp') and \
        name[len(base):-4].isdigit():
      os.remove(os.path.join(folder, name))


class Index:
  """A loaded index: `packed` (memory-mapped uint32 [count, words]), `bits`,
  `ids`, `labels` (or None), `class_names`, `source`, `path`."""

  def __init__(self, path, header, packed):
    self.path = path
    self.header = header
    self.packed = packed
    self.bits = header['bits']
    self.ids = header['ids']
    self.labels = (None if header.get('labels') is None
                   else np.asarray(header['labels'], np.float32))
    # One list per item is millions of objects for the garbage collector
    # to walk in a long-running service: keep the array only.
    header['labels'] = None if self.labels is None else 'see Index.labels'
    self.class_names = header.get('class_names')
    self.source = header.get('source', {})

  def __len__(self):
    return self.header['count']

  def label_names(self, row):
    """Class names of row `row` ([] without labels)."""
    if self.labels is None or not self.class_names:
      return []
    return [self.class_names[j] for j in np.flatnonzero(self.labels[row])]

  def network(self):
    """The run, checkpoint step, method and bits that made the codes (the
    `source` an append of more codes from the same network passes)."""
    return {k: self.source.get(k) for k in ('workdir', 'step', 'method',
                                            'bits')}

  def codes(self, rows=None):
    """±1 codes of `rows` (all by default)."""
    packed = self.packed if rows is None else self.packed[rows]
    return unpack(packed, self.bits)


def load(path, verify=True):
  """Opens an index, memory-mapping its codes. Raises BadIndexError naming the
  file for a missing, foreign, version-mismatched, truncated or corrupt
  index."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'No index at {path!r}. Build one with '
                            'python -m hashjax.search --workdir=RUN '
                            '--out=FILE.')
  # Files written before the header checksum existed have none.
  _, header, offset, size = headed_file.read_header(
      path, MAGIC, (FORMAT_VERSION,), 'hashjax index', BadIndexError,
      unsummed_ok=True)
  want = offset + header['count'] * header['words'] * 4
  if size != want:
    raise BadIndexError(
        f'{path!r} is {size} bytes; its header describes {header["count"]} '
        f'codes of {header["bits"]} bits ({want} bytes): the file is '
        f'{"truncated" if size < want else "longer than its header says"}. '
        'Rebuild it.')
  packed = (np.memmap(path, dtype='<u4', mode='r', offset=offset,
                      shape=(header['count'], header['words']))
            if header['count'] else np.zeros((0, header['words']), '<u4'))
  if verify and _sha256(packed) != header['codes_sha256']:
    raise BadIndexError(f'{path!r}: the codes do not match their checksum '
                      '(the file is corrupt). Rebuild it.')
  return Index(path, header, packed)


def _same_network(old, new):
  """The codes' run and checkpoint step, for an append's check."""
  keys = ('workdir', 'step')
  return all(old.get(k) == new.get(k) for k in keys)


def append(path, codes, ids, labels=None, source=None, class_names=None,
           allow_other_network=False):
  """Adds `codes` ([M, bits] ±1) with `ids` (and `labels` if the index has
  labels) after the existing codes; the old codes are copied, not
  re-encoded. `class_names`, if given, names the columns of `labels`; they
  are mapped onto the index's classes. Codes of another run or checkpoint
  step than the index's (their `source`) are refused unless
  `allow_other_network`: their distances to the old codes mean nothing.
  Returns the new Index."""
  with locking.hold(path, 'The index'):
    return _append(path, codes, ids, labels, source, class_names,
                   allow_other_network)


def _append(path, codes, ids, labels, source, class_names,
            allow_other_network):
  old = load(path)
  codes, labels = check_addition(old, codes, ids, labels, source,
                                 class_names, allow_other_network)
  packed = np.concatenate([np.asarray(old.packed), pack(codes)])
  merged_labels = (None if labels is None else
                   np.concatenate([old.labels, np.asarray(labels)]))
  src = dict(old.source)
  if source:
    src.setdefault('appended', []).append(source)
  _write(path, None, list(old.ids) + [str(i) for i in ids],
         labels=merged_labels, class_names=old.class_names, source=src,
         packed=packed, bits=old.bits)
  return load(path, verify=False)   # just written from checked codes


def check_addition(old, codes, ids, labels, source, class_names,
                   allow_other_network):
  """Checks that `codes` with `ids` and `labels` can join the index `old`
  (same network unless allowed, same bits, labels if and only if it has
  them, no id twice); returns (codes, labels mapped onto its classes)."""
  path = old.path
  if (source and not allow_other_network and
      not _same_network(old.source, source)):
    raise ValueError(
        f'{path!r} holds codes of {old.source.get("workdir")!r} at step '
        f'{old.source.get("step")}; the new codes come from '
        f'{source.get("workdir")!r} at step {source.get("step")}. Codes of '
        'different networks are not comparable: build a new index, or pass '
        '--allow_other_network if you really mean it.')
  if (labels is not None and class_names is not None
      and old.labels is not None):
    labels = _remap_labels(np.asarray(labels), list(class_names),
                           old.class_names)
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[1] != old.bits:
    raise ValueError(f'{path!r} holds {old.bits}-bit codes; the new codes '
                     f'have shape {codes.shape}.')
  if (old.labels is None) != (labels is None):
    raise ValueError(f'{path!r} {"has" if old.labels is not None else "has no"}'
                     ' labels; pass labels for the new items '
                     f'{"too" if old.labels is not None else "only if it had"}.')
  fresh = [str(i) for i in ids]
  duplicate = set(old.ids).intersection(fresh)
  if len(set(fresh)) < len(fresh):
    duplicate |= {i for i, n in collections.Counter(fresh).items() if n > 1}
  if duplicate:
    raise ValueError(f'{len(duplicate)} id(s) already in {path!r}, e.g. '
                     f'{sorted(duplicate)[:3]}.')
  return codes, labels


def _remap_labels(labels, names, target):
  """[M, len(names)] labels -> [M, len(target)] by class name."""
  if names == target:
    return labels
  missing = sorted(set(names) - set(target))
  if missing:
    raise ValueError(f'Classes {missing} are not in the index '
                     f'({target}); build a new index for them.')
  out = np.zeros((len(labels), len(target)), np.float32)
  for j, name in enumerate(names):
    out[:, target.index(name)] = labels[:, j]
  return out
