"""Threads for the compiled (numba, nogil) search kernels: one per CPU this
process may use, shared by every search in the process. A kernel call that
releases the GIL runs truly in parallel on them; calls from several threads
at once (a service) share the pool safely."""
import concurrent.futures
import os

_POOL = None


def threads():
  """Threads the kernels run on: the CPUs this process may use."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:
    return max(1, os.cpu_count() or 1)


def pool():
  global _POOL
  if _POOL is None:
    _POOL = concurrent.futures.ThreadPoolExecutor(threads())
  return _POOL


def run_split(fn, total, pieces=None):
  """Calls fn(lo, hi) over `pieces` (default: threads()) contiguous ranges
  of range(total), on the pool (the calling thread runs a single range
  itself), and waits for all; an exception in any is raised."""
  pieces = max(1, min(total, pieces or threads()))
  bounds = [total * t // pieces for t in range(pieces + 1)]
  ranges = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
  if len(ranges) == 1:
    fn(*ranges[0])
    return
  for job in [pool().submit(fn, lo, hi) for lo, hi in ranges]:
    job.result()
