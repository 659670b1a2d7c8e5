"""Finding image files: the one extension list, the junk rules, a walk that is safe on messy
folders, and bounded reads.

The builders' sources, the folder loader's index and prediction all find files here, so
they agree on which files are images and which are left out, and why.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import BinaryIO, Iterator, Optional

import tensorflow as tf

from petpipe.images import errors
from petpipe.images import filesystems
from petpipe.images import gil_clock

# The one list of image file extensions (compared in lower case): the formats the project
# decodes. Other files are listed as ignored, never decoded.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")

# Folders that archivers, file managers and operating systems add: never classes.
JUNK_DIRS = frozenset({
    "__MACOSX", "__pycache__", "@eaDir", "$RECYCLE.BIN", "System Volume Information",
})
JUNK_REASON = "junk: hidden or system file, never an image"


def has_image_extension(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_junk(name: str) -> bool:
  """A hidden (`.x`, incl. macOS `._x.jpg`) or system name (`__MACOSX`, ...)."""
  return name.startswith(".") or name in JUNK_DIRS


def is_junk_path(path: str) -> bool:
  """Whether any folder or the file of a relative path (forward slashes) is junk."""
  return any(is_junk(part) for part in path.split("/"))


def is_utf8(name: str) -> bool:
  """False for a name with bytes that are not UTF-8 (Python holds them as surrogates)."""
  try:
    name.encode("utf-8")
  except UnicodeEncodeError:
    return False
  return True


def printable(name: str) -> str:
  """A name with its non-UTF-8 bytes written as `\\xNN`: safe in JSON, records and messages."""
  return os.fsencode(name).decode("utf-8", "backslashreplace") if not is_utf8(name) else name


def not_regular_reason(kind: str) -> str:
  return f"not_a_regular_file: a {kind}, never read"


BAD_NAME = "bad_name: the name is not valid UTF-8, so no record or manifest can hold it; rename it"


def walk(top: str, follow_links: bool = False, left_out: Optional[list] = None,
         visited: Optional[dict] = None) -> Iterator[tuple[str, list[str], list[str]]]:
  """`os.walk` for messy folders: yields (folder, sorted sub-folders, sorted file names),
  top-down (remove names from the sub-folders to skip them).

  Only what can be read as a file is listed: a named pipe, socket or device would block or
  never end, and a symlink that does not resolve has nothing to read. With `follow_links`,
  each real folder is entered once (by device and inode), so a symlink loop or a second
  link to one folder never lists its files twice; without it, symlinked folders are not
  entered. Names that are not valid UTF-8 are not listed. Everything left out is appended
  to `left_out` as (path, reason, is_folder), the path printable (see `printable`).
  `visited` ({(device, inode): path}, see `folder_key`) is shared by walks that must not
  read one folder twice (the class folders of one root). Remote paths (`gs://`, ...) go
  through `tf.io.gfile.walk`: they hold none of these.
  """
  top = os.fspath(top)
  record = left_out.append if left_out is not None else (lambda item: None)
  if not filesystems.is_local(top):
    for dirpath, dirnames, filenames in tf.io.gfile.walk(top):
      dirnames[:] = sorted(d.rstrip("/") for d in dirnames)
      yield dirpath.rstrip("/"), dirnames, sorted(filenames)
    return
  key = folder_key(top)
  if key is None:
    return  # as os.walk: a missing top lists nothing
  visited = {} if visited is None else visited
  visited.setdefault(key, top)
  yield from _walk_local(top, key, follow_links, visited, frozenset(), record)


def folder_key(path: str) -> Optional[tuple[int, int]]:
  """(device, inode) of a local folder (through symlinks), or None if it cannot be read."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_dev, st.st_ino


def _walk_local(path: str, key: tuple, follow_links: bool, seen: dict, ancestors: frozenset,
                record):
  try:
    entries = sorted(os.scandir(path), key=lambda e: e.name)
  except OSError as e:
    record((printable(path), f"unreadable: {errors.one_line(e)}", True))
    return
  dirs, files, keys = [], [], {}
  for entry in entries:
    full = os.path.join(path, printable(entry.name))
    try:
      if not is_utf8(entry.name):
        record((full, BAD_NAME, entry.is_dir()))
      elif entry.is_dir():
        st = entry.stat()
        found = (st.st_dev, st.st_ino)
        if entry.is_symlink() and not follow_links:
          record((full, "not_followed: a symlinked folder; set follow_links to read it", True))
        elif found in seen:
          inside = os.path.join(path, "").startswith(os.path.join(seen[found], ""))
          kind = ("symlink_loop: links back to" if found in ancestors | {key} or inside
                  else "same_folder: already read as")
          record((full, f"{kind} {printable(seen[found])}", True))
        else:
          seen[found] = entry.path
          keys[entry.name] = found
          dirs.append(entry.name)
      elif entry.is_file():
        files.append(entry.name)
      else:
        mode = entry.stat().st_mode  # follows a symlink: a dangling or looping one raises
        record((full, not_regular_reason(filesystems.kind_of_special(mode)), False))
    except OSError as e:
      record((full, f"unreadable: {errors.one_line(e)}", False))
  yield path, dirs, files
  ancestors = ancestors | {key}
  for name in dirs:  # as pruned by the caller
    yield from _walk_local(os.path.join(path, name), keys[name], follow_links, seen, ancestors,
                           record)


_READ_CHUNK = 1 << 20


def sha256_hex(data: bytes) -> str:
  """sha256 of bytes in memory (hashlib releases the GIL while it hashes a large buffer)."""
  start = time.thread_time()
  digest = hashlib.sha256(data).hexdigest()
  gil_clock.add_released(time.thread_time() - start)
  return digest


def stream_sha256(f: BinaryIO) -> tuple[str, int]:
  """sha256 and size of a binary stream, read in 1 MiB chunks (bounded memory)."""
  h = hashlib.sha256()
  size = 0
  while chunk := f.read(_READ_CHUNK):
    h.update(chunk)
    size += len(chunk)
  return h.hexdigest(), size


def read_bounded(f: BinaryIO, max_bytes: int, size: Optional[int] = None) -> Optional[bytes]:
  """The stream's bytes, or None if it holds more than `max_bytes`: a larger file is never
  read whole. `size` is its size if known (e.g. a remote file's); else the open file's own."""
  if size is None and has_fileno(f):
    # The open file's own size: a second path lookup per file cost more than the read.
    size = os.fstat(f.fileno()).st_size
  if size is not None and size > max_bytes:
    return None
  # One byte more than allowed tells a file that grew past the limit; asking for the known
  # size (not the limit) spares allocating the limit's buffer for every file.
  data = f.read((max_bytes if size is None else size) + 1)
  if size is not None and len(data) > size:
    data += f.read(max_bytes + 1 - len(data))
  return None if len(data) > max_bytes else data


def has_fileno(f) -> bool:
  try:
    f.fileno()
    return True
  except (AttributeError, OSError, io.UnsupportedOperation):
    return False
