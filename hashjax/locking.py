"""One writer at a time: an advisory lock file next to what is written.

`hold(path, what)` takes an exclusive `flock` on `<path>.lock` for the
duration of a `with` block. The kernel releases it when the process exits
or crashes, so a killed writer never leaves a stale lock. A second writer
gets an error naming the holder (host, pid, command) instead of waiting or
corrupting the file.
"""
import contextlib
import fcntl
import json
import os
import socket
import sys


class LockedError(RuntimeError):
  """Someone else is writing `path`."""


@contextlib.contextmanager
def hold(path, what):
  """Holds the lock of `path` ('a workdir', 'an index': `what`)."""
  lock_path = os.fspath(path) + '.lock'
  parent = os.path.dirname(os.path.abspath(lock_path))
  os.makedirs(parent, exist_ok=True)
  fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode(errors='replace').strip()
      try:
        h = json.loads(holder)
        holder = f'pid {h["pid"]} on {h["host"]} ({h["command"]})'
      except (ValueError, KeyError, TypeError):
        holder = 'another process'
      raise LockedError(
          f'{what} {os.fspath(path)!r} is being written by {holder}. Wait for '
          'it to finish, or stop it first.') from None
    info = json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                           command=' '.join(sys.argv)[:300]))
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)
    yield
  finally:
    os.close(fd)   # releases the lock
