"""The index a service answers from: one immutable snapshot at a time,
replaced whole when the index file changes.

Writers replace an index file atomically (hashjax/archive/index.py writes a
new file, then renames it over the old one), so whoever opens the file sees
the old index or the new one, never a partial one. A snapshot keeps its own
memory map open, so a query that started on the old index finishes on it
after the file is replaced. `Watcher` polls the file's identity (inode,
size, modification time) and loads a changed index in the background,
checksums verified, before swapping it in; a file that fails to load leaves
the old snapshot serving and its error in `Watcher.error`.
"""
import functools
import gc
import os
import threading
import time

import numpy as np

from hashjax.archive import shards
from hashjax.archive import topk


def _identity(path):
  st = os.stat(shards.identity_file(path))
  return (st.st_ino, st.st_size, st.st_mtime_ns)


class Snapshot:
  """One loaded index (`index`), numbered `version` (1, 2, ... per load),
  with lookups built on first use."""

  def __init__(self, index, identity, version):
    self.index, self.identity, self.version = index, identity, version
    self.loaded_at = time.time()

  @functools.cached_property
  def rows_by_id(self):
    return {item_id: row for row, item_id in enumerate(self.index.ids)}

  @functools.cached_property
  def codes(self):
    """The packed codes held on the device (hashjax/archive/topk.py
    OnDevice): copied once per version, not per query."""
    return topk.OnDevice(self.index.packed)

  @functools.cached_property
  def _label_rows(self):
    return {}

  def label_rows(self, name):
    """(rows, their codes OnDevice or None if no row) of the items with
    label `name` (KeyError if it is not a class of the index)."""
    names = self.index.class_names or []
    if self.index.labels is None or name not in names:
      raise KeyError(name)
    if name not in self._label_rows:
      rows = np.flatnonzero(self.index.labels[:, names.index(name)] > 0)
      self._label_rows[name] = (rows, topk.OnDevice(
          np.asarray(self.index.packed[rows])) if len(rows) else None)
    return self._label_rows[name]


class Watcher:
  """Keeps `current` (a Snapshot) equal to the index file's latest
  complete version: `check()` reloads when the file changed; `start()`
  checks every `poll_s` seconds on a daemon thread."""

  def __init__(self, path, poll_s=1.0):
    self.path, self.poll_s = path, poll_s
    self.error = None
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None
    self.current = self._load(1)

  def _load(self, version):
    identity = _identity(self.path)   # before reading: a later change reloads
    snap = Snapshot(shards.load(self.path), identity, version)
    snap.rows_by_id, snap.codes   # pylint: disable=pointless-statement  (built here)
    return snap

  def check(self):
    """Loads the file if it changed since `current`; True if swapped."""
    with self._lock:
      try:
        if _identity(self.path) == self.current.identity:
          return False
        snap = self._load(self.current.version + 1)
      except (OSError, ValueError) as e:   # missing, or a BadIndexError
        self.error = f'{type(e).__name__}: {e}'
        return False
      self.error = None
      self.current = snap
    # The new version's objects (ids, lookups) live until the next one:
    # keep the garbage collector from walking them (serve.py does the same
    # after start-up).
    gc.freeze()
    return True

  def _run(self):
    while not self._stop.wait(self.poll_s):
      self.check()

  def start(self):
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='index-watcher')
    self._thread.start()
    return self

  def stop(self):
    self._stop.set()
    if self._thread:
      self._thread.join()
