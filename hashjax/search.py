r"""Search an archive by image: build a packed index, query it, see results.

Build an index from a trained run (its database: the learned codes V for
AHCL/DGSSH, the network's codes of the database images otherwise):

  python -m hashjax.search --workdir=runs/ahcl_64b_xxxx --out=archive.hjidx

Encode another image folder (<class>/<image>, labels from the folders; a
flat folder of images gives an index without labels) or
a TFDS split (--images=tfds:NAME[:SPLIT] --tfds_data_dir=DIR) into a new
index, or add it to an existing one without re-encoding the old codes:

  python -m hashjax.search --workdir=RUN --images=DIR --out=archive.hjidx
  python -m hashjax.search --workdir=RUN --images=NEW_DIR --out=archive.hjidx \
      --append

An --out folder (or a new path without .hjidx) makes a sharded index for
large archives: encoded on every device and host, shard by shard, resumable
(rerun the same command), unreadable images listed in DIR/unreadable.txt
(hashjax/archive/encode.py, docs/archive.md); --index=DIR --compact merges
small shards:

  python -m hashjax.search --workdir=RUN --images=ROOT_OR_LIST --out=DIR

Query (an image, a folder of images, or a .txt list of paths); the queries
are encoded with the network of the run that built the index:

  python -m hashjax.search --index=archive.hjidx --query=img.jpg [--k=20] \
      [--report=out.html|out.png]

Prints rank, Hamming distance, id and label per result (--radius=R: every
item within R instead of the k nearest). With labels in the index and a
query inside a folder named after a class, results are marked relevant
(shares the class) or not. The ranking is exact, ties by index, as in
evaluation: the flat scan or multi-index hashing (--algorithm=auto|flat|mih,
hashjax/archive/exact.py).
"""
import os
import pathlib
import sys
import time

_T_START = time.perf_counter()

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import numpy as np

from hashjax import locking
from hashjax.archive import report

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff')


def _encode(run, image_set, ids=None):
  """±1 codes of the images `ids` (all by default) of `image_set`, with the
  run's network."""
  return run.encoder()(image_set,
                       np.arange(len(image_set)) if ids is None else ids)


def image_source(spec, tfds_data_dir=''):
  """A <class>/<image> folder, or 'tfds:NAME[:SPLIT]' (a TFDS dataset
  prepared in tfds_data_dir), as an ImageSet."""
  from hashjax.data import sources  # pylint: disable=g-import-not-at-top
  if spec.startswith('tfds:'):
    name, _, split = spec[len('tfds:'):].partition(':')
    from hashjax.data import tfds_export  # pylint: disable=g-import-not-at-top
    return tfds_export.from_tfds(name, split or 'train', tfds_data_dir)
  return sources.for_indexing(spec)


def _database(run):
  """The run's database (run.json) as an ImageSet: ids are file paths."""
  from hashjax.data import image_set as image_set_lib  # pylint: disable=g-import-not-at-top
  db = run.info['database']
  return image_set_lib.ImageSet(np.asarray(db['paths']), list(db['ids']),
                                db['labels'], list(run.class_names))


def build(workdir, out, images=None, append=False, tfds_data_dir='',
          allow_other_network=False, shard_size=None, log=print):
  """Writes (or extends) an index; returns the Index (or ShardedIndex).

  `out` a directory (or a new path without .hjidx) makes a sharded index:
  images are then encoded shard by shard, resumably, on every device and
  host (hashjax/archive/encode.py)."""
  from hashjax import restore  # pylint: disable=g-import-not-at-top
  from hashjax.archive import index  # pylint: disable=g-import-not-at-top
  from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
  run = restore.load(workdir)
  source = dict(workdir=os.path.abspath(workdir), step=run.step,
                method=run.config.method, bits=run.config.bits)
  sharded = shards.is_sharded(out)
  if images and sharded and not images.startswith('tfds:'):
    from hashjax.archive import encode  # pylint: disable=g-import-not-at-top
    from hashjax.data import sources  # pylint: disable=g-import-not-at-top
    source['images'] = images
    summary = encode.encode(run.encoder(), sources.for_archive(images), out,
                            source=source, shard_size=shard_size or 1 << 16,
                            append=append,
                            allow_other_network=allow_other_network, log=log)
    if summary.get('unreadable'):
      log(f'{len(summary["unreadable"])} unreadable image(s) left out, '
          f'listed in {os.path.join(out, "unreadable.txt")}')
    return shards.load(out, verify=False)
  if images:
    image_set = image_source(images, tfds_data_dir)
    source['images'] = (images if images.startswith('tfds:')
                        else os.path.abspath(images))
    c = _encode(run, image_set)
  else:
    image_set = _database(run)
    if run.method.DATABASE_CODES == 'bank':
      c = run.database_codes()
      source['codes'] = 'learned database codes (V)'
    else:
      c = _encode(run, image_set)
      source['codes'] = 'network codes of the database images'
  ids, labels, names = (list(image_set.paths), image_set.labels,
                        image_set.class_names)
  if not names:          # a flat folder: an index without labels.
    labels = names = None
  if append:
    return shards.append(out, c, ids, labels=labels, source=source,
                         class_names=names,
                         allow_other_network=allow_other_network)
  if sharded:
    return shards.save(out, c, ids, labels=labels, class_names=names,
                       source=source)
  index.save(out, c, ids, labels=labels, class_names=names, source=source)
  return index.load(out, verify=False)   # just written


