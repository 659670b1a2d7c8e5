"""Paths on any file system TensorFlow knows: local, `gs://`, `s3://` (with its plugin), `ram://`.

A path with a scheme (`xx://`) goes through `tf.io.gfile`; a local path keeps Python's own
calls, which gfile would weaken: `os.walk(followlinks=...)`, `realpath` for the symlink
check, and nanosecond modification times (gfile's local `stat` rounds them to seconds).
gfile's errors (`tf.errors.OpError`, not `OSError`) become `OSError`s here, so callers catch
one kind of error whatever the path. A local path is opened only if it is a regular file:
opening a named pipe for reading waits for a writer forever, and a device never ends.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import posixpath
import re
import stat as stat_lib
import time
from typing import Optional, Sequence, Union

import tensorflow as tf

from petpipe.images import gil_clock

PathLike = Union[str, os.PathLike]


def is_local(path: PathLike) -> bool:
  """True for a plain path; False for `gs://...`, `s3://...`, `ram://...` and other schemes."""
  return "://" not in os.fspath(path)


def absolute(path: PathLike) -> str:
  """An absolute local path, or a remote one as given (without a trailing slash)."""
  path = os.fspath(path)
  if is_local(path):
    return os.path.abspath(path)
  return path.rstrip("/") if not path.endswith("://") else path


def as_os_error(e: tf.errors.OpError, path: PathLike) -> OSError:
  """A gfile error as the `OSError` a local call would have raised."""
  message = (e.message or "").strip().splitlines()
  if isinstance(e, tf.errors.NotFoundError):
    return FileNotFoundError(errno.ENOENT, message[0] if message else "No such file or directory",
                             os.fspath(path))
  if isinstance(e, tf.errors.PermissionDeniedError):
    return PermissionError(errno.EACCES, message[0] if message else "Permission denied",
                           os.fspath(path))
  return OSError(errno.EIO, message[0] if message else type(e).__name__, os.fspath(path))


class _Reader:
  """A binary gfile stream (read, seek, tell) whose errors are `OSError`s."""

  def __init__(self, path: str):
    self._path = path
    self._f = tf.io.gfile.GFile(path, "rb")

  def _call(self, method, *args):
    try:
      return getattr(self._f, method)(*args)
    except tf.errors.OpError as e:
      raise as_os_error(e, self._path) from None

  def read(self, n: int = -1) -> bytes:
    return self._call("read", n)

  def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
    self._call("seek", offset, whence)
    return self.tell()

  def tell(self) -> int:
    return self._call("tell")

  def seekable(self) -> bool:
    return True

  def readable(self) -> bool:
    return True

  def close(self) -> None:
    self._f.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class NotRegularFileError(OSError):
  """A path that is a named pipe, socket or device: never read (it may block or never end).

  Attributes:
    kind: what it is instead ("named pipe (FIFO)", "socket", "device", "folder").
  """

  def __init__(self, path: PathLike, kind: str):
    super().__init__(errno.EINVAL, f"not a regular file: a {kind}", os.fspath(path))
    self.kind = kind


def kind_of_special(mode: int) -> str:
  """What a path that is not a regular file is, for messages: "named pipe (FIFO)", ..."""
  if stat_lib.S_ISDIR(mode):
    return "folder"
  if stat_lib.S_ISFIFO(mode):
    return "named pipe (FIFO)"
  if stat_lib.S_ISSOCK(mode):
    return "socket"
  if stat_lib.S_ISCHR(mode) or stat_lib.S_ISBLK(mode):
    return "device"
  return "special file"


def open_read(path: PathLike):
  """A seekable binary stream of the file (zipfile and Pillow read these).

  Raises:
    NotRegularFileError: a local path that is a named pipe, socket or device (checked on the
      opened descriptor, so a file swapped for a pipe after listing is refused too).
    OSError: the file cannot be opened.
  """
  path = os.fspath(path)
  if is_local(path):
    # Non-blocking, so that opening a named pipe returns at once instead of waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
      mode = os.fstat(fd).st_mode
      if not stat_lib.S_ISREG(mode):
        raise NotRegularFileError(path, kind_of_special(mode))
      os.set_blocking(fd, True)
      return os.fdopen(fd, "rb")
    except BaseException:
      os.close(fd)
      raise
  reader = _Reader(path)
  reader.tell()  # gfile opens lazily: a missing file fails here, as `open` would
  reader.read(0)
  return reader


def read_local_bounded(path: str, max_bytes: int) -> Optional[bytes]:
  """A local file's bytes, or None if it holds more than `max_bytes` (never read whole then):
  `files.read_bounded` of `open_read` without a Python file object, which cost more than
  the read itself for small pictures. Raises as `open_read` does.

  Its CPU time counts as released (`gil_clock`): it is four system calls, which release the
  GIL, and a few lines around them."""
  start = time.thread_time()
  fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
  try:
    st = os.fstat(fd)
    if not stat_lib.S_ISREG(st.st_mode):
      raise NotRegularFileError(path, kind_of_special(st.st_mode))
    if st.st_size > max_bytes:
      return None
    # One byte more than its size tells a file that grew since: then read on to the limit.
    data = _read_up_to(fd, st.st_size + 1)
    if len(data) > st.st_size:
      data += _read_up_to(fd, max_bytes + 1 - len(data))
    return None if len(data) > max_bytes else data
  finally:
    os.close(fd)
    gil_clock.add_released(time.thread_time() - start)


def _read_up_to(fd: int, n: int) -> bytes:
  """Up to `n` bytes, fewer only at the end of the file."""
  parts, got = [], 0
  while got < n:
    chunk = os.read(fd, n - got)
    if not chunk:
      break
    parts.append(chunk)
    got += len(chunk)
  return parts[0] if len(parts) == 1 else b"".join(parts)


def read_bytes(path: PathLike) -> bytes:
  with open_read(path) as f:
    return f.read()


def stat(path: PathLike) -> tuple[int, int]:
  """(size in bytes, modification time in ns; 0 where the file system keeps none)."""
  path = os.fspath(path)
  if is_local(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
  try:
    st = tf.io.gfile.stat(path)
  except tf.errors.OpError as e:
    raise as_os_error(e, path) from None
  return st.length, st.mtime_nsec


_REMOTE_THREADS = 16  # a remote stat is a network round trip: overlap them


def stats(paths: Sequence[str]) -> list[Optional[tuple[int, int]]]:
  """`stat` of each path, None where it fails; remote ones in parallel threads."""

  def one(path):
    try:
      return stat(path)
    except OSError:
      return None

  if not any(not is_local(p) for p in paths):
    return [one(p) for p in paths]
  with concurrent.futures.ThreadPoolExecutor(_REMOTE_THREADS) as pool:
    return list(pool.map(one, paths))


def isdir(path: PathLike) -> bool:
  path = os.fspath(path)
  return os.path.isdir(path) if is_local(path) else tf.io.gfile.isdir(path)


def isfile(path: PathLike) -> bool:
  path = os.fspath(path)
  if is_local(path):
    return os.path.isfile(path)
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def relative(path: PathLike, root: PathLike) -> str:
  """`path` relative to `root`, with forward slashes (local or remote)."""
  path, root = os.fspath(path), os.fspath(root)
  if is_local(path):
    return os.path.relpath(path, root).replace(os.sep, "/")
  return path[len(root.rstrip("/")):].lstrip("/")


def subdirectories(path: PathLike) -> list[str]:
  """Unsorted names of the folders directly in `path`."""
  path = os.fspath(path)
  if is_local(path):
    return [e.name for e in os.scandir(path) if e.is_dir()]
  try:
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(path)]
  except tf.errors.OpError as e:
    raise as_os_error(e, path) from None
  return [n for n in names if tf.io.gfile.isdir(f"{path.rstrip('/')}/{n}")]




def normpath(path: PathLike) -> str:
  """`os.path.normpath`, keeping a remote path's `scheme://` (normpath would fold its `//`)."""
  path = os.fspath(path)
  if is_local(path):
    return os.path.normpath(path)
  scheme, rest = path.split("://", 1)
  return f"{scheme}://{posixpath.normpath(rest) if rest else ''}"


def escapes_root(name: str) -> bool:
  """Whether a relative name (forward slashes) points outside its root: absolute, a drive
  (`C:`), or up through `..` (zip members and label-file rows are refused for it)."""
  norm = posixpath.normpath(name)
  return (name.startswith("/") or norm == ".." or norm.startswith("../")
          or re.match(r"^[A-Za-z]:", name) is not None)
