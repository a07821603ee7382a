"""Micro-batching: many callers' requests, one call of a batch function.

Concurrent callers `submit` items and get futures. One worker thread takes
every item that is waiting and, when there is company (more than one item
now, or in the last batch), keeps taking items while they keep coming:
until none came for a gap, or `max_wait_s` passed, or it has `max_batch`.
The gap is a tenth of what the last batch took, at most `gap_s`, so waiting
costs at most about a tenth of the work it saves. Then it calls
`fn(items, waits)` once (`waits`: the seconds each item queued) and
resolves each future with its result. While a batch runs the next one
queues, and the clients answered by the last batch are collected as their
next requests come in: under load the batch fills by itself, and a lone
request does not wait at all.
`max_batch=1` switches batching off (one call per request), for comparison.

`fn` returns one result per item; a result that is an Exception is raised
to that caller only. If `fn` itself raises, every caller of that batch gets
the error and the worker goes on with the next batch.
"""
import collections
import concurrent.futures
import queue
import threading
import time


class Batcher:
  """See the module doc. `stats()` counts batches and their sizes."""

  def __init__(self, fn, max_batch=32, max_wait_s=0.05, gap_s=0.025):
    if max_batch < 1:
      raise ValueError(f'max_batch must be >= 1, got {max_batch}.')
    self.fn, self.max_batch = fn, max_batch
    self.max_wait_s, self.gap_s = max_wait_s, min(gap_s, max_wait_s)
    self._queue = queue.Queue()
    self._sizes = collections.Counter()
    self._busy_s = self._idle_s = 0.0   # in fn; waiting for a batch
    self._last = time.perf_counter()
    self._last_batch_s, self._last_size = 0.0, 0
    self._closed = False
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='micro-batcher')
    self._thread.start()

  def submit(self, item):
    """A concurrent.futures.Future of `fn`'s result for `item`."""
    if self._closed:
      raise RuntimeError('The batcher is closed.')
    future = concurrent.futures.Future()
    self._queue.put((item, future, time.perf_counter()))
    return future

  def _take(self):
    first = self._queue.get()
    if first is None:
      return None
    jobs = [first]
    deadline = time.perf_counter() + self.max_wait_s
    gap = min(self.gap_s, 0.1 * self._last_batch_s)
    while len(jobs) < self.max_batch:
      try:   # everything already waiting, then while more keep coming
        job = self._queue.get_nowait()
      except queue.Empty:
        if len(jobs) == 1 and self._last_size <= 1:
          break   # alone: no reason to wait
        left = min(deadline - time.perf_counter(), gap)
        if left <= 0:
          break
        try:
          job = self._queue.get(timeout=left)
        except queue.Empty:
          break
      if job is None:
        self._queue.put(None)   # stop after this batch
        break
      jobs.append(job)
    return jobs

  def _run(self):
    while True:
      jobs = self._take()
      if jobs is None:
        return
      self._sizes[len(jobs)] += 1
      start = time.perf_counter()
      self._idle_s += start - self._last
      try:
        results = self.fn([item for item, _, _ in jobs],
                          [start - t for _, _, t in jobs])
        if len(results) != len(jobs):
          raise RuntimeError(f'batch function returned {len(results)} '
                             f'results for {len(jobs)} items')
      except Exception as e:  # pylint: disable=broad-except
        results = [e] * len(jobs)
      for (_, future, _), result in zip(jobs, results):
        if isinstance(result, Exception):
          future.set_exception(result)
        else:
          future.set_result(result)
      self._last = time.perf_counter()
      self._busy_s += self._last - start
      self._last_batch_s, self._last_size = self._last - start, len(jobs)

  def stats(self):
    batches = sum(self._sizes.values())
    items = sum(size * n for size, n in self._sizes.items())
    return dict(max_batch=self.max_batch,
                max_wait_ms=self.max_wait_s * 1e3, gap_ms=self.gap_s * 1e3,
                batches=batches, busy_s=self._busy_s,
                idle_s=self._idle_s,
                queries=items, mean_batch=items / batches if batches else 0.0,
                waiting=self._queue.qsize())

  def close(self):
    self._closed = True
    self._queue.put(None)
    self._thread.join()
