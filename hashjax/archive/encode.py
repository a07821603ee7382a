"""Encode an archive into a sharded index (hashjax/archive/shards.py): on
every device and host, resumable, and nothing dropped silently.

The items (a sorted listing) are cut, in order, into shards of
`shard_size`; shard i is written as `encode-<plan>-<i>-of-<n>.hjidx`, where
<plan> is a fingerprint of the item list, the shard size and the network.
A rerun of the same command after a kill or preemption finds the shards
already finished (kept if they verify and hold the planned ids: not
redone), encodes the rest, and only then adds them all to the manifest in
order, with the plan recorded as finished: a reader sees the index before
the encode or after it, never part of it, and a rerun of a finished encode
does nothing. The shards are then compacted (shards.compact: fewer,
bigger shards search faster), each with its multi-index hashing tables.

Under JAX's multi-host runtime every process runs the same command: the
inference pipeline gives each its share of every batch (hashjax/inference.py,
data-parallel over all devices of all hosts), and process 0 decides which
shards are left, writes the shards and the manifest and holds the lock.

An image that cannot be read or decoded is left out of its shard, not
allowed to stop the encode: each is listed with the decoder's error in its
shard's header, in `<out>/unreadable.txt` and in the summary.
"""
import contextlib
import hashlib
import os
import time

import jax
import numpy as np

from hashjax.archive import index as index_lib
from hashjax.archive import shards
from hashjax.data import image_set as image_set_lib


def plan_name(image_set, shard_size, source):
  """The fingerprint of an encode: items, shard size and network."""
  h = hashlib.sha256()
  for key in ('workdir', 'step', 'method', 'bits'):
    h.update(f'{key}={source.get(key)}\n'.encode())
  h.update(f'shard_size={shard_size}\n'.encode())
  for name in image_set.names:
    h.update(name.encode() + b'\n')
  return h.hexdigest()[:10]


