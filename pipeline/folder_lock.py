"""An exclusive, process-held lock on a folder's work (a build, a training run).

A second holder fails at once with a one-line message naming the first one's PID, instead
of deleting or "continuing" its live work. The lock is an advisory `flock` on a small file
holding the PID; the OS releases it when the process dies, so a killed run never leaves a
stale lock. Local file systems only: object stores (`gs://`, `s3://`) have no `flock`, and a
marker file would outlive a killed run and block the next one for good, so on such a path
there is no lock and a one-line warning says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from absl import logging


class FolderLockedError(OSError):
  """Another process holds the lock."""


@contextlib.contextmanager
def exclusive(lock_path: str, busy: str):
  """Holds the lock file `lock_path` for the `with` block.

  Args:
    lock_path: the lock file (created if needed).
    busy: what the holder is doing, e.g. "out/ is being trained"; the error reads
      "{busy} by process PID (lock PATH): wait for it to end or stop it."

  Raises:
    FolderLockedError: another live process holds it.
  """
  if "://" in lock_path:
    logging.warning("No lock on %s (only local folders can be locked): make sure no other "
                    "process does the same work there at the same time.", lock_path)
    yield
    return
  os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
  fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
      raise FolderLockedError(
          f"{busy} by process {holder} (lock {lock_path}): wait for it to end or stop it."
      ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