def query_paths(query):
  """An image, a folder (recursive) or a .txt list -> list of paths."""
  p = pathlib.Path(query)
  if p.is_dir():
    paths = sorted(str(f) for f in p.rglob('*')
                   if f.suffix.lower() in IMAGE_SUFFIXES)
  elif p.suffix.lower() == '.txt' and p.is_file():
    paths = [l.strip() for l in p.read_text().splitlines() if l.strip()]
  elif p.is_file():
    paths = [str(p)]
  else:
    raise FileNotFoundError(f'No query image, folder or list at {query!r}.')
  if not paths:
    raise ValueError(f'No images ({", ".join(IMAGE_SUFFIXES)}) in {query!r}.')
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'Query image {path!r} does not exist.')
  return paths


def search(index_path, queries, k=20, workdir=None, timing=None,
           algorithm='auto', radius=None):
  """Encodes the query images and ranks the index (the k nearest, or with
  `radius` every item within that Hamming distance) by `algorithm`:
  'flat', 'mih' (multi-index hashing) or 'auto' (hashjax/archive/exact.py).

  The queries are encoded with the network of the run and checkpoint step
  that made the index's codes (or an error naming both).

  Args:
    timing: a dict that receives the seconds spent to restore the run,
      compile the encoder, encode the queries and rank the index.

  Returns (Index, paths, query labels [Q] (class index or -1), distances
  [Q, k], indices [Q, k]); with radius, distances and indices are lists of
  one array per query.
  """
  timing = {} if timing is None else timing
  t0 = time.perf_counter()
  from hashjax import restore  # pylint: disable=g-import-not-at-top
  from hashjax.archive import index as index_lib  # pylint: disable=g-import-not-at-top
  from hashjax.archive import exact  # pylint: disable=g-import-not-at-top
  from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
  from hashjax.data import image_set as image_set_lib  # pylint: disable=g-import-not-at-top
  timing['import'] = time.perf_counter() - t0
  t0 = time.perf_counter()
  idx = shards.load(index_path, lazy=True)   # codes only; ids as needed
  workdir = workdir or idx.source.get('workdir')
  if not workdir:
    raise ValueError(f'{index_path!r} does not name the run that built it; '
                     'pass --workdir=RUN.')
  step = idx.source.get('step')
  try:
    run = restore.load(workdir, step=step)
  except FileNotFoundError as e:
    if step is None or 'at step' not in str(e):
      raise
    raise FileNotFoundError(
        f'The codes of {index_path!r} were made by {workdir!r} at step '
        f'{step}, and that checkpoint is gone: {e} Rebuild the index.') from e
  if run.config.bits != idx.bits:
    raise ValueError(f'{workdir!r} makes {run.config.bits}-bit codes; the '
                     f'index holds {idx.bits}-bit codes.')
  timing['restore'] = time.perf_counter() - t0
  paths = query_paths(queries)
  names = idx.class_names or []
  q_labels = np.array([names.index(pathlib.Path(p).parent.name)
                       if pathlib.Path(p).parent.name in names else -1
                       for p in paths])
  image_set = image_set_lib.ImageSet(np.array(paths), list(paths),
                                     np.zeros((len(paths), 1), np.float32),
                                     ['?'])
  image_set_lib.check_decodable(image_set.paths)
  encode = run.encoder()
  t0 = time.perf_counter()
  encode(image_set, np.arange(1))   # compiles (a batch of one image).
  timing['compile'] = time.perf_counter() - t0
  t0 = time.perf_counter()
  q = encode(image_set, np.arange(len(paths)))
  timing['encode'] = time.perf_counter() - t0
  t0 = time.perf_counter()
  if radius is None:
    dist, ids = exact.nearest(idx, index_lib.pack(q), k, algorithm)
  else:
    found = exact.within(idx, index_lib.pack(q), radius, algorithm)
    dist, ids = [d for d, _ in found], [i for _, i in found]
  timing['search'] = time.perf_counter() - t0
  return idx, paths, q_labels, dist, ids