def shard_names(plan, count, shard_size):
  n = max(1, -(-count // shard_size))
  return [f'encode-{plan}-{i:05d}-of-{n:05d}{shards.SHARD_SUFFIX}'
          for i in range(n)]


def _finished(path, planned_ids):
  """Whether the shard file `path` is complete and holds `planned_ids`
  (less any listed as unreadable)."""
  if not os.path.exists(path):
    return False
  try:
    shard = index_lib.load(path, verify=True)
  except (index_lib.BadIndexError, ValueError, KeyError):
    return False
  skipped = {u[0] for u in shard.source.get('unreadable', [])}
  return list(shard.ids) == [i for i in planned_ids if i not in skipped]


def _agree(flags):
  """Process 0's bool array, on every process."""
  if jax.process_count() == 1:
    return flags
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.broadcast_one_to_all(flags)).astype(bool)


def _barrier(name):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def encode(encoder, image_set, out, *, source, shard_size=1 << 16,
           append=False, allow_other_network=False, log=print,
           compact_to=1 << 22):
  """Encodes `image_set` into the sharded index directory `out`.

  Args:
    encoder: (image_set, ids, what=, readable=) -> codes [len(ids), bits]
      (hashjax/inference.py `encode`, a run's `encoder()`).
    image_set: the ImageSet to encode (ids = its names).
    out: the index directory (created; with append, added to).
    source: the network that makes the codes (workdir, step, method, bits).
    shard_size: items per shard (the unit of resumption).
    log: where progress lines go (process 0 only).
    compact_to: once all are written and listed, the shards are merged
      into shards of up to this many codes (shards.compact).

  Returns:
    A summary dict: codes, shards (total, encoded now, kept), unreadable
    [(id, error)], seconds, images_per_s.
  """
  out = os.fspath(out)
  main = jax.process_index() == 0
  say = log if main else (lambda *a, **k: None)
  labels = image_set.labels if image_set.class_names else None
  names = image_set.class_names or None
  ids = list(image_set.names)
  plan = plan_name(image_set, shard_size, source)
  files = shard_names(plan, len(ids), shard_size)
  if os.path.exists(shards.manifest_path(out)):
    if plan in shards.read_manifest(out).get('encodes', []):
      # this very encode finished before
      say(f'{out} already holds these {len(ids):,} images (encode {plan} '
          'finished): nothing to do')
      return dict(shards=len(files), encoded_shards=0,
                  kept_shards=len(files), seconds=0.0, images_per_s=0.0,
                  codes=len(shards.load(out, verify=False)),
                  unreadable=_unreadable_listed(out, plan))
    if not append:
      raise ValueError(f'{out!r} already holds an index: add to it with '
                       '--append, or choose another --out.')
    old = shards.load(out, verify=False)
    _, labels = index_lib.check_addition(   # labels onto the index's classes
        old, np.zeros((0, old.bits), np.int8), ids, labels, source, names,
        allow_other_network)
    names = old.class_names
  elif append:
    raise FileNotFoundError(f'--append: no index at {out!r} yet; build it '
                            'first (the same command without --append).')
  spans = [(i * shard_size, min(len(ids), (i + 1) * shard_size))
           for i in range(len(files))]
  lock = shards.hold(out) if main else contextlib.nullcontext()
  with lock:
    done = np.array([main and _finished(os.path.join(out, f), ids[a:b])
                     for f, (a, b) in zip(files, spans)])
    done = _agree(done)
    todo = [i for i in range(len(files)) if not done[i]]
    total = sum(spans[i][1] - spans[i][0] for i in todo)
    say(f'encoding {len(ids):,} images into {out}: {len(files)} shard(s) of '
        f'up to {shard_size:,}; {len(files) - len(todo)} already done, '
        f'{total:,} images to encode')
    t0, encoded = time.time(), 0
    for n, i in enumerate(todo, 1):
      a, b = spans[i]
      readable = np.zeros(b - a, bool)
      c = encoder(image_set, np.arange(a, b),
                  what=f'shard {i + 1}/{len(files)}', readable=readable)
      if main:
        _write_shard(os.path.join(out, files[i]), image_set, a, b, c,
                     readable, labels, names, dict(source, plan=plan,
                                                   shard=i))
      encoded += b - a
      rate = encoded / max(time.time() - t0, 1e-9)
      say(f'shard {i + 1}/{len(files)} written: {int(readable.sum()):,} '
          f'codes, {int((~readable).sum())} unreadable; {encoded:,}/'
          f'{total:,} images, {rate:.1f} img/s, ETA '
          f'{(total - encoded) / max(rate, 1e-9):.0f}s')
    _barrier(f'hashjax encode {plan} shards written')
    summary = dict(shards=len(files), encoded_shards=len(todo),
                   kept_shards=len(files) - len(todo),
                   seconds=time.time() - t0,
                   images_per_s=encoded / max(time.time() - t0, 1e-9))
    if main:
      bad = _unreadable(out, files)
      _list_unreadable(out, plan, bad)
      shards.commit(out, files, bits=source['bits'], class_names=names,
                    source=source, expected=len(ids), plan=plan)
      if len(files) > 1:   # fewer, bigger shards search faster
        shards.compact_held(out, compact_to)
      summary.update(codes=len(shards.load(out, verify=False)),
                     unreadable=bad)
  _barrier(f'hashjax encode {plan} committed')
  return summary


def _unreadable_listed(out, plan):
  path = os.path.join(out, 'unreadable.txt')
  if not os.path.exists(path):
    return []
  bad, mine = [], False
  for line in open(path):
    if line.startswith('# encode '):
      mine = line.startswith(f'# encode {plan}:')
    elif mine and '\t' in line:
      bad.append(tuple(line.rstrip('\n').split('\t', 1)))
  return bad


def _unreadable(out, files):
  bad = []
  for f in files:
    shard = index_lib.load(os.path.join(out, f), verify=False)
    bad += [tuple(u) for u in shard.source.get('unreadable', [])]
  return bad


def _write_shard(path, image_set, a, b, c, readable, labels, names, source):
  bad = np.flatnonzero(~readable)
  source['unreadable'] = [
      [image_set.names[a + j],
       image_set_lib.check_image(image_set.paths[a + j]) or
       'unreadable while encoding (decodes now: changed during the encode?)']
      for j in bad]
  keep = np.flatnonzero(readable)
  index_lib._write(  # pylint: disable=protected-access
      path, c[keep], [image_set.names[a + j] for j in keep],
      labels=None if labels is None else labels[a:b][keep],
      class_names=names, source=source, packed=None, bits=None)


def _list_unreadable(out, plan, bad):
  """Rewrites out/unreadable.txt with this encode's section (replacing one
  left by an earlier, interrupted run of it)."""
  path = os.path.join(out, 'unreadable.txt')
  kept, mine = [], False
  if os.path.exists(path):
    for line in open(path):
      if line.startswith('# encode '):
        mine = line.startswith(f'# encode {plan}:')
      if not mine:
        kept.append(line)
  kept += [f'# encode {plan}: {len(bad)} unreadable image(s), left out of '
           'the index\n'] + [f'{name}\t{error}\n' for name, error in bad]
  with open(path + '.tmp', 'w') as f:
    f.writelines(kept)
  os.replace(path + '.tmp', path)
