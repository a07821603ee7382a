"""Micro-batching (hashjax/serving/batcher.py), with a stand-in batch
function: concurrent requests share batches, a lone one does not wait, and
an error reaches only the callers it belongs to."""
import threading
import time

import pytest

from hashjax.serving import batcher as batcher_lib


def _slow_double(items, waits):
  assert len(waits) == len(items)
  time.sleep(0.02)   # a batch costs time, whatever its size
  return [ValueError(f'bad {x}') if x == 'bad' else 2 * x for x in items]


def test_concurrent_requests_share_batches_and_get_their_own_results():
  b = batcher_lib.Batcher(_slow_double, max_batch=8, max_wait_s=0.05,
                          gap_s=0.01)
  futures = [None] * 40

  def submit(i):
    futures[i] = b.submit(i)

  threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert [f.result(timeout=10) for f in futures] == [2 * i for i in range(40)]
  stats = b.stats()
  assert stats['queries'] == 40
  assert 5 <= stats['batches'] < 40       # at most 8 a batch, and shared
  assert stats['mean_batch'] > 1
  b.close()


def test_a_lone_request_does_not_wait_and_batching_can_be_off():
  b = batcher_lib.Batcher(_slow_double, max_batch=32, max_wait_s=1.0,
                          gap_s=1.0)
  for i in range(3):
    t0 = time.perf_counter()
    assert b.submit(i).result(timeout=10) == 2 * i
    assert time.perf_counter() - t0 < 0.5   # not the 1 s gap
  b.close()
  off = batcher_lib.Batcher(_slow_double, max_batch=1)
  futures = [off.submit(i) for i in range(5)]
  assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6, 8]
  assert off.stats()['batches'] == 5
  off.close()


def test_errors_reach_only_their_callers_and_the_worker_survives():
  calls = []

  def flaky(items, waits):
    del waits
    calls.append(list(items))
    if 'boom' in items:
      raise RuntimeError('the batch failed')
    return _slow_double(items, [0] * len(items))

  b = batcher_lib.Batcher(flaky, max_batch=4, max_wait_s=0.05, gap_s=0.05)
  bad, good = b.submit('bad'), b.submit(3)
  with pytest.raises(ValueError, match='bad bad'):
    bad.result(timeout=10)
  assert good.result(timeout=10) == 6
  with pytest.raises(RuntimeError, match='the batch failed'):
    b.submit('boom').result(timeout=10)
  assert b.submit(5).result(timeout=10) == 10   # still serving
  b.close()
  with pytest.raises(RuntimeError, match='closed'):
    b.submit(1)
  with pytest.raises(ValueError, match='max_batch'):
    batcher_lib.Batcher(flaky, max_batch=0)