def main(argv):
  if len(argv) > 1:
    sys.exit(f'hashjax.search: unexpected arguments {argv[1:]}.')
  logging.set_verbosity(logging.WARNING)
  try:
    if _OUT.value:
      if not _WORKDIR.value:
        sys.exit('hashjax.search: building an index needs --workdir=RUN.')
      from hashjax import parallel  # pylint: disable=g-import-not-at-top
      parallel.initialize_distributed()
      idx = build(_WORKDIR.value, _OUT.value, _IMAGES.value, _APPEND.value,
                  _TFDS_DATA_DIR.value, _ALLOW_OTHER.value, _SHARD_SIZE.value)
      print(f'index {_OUT.value}: {len(idx):,} codes of {idx.bits} bits '
            f'from {idx.source.get("workdir")}'
            + (f' in {len(idx.shards)} shard(s)' if hasattr(idx, 'shards')
               else ''))
      return
    if _COMPACT.value:
      if not _INDEX.value:
        sys.exit('hashjax.search: --compact needs --index=DIR.')
      from hashjax.archive import shards  # pylint: disable=g-import-not-at-top
      if not os.path.isdir(_INDEX.value):
        sys.exit(f'hashjax.search: --compact: {_INDEX.value!r} is not a '
                 'sharded index (a folder).')
      before, after = shards.compact(_INDEX.value,
                                     _SHARD_SIZE.value or 1 << 22)
      print(f'index {_INDEX.value}: {before} shard(s) -> {after}')
      return
    if _REPORT.value:
      report.check_report_path(_REPORT.value)
    if not (_INDEX.value and _QUERY.value):
      sys.exit('hashjax.search: give --index=FILE --query=IMAGE|DIR|LIST to '
               'search, or --workdir=RUN --out=FILE to build an index.')
    timing = {}
    idx, paths, q_labels, dist, ids = search(
        _INDEX.value, _QUERY.value, _K.value, _WORKDIR.value, timing,
        _ALGORITHM.value, _RADIUS.value)
    report.print_results(idx, paths, q_labels, dist, ids)
    total = time.perf_counter() - _T_START
    print('time: ' + ', '.join(f'{k} {v:.2f}s' for k, v in timing.items())
          + f'; total since start {total:.2f}s')
    if _REPORT.value:
      report.write_report(_REPORT.value, idx, paths, q_labels, dist, ids)
      print(f'report: {_REPORT.value}')
  except (ValueError, FileNotFoundError, locking.LockedError) as e:
    sys.exit(f'hashjax.search: error: {e}')


def _define_flags():
  """The command's flags, defined only when run as a program (so importing
  hashjax.search next to hashjax.convert defines no flag twice)."""
  global _INDEX, _QUERY, _K, _REPORT, _WORKDIR, _OUT, _IMAGES, _APPEND  # pylint: disable=global-statement
  global _TFDS_DATA_DIR, _ALLOW_OTHER, _SHARD_SIZE, _COMPACT  # pylint: disable=global-statement
  global _ALGORITHM, _RADIUS  # pylint: disable=global-statement
  _INDEX = flags.DEFINE_string('index', None, 'Index file to search.')
  _QUERY = flags.DEFINE_string(
      'query', None, 'An image, a folder of images, or a .txt list of paths.')
  _K = flags.DEFINE_integer('k', 20, 'Results per query.')
  _RADIUS = flags.DEFINE_integer(
      'radius', None, 'Instead of the k nearest: every item within this '
      'Hamming distance.')
  _ALGORITHM = flags.DEFINE_enum(
      'algorithm', 'auto', ['auto', 'flat', 'mih'], 'Exact search by the '
      'flat scan, multi-index hashing, or whichever suits the index and k.')
  _REPORT = flags.DEFINE_string(
      'report', None, 'Write a visual report: .html (self-contained) or .png.')
  _WORKDIR = flags.DEFINE_string('workdir', None,
                                 'Trained run (build, or override the '
                                 "index's own run when querying).")
  _OUT = flags.DEFINE_string(
      'out', None, 'Index to write (build): a FILE.hjidx, or a folder for a '
      'sharded index (encoded resumably on every device and host).')
  _SHARD_SIZE = flags.DEFINE_integer(
      'shard_size', None, 'Sharded index: images per shard when encoding '
      '(default 65,536), or codes per shard after --compact (default '
      '4,194,304).')
  _COMPACT = flags.DEFINE_bool(
      'compact', False, 'Merge the small shards of the sharded --index.')
  _IMAGES = flags.DEFINE_string(
      'images', None, 'Build: encode this <class>/<image> folder, or '
      "tfds:NAME[:SPLIT], instead of the run's database.")
  _TFDS_DATA_DIR = flags.DEFINE_string(
      'tfds_data_dir', '', 'TFDS data_dir for --images=tfds:NAME.')
  _APPEND = flags.DEFINE_bool('append', False,
                              'Build: add to the existing --out index.')
  _ALLOW_OTHER = flags.DEFINE_bool(
      'allow_other_network', False,
      '--append: accept codes of another run or checkpoint step than the '
      "index's (their distances to the old codes are meaningless).")


if __name__ == '__main__':
  _define_flags()
  app.run(main)
