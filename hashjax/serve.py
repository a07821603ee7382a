r"""Serve an index: an HTTP API and a search page, answering in milliseconds.

  pip install -e ".[serve]"
  python -m hashjax.serve --index=runs/rsscn7.hjidx [--workdir=RUN] \
      [--port=8000] [--host=127.0.0.1]

Loads the run's network (at the checkpoint step that made the index's
codes) and the index once, compiles every batch shape once, then serves
(hashjax/serving/app.py lists the routes; the schema is at /docs). Queries
that arrive together are encoded and searched as one batch
(--max_batch, --gap_ms, --max_wait_ms; --max_batch=1 turns that off).
The index may grow while served: `python -m hashjax.search ... --append`
from another process, or POST /api/items with --upload_dir; queries see the
new index once it is complete (hashjax/serving/snapshot.py).

Binds 127.0.0.1 (this machine only) unless --host says otherwise.
"""
import gc
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging


def main(argv):
  if len(argv) > 1:
    sys.exit(f'hashjax.serve: unexpected arguments {argv[1:]}.')
  if not _INDEX.value:
    sys.exit('hashjax.serve: give --index=FILE (build one with python -m '
             'hashjax.search --workdir=RUN --out=FILE).')
  try:
    import fastapi  # pylint: disable=g-import-not-at-top,unused-import
    import uvicorn  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    sys.exit(f'hashjax.serve needs the serve extra ({e}): pip install -e '
             '".[serve]"')
  logging.set_verbosity(logging.WARNING)
  from hashjax import retriever  # pylint: disable=g-import-not-at-top
  from hashjax.serving import app as app_lib  # pylint: disable=g-import-not-at-top
  from hashjax.serving import engine as engine_lib  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  try:
    r = retriever.Retriever.load(_WORKDIR.value, index=_INDEX.value)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'hashjax.serve: error: {e}')
  engine = engine_lib.Engine(r, max_batch=_MAX_BATCH.value,
                             max_wait_s=_MAX_WAIT_MS.value / 1e3,
                             gap_s=_GAP_MS.value / 1e3,
                             max_k=_MAX_K.value, poll_s=_POLL_S.value)
  t1 = time.perf_counter()
  engine.compile()
  t2 = time.perf_counter()
  # Start-up made millions of long-lived objects (TF, JAX, the index); a
  # full collection walking them all stalls every query for 0.3-0.6 s.
  gc.collect()
  gc.freeze()
  web = app_lib.create_app(
      engine, max_upload_bytes=int(_MAX_UPLOAD_MB.value * (1 << 20)),
      upload_dir=_UPLOAD_DIR.value)
  snap = engine.watcher.current
  print(f'hashjax.serve: {len(snap.index):,} codes of {r.bits} bits from '
        f'{snap.index.source.get("workdir")} (step '
        f'{snap.index.source.get("step")}); loaded in {t1 - t0:.1f}s, '
        f'compiled in {t2 - t1:.1f}s; max_batch {engine.max_batch}', flush=True)
  print(f'hashjax.serve: http://{_HOST.value}:{_PORT.value}/ (API schema: '
        '/docs)', flush=True)
  try:
    uvicorn.run(web, host=_HOST.value, port=_PORT.value, log_level='warning',
                access_log=False)
  finally:
    engine.close()


def _define_flags():
  """The command's flags, defined only when run as a program (importing
  hashjax.serve beside hashjax.main defines no flag twice)."""
  global _INDEX, _WORKDIR, _HOST, _PORT, _MAX_BATCH, _MAX_WAIT_MS, _GAP_MS  # pylint: disable=global-statement
  global _MAX_K, _MAX_UPLOAD_MB, _UPLOAD_DIR, _POLL_S  # pylint: disable=global-statement
  _INDEX = flags.DEFINE_string('index', None, 'The index file to serve.')
  _WORKDIR = flags.DEFINE_string(
      'workdir', None, "The trained run (default: the index's own).")
  _HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to bind; '
                              '0.0.0.0 serves other machines too.')
  _PORT = flags.DEFINE_integer('port', 8000, 'Port.')
  _MAX_BATCH = flags.DEFINE_integer(
      'max_batch', 32, 'Most queries encoded and searched together '
      '(1: no micro-batching).')
  _MAX_WAIT_MS = flags.DEFINE_float(
      'max_wait_ms', 50.0, 'The longest a batch waits for more queries.')
  _GAP_MS = flags.DEFINE_float(
      'gap_ms', 25.0, 'A batch starts once no new query came for this long.')
  _MAX_K = flags.DEFINE_integer('max_k', 1000, 'The largest k a query may ask.')
  _MAX_UPLOAD_MB = flags.DEFINE_float('max_upload_mb', 10.0,
                                      'Largest request body (an upload), MB.')
  _UPLOAD_DIR = flags.DEFINE_string(
      'upload_dir', None, 'Accept new items (POST /api/items) and store their '
      'images here. Off by default.')
  _POLL_S = flags.DEFINE_float('poll_s', 1.0,
                               'How often to look for a new index version.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
