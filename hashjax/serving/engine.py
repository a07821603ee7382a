"""What a retrieval service does, without the web: answer queries by
image, by an id in the index or by a code, micro-batched into one encode
and one search per batch, over the index's latest complete version.

  engine = Engine(Retriever.load(workdir, index=path))
  answer = engine.search(Query('image', k=10, pixels=engine.prepare(data)))

Every query of a batch is ranked exactly as hashjax.search ranks it
(hashjax/archive/topk.py: ascending Hamming distance, ties by index row).
A label filter ranks only the items with that label (the exact top k among
them, not a filtered top k); a radius keeps the results within that
Hamming distance. A bad query raises QueryError (with an HTTP status).
"""
import collections
import dataclasses
import functools
import hashlib
import io
import os
import threading
import time
from typing import List, Optional

import numpy as np
from PIL import Image

from hashjax.archive import index as index_lib
from hashjax.archive import shards
from hashjax.archive import topk
from hashjax.serving import batcher as batcher_lib
from hashjax.serving import snapshot as snapshot_lib


# k of the compiled searches (a query's k is rounded up to one; the first
# is compiled before serving, the others on first use).
K_SIZES = (32, 256, 1024)


class QueryError(ValueError):
  """A query that cannot be answered; `status` is its HTTP status."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class Query:
  """One query: kind 'image' (`pixels` from Engine.prepare), 'id'
  (`item_id`, an id in the index) or 'code' (`code`, ±1 int8 [bits])."""
  kind: str
  k: int = 10
  label: Optional[str] = None
  radius: Optional[int] = None
  pixels: Optional[np.ndarray] = None
  item_id: Optional[str] = None
  code: Optional[np.ndarray] = None


@dataclasses.dataclass
class Answer:
  """Results of one query: index rows, ids, distances, labels of each
  result, the query's code and labels (its own, for a query by id), and
  where the time went (ms)."""
  rows: List[int]
  ids: List[str]
  distances: List[int]
  labels: List[List[str]]
  code: np.ndarray
  query_labels: Optional[List[str]]
  index_version: int
  timing_ms: dict


def parse_code(text, bits):
  """A code as text -> ±1 int8 [bits]: `bits` characters 0/1, or '0x' and
  bits/4 hex digits (bit j = bit j of the number, least significant
  first). Raises QueryError naming the expected form."""
  text = (text or '').strip()
  if text.lower().startswith('0x'):
    digits = text[2:]
    if len(digits) * 4 != bits or not all(
        c in '0123456789abcdefABCDEF' for c in digits):
      raise QueryError(f'A hex code must be 0x and {bits // 4} hex digits '
                       f'({bits} bits); got {len(digits)} characters.')
    value = int(digits, 16)
    return np.array([1 if value >> j & 1 else -1 for j in range(bits)],
                    np.int8)
  if len(text) != bits or set(text) - {'0', '1'}:
    raise QueryError(f'A code must be {bits} characters 0/1 (or 0x and '
                     f'{bits // 4} hex digits); got {len(text)} characters'
                     f'{" with others than 0/1" if set(text) - {"0", "1"} else ""}.')
  return np.array([1 if c == '1' else -1 for c in text], np.int8)


def format_code(code):
  return ''.join('1' if c > 0 else '0' for c in code)


class Engine:
  """A Retriever served: see the module doc.

  Args:
    retriever: a hashjax.Retriever (model and index loaded).
    max_batch: most queries per batch (1 = no micro-batching).
    max_wait_s, gap_s: with company, a batch waits for more queries while
      they keep coming (hashjax/serving/batcher.py): until none came for a
      tenth of the last batch's time (at most gap_s), at most max_wait_s.
    max_k: the largest k a query may ask for.
    poll_s: how often the index file is checked for a new version.
  """

  def __init__(self, retriever, *, max_batch=32, max_wait_s=0.05,
               gap_s=0.025, max_k=1000, poll_s=1.0):
    self.retriever = retriever
    self.bits = retriever.bits
    self.max_k = max_k
    self.max_batch = min(max_batch, retriever.batch_sizes[-1])
    self.watcher = snapshot_lib.Watcher(retriever.index_path, poll_s)
    self.started = time.time()
    self.served = collections.Counter()
    self.seconds = collections.Counter()   # spent in each part of batches
    self._add_lock = threading.Lock()
    self._batcher = batcher_lib.Batcher(self._run_batch, self.max_batch,
                                        max_wait_s, gap_s)
    self.watcher.start()

  # -- set-up -----------------------------------------------------------
  def compile(self):
    """Compiles every encode batch shape a batch can take, and the search
    for k <= K_SIZES[0], before the first query."""
    self.retriever.compile(up_to=self.max_batch)
    snap = self.watcher.current
    if len(snap.index):
      for size in sorted({topk.block_for(n)
                          for n in range(1, self.max_batch + 1)}):
        q = np.ones((size, self.bits), np.int8)
        self._rank(snap.codes, q, K_SIZES[0])

  def close(self):
    self._batcher.close()
    self.watcher.stop()

  # -- queries --------------------------------------------------------------
  def prepare(self, data):
    """An uploaded image file's bytes -> network input; QueryError (400)
    naming what is wrong with a non-image or truncated file."""
    try:
      return self.retriever.prepare(data)
    except ValueError as e:
      raise QueryError(f'The upload is not a readable image: '
                       f'{str(e).rstrip(".")}. Send a '
                       'JPEG, PNG, GIF, BMP or TIFF file.') from None

  def search(self, query):
    """Answers one query (blocks): an Answer, or raises QueryError."""
    return self.submit(query).result()

  def submit(self, query):
    """Checks `query` now (QueryError) and queues it for the next batch: a
    concurrent.futures.Future of its Answer."""
    self._check(query)
    return self._batcher.submit(query)

  def check_options(self, k, label=None, radius=None):
    """QueryError for a k, label filter or radius this index cannot take."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or \
        not 1 <= k <= self.max_k:
      raise QueryError(f'k must be an integer from 1 to {self.max_k}; got '
                       f'{k!r}.', 422)
    if radius is not None and (
        isinstance(radius, bool) or
        not isinstance(radius, (int, np.integer)) or
        not 0 <= radius <= self.bits):
      raise QueryError(f'radius must be an integer from 0 to {self.bits} '
                       f'(the code length); got {radius!r}.', 422)
    names = self.watcher.current.index.class_names
    if label is not None and label not in (names or []):
      raise QueryError(f'Unknown label {label!r}: this index\'s labels are '
                       f'{names or "none (it has no labels)"}.')

  def _check(self, q):
    if q.kind not in ('image', 'id', 'code'):
      raise QueryError(f'Unknown query kind {q.kind!r}.')
    self.check_options(q.k, q.label, q.radius)
    snap = self.watcher.current
    if q.kind == 'code' and (q.code is None or
                             np.shape(q.code) != (self.bits,)):
      raise QueryError(f'A code query needs {self.bits} bits; got shape '
                       f'{np.shape(q.code)}.')
    if q.kind == 'image' and (q.pixels is None or np.ndim(q.pixels) != 3):
      raise QueryError('An image query needs an image.')
    if q.kind == 'id' and q.item_id not in snap.rows_by_id:
      raise QueryError(f'No item with id {q.item_id!r} in the index '
                       f'({len(snap.index):,} items).', 404)

  def _rank(self, packed, q, k):
    """Exact top k (at least; k rounded up to a compiled size, so a new k
    rarely compiles) of codes `q` in `packed`."""
    k = next((b for b in K_SIZES if b >= k), k)
    return topk.search(index_lib.pack(q), packed, k, self.bits,
                       query_block=topk.block_for(len(q)))

  def _run_batch(self, queries, waits):
    """The batch function: one encode for every image query, one search
    per label filter in the batch."""
    snap = self.watcher.current
    t0 = time.perf_counter()
    codes = np.zeros((len(queries), self.bits), np.int8)
    out = [None] * len(queries)
    images = [i for i, q in enumerate(queries) if q.kind == 'image']
    if images:
      codes[images] = self.retriever.encode_prepared(
          np.stack([queries[i].pixels for i in images]))
    query_labels = [None] * len(queries)
    for i, q in enumerate(queries):
      if q.kind == 'code':
        codes[i] = q.code
      elif q.kind == 'id':
        row = snap.rows_by_id.get(q.item_id)
        if row is None:   # gone from a newer index since it was checked
          out[i] = QueryError(f'No item with id {q.item_id!r} in the '
                              'index.', 404)
          continue
        codes[i] = snap.index.codes([row])[0]
        query_labels[i] = snap.index.label_names(row)
    t_encode = time.perf_counter() - t0
    groups = collections.defaultdict(list)
    for i, q in enumerate(queries):
      if out[i] is None:
        groups[q.label].append(i)
    t1 = time.perf_counter()
    for label, members in groups.items():
      if label is None:
        rows_of, packed = None, (snap.codes if len(snap.index) else None)
      else:
        try:
          rows_of, packed = snap.label_rows(label)
        except KeyError:
          for i in members:
            out[i] = QueryError(f'Unknown label {label!r}.')
          continue
      if packed is None:
        dist = np.zeros((len(members), 0), np.int32)
        rows = np.zeros((len(members), 0), np.int64)
      else:
        k = max(queries[i].k for i in members)
        dist, rows = self._rank(packed, codes[members], k)
        if rows_of is not None:
          rows = rows_of[rows]
      for j, i in enumerate(members):
        out[i] = (dist[j], rows[j])
    t_search = time.perf_counter() - t1
    answers = []
    for i, q in enumerate(queries):
      if isinstance(out[i], Exception):
        answers.append(out[i])
        continue
      dist, rows = out[i]
      dist, rows = dist[:q.k], rows[:q.k]
      if q.radius is not None:
        keep = dist <= q.radius
        dist, rows = dist[keep], rows[keep]
      rows = [int(r) for r in rows]
      answers.append(Answer(
          rows=rows, ids=[snap.index.ids[r] for r in rows],
          distances=[int(d) for d in dist],
          labels=[snap.index.label_names(r) for r in rows], code=codes[i],
          query_labels=query_labels[i], index_version=snap.version,
          timing_ms=dict(queue=waits[i] * 1e3, encode=t_encode * 1e3,
                         search=t_search * 1e3, batch=len(queries))))
      self.served[q.kind] += 1
    self.seconds.update(encode=t_encode, search=t_search,
                        answers=time.perf_counter() - t1 - t_search)
    return answers

  # -- the archive ----------------------------------------------------------
  def item(self, row):
    """(id, labels) of index row `row`; QueryError 404 if none."""
    snap = self.watcher.current
    if not 0 <= row < len(snap.index):
      raise QueryError(f'No item at row {row}: the index has '
                       f'{len(snap.index):,} items.', 404)
    return snap.index.ids[row], snap.index.label_names(row)

  def add(self, files, upload_dir, labels=None):
    """Appends uploaded images (a list of (name, bytes)) to the index:
    each is stored in `upload_dir` under its content hash (its id in the
    index), encoded and appended (hashjax/archive/index.py; one writer at
    a time). `labels`: class names, one per file, if the index has labels.
    Returns the new ids."""
    snap = self.watcher.current
    index = snap.index
    if index.labels is not None and (labels is None or
                                     len(labels) != len(files)):
      raise QueryError(f'This index has labels: give one label per image '
                       f'(one of {index.class_names}).')
    if index.labels is None and labels:
      raise QueryError('This index has no labels; add images without them.')
    pixels, ids = [], []
    for name, data in files:
      try:
        pixels.append(self.retriever.prepare(data))
      except ValueError as e:
        raise QueryError(f'{name!r} is not a readable image: '
                         f'{str(e).rstrip(".")}.') from None
      digest = hashlib.sha256(data).hexdigest()[:24]
      suffix = os.path.splitext(name)[1].lower()
      if suffix not in ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.tif',
                        '.tiff'):
        suffix = '.img'
      ids.append(os.path.join(upload_dir, digest + suffix))
    if len(set(ids)) < len(ids) or set(ids) & set(snap.rows_by_id):
      raise QueryError('An uploaded image is already in the index (same '
                       'content).', 409)
    label_rows = None
    if index.labels is not None:
      unknown = sorted(set(labels) - set(index.class_names))
      if unknown:
        raise QueryError(f'Unknown label(s) {unknown}; this index\'s labels '
                         f'are {index.class_names}.')
      label_rows = np.zeros((len(files), len(index.class_names)), np.float32)
      for i, label in enumerate(labels):
        label_rows[i, index.class_names.index(label)] = 1
    with self._add_lock:
      codes = np.concatenate([
          self.retriever.encode_prepared(np.stack(pixels[s:s + 32]))
          for s in range(0, len(pixels), 32)])
      os.makedirs(upload_dir, exist_ok=True)
      for (_, data), path in zip(files, ids):
        if not os.path.exists(path):
          tmp = f'{path}.{os.getpid()}.tmp'
          with open(tmp, 'wb') as f:
            f.write(data)
          os.replace(tmp, path)
      shards.append(self.watcher.path, codes, ids, labels=label_rows,
                    source=index.network())
      self.watcher.check()
    return ids

  def thumbnail(self, row, size=160):
    """JPEG bytes of index row `row`'s image, at most `size` px a side.
    Only ids of the index are read, never a path from a request;
    QueryError 404 for an id that is not an image file here."""
    item_id, _ = self.item(row)
    try:
      return _thumbnail(item_id, os.stat(item_id).st_mtime_ns, size)
    except (OSError, ValueError) as e:
      raise QueryError(f'Item {row} ({item_id!r}) has no readable image '
                       f'file on this server ({type(e).__name__}).',
                       404) from None

  def stats(self):
    snap = self.watcher.current
    index = snap.index
    return dict(
        index=dict(path=os.path.abspath(self.watcher.path),
                   count=len(index), bits=index.bits,
                   labels=index.class_names or [],
                   version=snap.version, loaded_at=snap.loaded_at,
                   reload_error=self.watcher.error),
        run=dict(workdir=index.source.get('workdir'),
                 step=index.source.get('step'),
                 method=index.source.get('method')),
        max_k=self.max_k, served=dict(self.served),
        seconds=dict(self.seconds),
        batching=self._batcher.stats(),
        uptime_s=time.time() - self.started)


@functools.lru_cache(maxsize=4096)
def _thumbnail(path, mtime_ns, size):   # mtime: a changed file is re-read
  del mtime_ns
  with Image.open(path) as im:
    im = im.convert('RGB')
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, 'JPEG', quality=85)
  return buf.getvalue()
