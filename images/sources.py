"""Where the images come from: a `root/<class>/**` folder or a zip of one.

A source lists every file under its root (`listing`: candidates with their class folder,
and what it leaves out with a reason) and reads their bytes. Sources hold only paths, so
they pickle to Beam workers and threads.
"""

from __future__ import annotations

import array
import collections.abc
import dataclasses
import hashlib
import os
import posixpath
import struct
import threading
import zipfile
import zlib
from typing import Iterable, Optional, Sequence

from petpipe.images import files
from petpipe.images import filesystems

NOT_IN_CLASS_FOLDER = "not in a class folder"
ALL_PARTS = "*"  # `listing(part)`: the whole listing
ROOT_PART = ""  # `listing(part)`: what sits beside the class folders
NOT_A_CLASS = "folder not in class_names"
JUNK_FOLDER = "junk folder: never a class"
_STAT_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A file found under the root.

  Attributes:
    path: path relative to the source root, with forward slashes.
    class_dir: the class folder it sits in (first path component; "" at the root).
    is_image: whether its extension names an image format; other files
      (Thumbs.db, .DS_Store, notes) are listed as ignored, never decoded.
    ignore_reason: why a file is listed as ignored (junk such as `._x.jpg`, a file outside
      every class folder), when not only its extension says so.
    skip_reason: why a file is skipped without being read (a named pipe, a name that is not
      UTF-8, a zip member whose name escapes the archive or repeats another member's path).
  """

  path: str
  class_dir: str
  is_image: bool
  ignore_reason: str = ""
  skip_reason: str = ""


class CandidateList(collections.abc.Sequence):
  """Candidates packed into flat arrays: about the path's UTF-8 bytes plus 13 bytes a file,
  where a list of `Candidate` objects costs ~300 (a build of 10^8 files lists them all)."""

  def __init__(self, items: Iterable[Candidate] = ()):
    self._paths = bytearray()
    self._ends = array.array("Q")
    self._classes = array.array("I")
    self._is_image = bytearray()
    self._class_dirs: list[str] = []
    self._class_index: dict[str, int] = {}
    self._reasons: dict[int, tuple[str, str]] = {}  # rare: (ignore_reason, skip_reason)
    self.extend(items)

  def append(self, c: Candidate) -> None:
    self._paths += c.path.encode("utf-8", "surrogateescape")
    self._ends.append(len(self._paths))
    index = self._class_index.get(c.class_dir)
    if index is None:
      index = self._class_index[c.class_dir] = len(self._class_dirs)
      self._class_dirs.append(c.class_dir)
    self._classes.append(index)
    self._is_image.append(bool(c.is_image))
    if c.ignore_reason or c.skip_reason:
      self._reasons[len(self._ends) - 1] = (c.ignore_reason, c.skip_reason)

  def extend(self, items: Iterable[Candidate]) -> None:
    for c in items:
      self.append(c)

  def __len__(self) -> int:
    return len(self._ends)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    if i < 0:
      i += len(self)
    if not 0 <= i < len(self):
      raise IndexError(i)
    start = self._ends[i - 1] if i else 0
    path = self._paths[start:self._ends[i]].decode("utf-8", "surrogateescape")
    ignore, skip = self._reasons.get(i, ("", ""))
    return Candidate(path, self._class_dirs[self._classes[i]], bool(self._is_image[i]), ignore, skip)

  def __iter__(self):
    return (self[i] for i in range(len(self)))

  def __eq__(self, other) -> bool:
    return isinstance(other, collections.abc.Sequence) and list(self) == list(other)

  def __repr__(self) -> str:
    return f"CandidateList({len(self)} files)"


@dataclasses.dataclass
class Listing:
  """What a source holds: every file found, and the folders it does not read.

  Attributes:
    candidates: every file under the root, in path order (images, other files, and files
      left out with a reason); a `CandidateList`.
    ignored_folders: (folder path relative to the root, ending in "/", reason) of folders
      never read: junk (`__MACOSX/`), folders outside `class_names`, symlink loops.
  """

  candidates: list
  ignored_folders: list


class SourceError(OSError):
  """A file of the source cannot be read; the message is the manifest's reason."""


def candidate(rel: str, class_dir: str) -> Candidate:
  """The candidate for a file at `rel` (relative, forward slashes) in `class_dir`."""
  inner = rel.split("/")[1:]
  is_image = files.has_image_extension(rel)
  if is_image and any(files.is_junk(part) for part in inner):  # `._x.jpg`, `.thumbnails/x.jpg`
    return Candidate(rel, class_dir, False, ignore_reason=files.JUNK_REASON)
  return Candidate(rel, class_dir, is_image)


def top_level(names: Iterable[str], folders: Iterable[str], class_dirs: Sequence[str]):
  """(candidates, ignored folders) for what sits directly in a root beside the class folders:
  its files are never images of a class, and its other folders are never read."""
  found = [Candidate(name, "", False, ignore_reason=NOT_IN_CLASS_FOLDER) for name in sorted(names)]
  ignored = []
  for name in sorted(folders):
    if files.is_junk(name):
      ignored.append((f"{name}/", JUNK_FOLDER))
    elif name not in class_dirs:
      ignored.append((f"{name}/", NOT_A_CLASS))
  return found, ignored


# Folders whose real path a FolderSource keeps (a few MB at most).
_REAL_DIRS_KEPT = 4096


class FolderSource:
  """Files under `root/<class_dir>/**`: local, mounted, or any file system TensorFlow knows
  (`gs://`, `s3://`, `ram://`, through `tf.io.gfile`)."""

  def __init__(self, root: str, class_dirs: Sequence[str], follow_links: bool = False):
    self.root = filesystems.absolute(root)
    self.class_dirs = tuple(class_dirs)
    self.follow_links = follow_links
    # Resolved once: each realpath costs an lstat per path part, and every read checks it.
    self._real_root = os.path.realpath(self.root)
    self._real_root_prefix = os.path.join(self._real_root, "")
    self._real_dirs = {}  # folder -> whether it is inside the root: one realpath a folder

  def __repr__(self) -> str:
    return f"FolderSource({self.root!r})"

  def __getstate__(self):  # what a Beam worker needs, not this process's caches
    return {"root": self.root, "class_dirs": self.class_dirs, "follow_links": self.follow_links}

  def __setstate__(self, state):
    self.__init__(**state)

  def listing_parts(self) -> list[str]:
    """Names of parts whose `listing(part)`s, in this order, make up the whole listing: one
    per class folder and `ROOT_PART` (what sits beside them), so a cluster lists the class
    folders in parallel. With `follow_links` one part: a folder linked from two class
    folders is read once, under the first."""
    if self.follow_links:
      return [ALL_PARTS]
    return [*self.class_dirs, ROOT_PART]

  def listing(self, part: str = ALL_PARTS) -> Listing:
    """Every file of the class folders (walked as `files.walk` does: special files, names
    that are not UTF-8 and symlink loops are left out with a reason), the files beside the
    class folders (ignored), and the folders not read; of one part only (`listing_parts`)."""
    found, ignored = CandidateList(), []
    # Each real folder is read once, under one class: a link to the root or to another
    # class folder is never followed (`files.walk`).
    visited = {}
    for top in (self.root, *(os.path.join(self.root, c) for c in self.class_dirs)):
      if filesystems.is_local(top) and (key := files.folder_key(top)) is not None:
        visited.setdefault(key, top)
    for class_dir in self.class_dirs if part == ALL_PARTS else [part] if part != ROOT_PART else []:
      left_out = []
      top = os.path.join(self.root, class_dir)
      for dirpath, _, names in files.walk(top, self.follow_links, left_out, visited):
        found.extend(candidate(self._relative(os.path.join(dirpath, n)), class_dir) for n in names)
      found.extend(self._left_out(left_out, class_dir, ignored))
    if part not in (ALL_PARTS, ROOT_PART):
      return Listing(found, ignored)
    left_out = []
    # The root's own level; symlinked class folders are folders here, as for `subfolders`.
    walker = files.walk(self.root, follow_links=True, left_out=left_out)
    _, folders, names = next(walker, ("", [], []))
    walker.close()
    top_files, top_folders = top_level(names, folders, self.class_dirs)
    found.extend(top_files)
    found.extend(self._left_out(left_out, "", ignored))
    return Listing(found, ignored + top_folders)

  def _left_out(self, left_out: list, class_dir: str, ignored: list) -> list[Candidate]:
    """Candidates for the files `files.walk` left out; the folders go to `ignored`."""
    found = []
    for path, reason, is_folder in left_out:
      rel = self._relative(path)
      if is_folder:
        ignored.append((f"{rel}/", reason))
      else:
        found.append(Candidate(rel, class_dir, files.has_image_extension(rel), skip_reason=reason))
    return found

  def _relative(self, path: str) -> str:
    if filesystems.is_local(self.root):
      return os.path.relpath(path, self.root).replace(os.sep, "/")
    return path[len(self.root):].lstrip("/")

  def signature(self, candidates: Sequence[Candidate]) -> str:
    """Changes whenever a listed file changes (size or modification time)."""
    h = hashlib.sha256()
    for start in range(0, len(candidates), _STAT_CHUNK):  # bounded memory
      chunk = candidates[start:start + _STAT_CHUNK]
      stats = filesystems.stats([os.path.join(self.root, *c.path.split("/")) for c in chunk])
      self._hash_stats(h, chunk, stats)
    return h.hexdigest()

  def stamps(self, candidates: Sequence[Candidate]) -> list[str]:
    """Each file's "size:mtime_ns" ("" when it cannot be read): unchanged stamp, unchanged
    file, as far as its size and modification time can tell."""
    stats = filesystems.stats([os.path.join(self.root, *c.path.split("/")) for c in candidates])
    return ["" if st is None else f"{st[0]}:{st[1]}" for st in stats]

  @staticmethod
  def _hash_stats(h, candidates, stats) -> None:
    for c, st in zip(candidates, stats):
      if st is None:
        h.update(f"{c.path}\0missing\n".encode("utf-8", "surrogateescape"))
      else:
        h.update(f"{c.path}\0{st[0]}\0{st[1]}\n".encode("utf-8", "surrogateescape"))

  def _full(self, path: str) -> str:
    full = os.path.join(self.root, *path.split("/"))
    if not filesystems.is_local(full):
      return full  # no symlinks there; paths come from the listing
    folder, name = os.path.split(full)
    folder_inside = self._real_dirs.get(folder)
    if folder_inside is None:
      if len(self._real_dirs) >= _REAL_DIRS_KEPT:
        self._real_dirs.clear()
      folder_inside = self._real_dirs[folder] = self._inside(os.path.realpath(folder))
    # A file that is no symlink is inside its folder: one lstat, no path arithmetic.
    inside = self._inside(os.path.realpath(full)) if os.path.islink(full) else folder_inside
    if not inside:
      raise PermissionError(f"symlink points outside the root: {path}")
    return full

  def _inside(self, real: str) -> bool:
    return real == self._real_root or real.startswith(self._real_root_prefix)

  def local_path(self, path: str) -> Optional[str]:
    """The file's path on this machine (checked as `open` checks it), or None if remote."""
    full = self._full(path)
    return full if filesystems.is_local(full) else None

  def size(self, path: str) -> int:
    return filesystems.stat(self._full(path))[0]

  def open(self, path: str):
    return filesystems.open_read(self._full(path))

  def read(self, path: str) -> bytes:
    with self.open(path) as f:
      return f.read()


def _zip_error(e: Exception) -> SourceError:
  text = str(e)
  if isinstance(e, RuntimeError) and "encrypted" in text:
    return SourceError("zip_encrypted: member is encrypted (password required)")
  if isinstance(e, NotImplementedError):
    return SourceError(f"zip_unsupported: {text or 'compression method not supported'}")
  if isinstance(e, zlib.error):
    return SourceError(f"zip_corrupt: compressed data is invalid ({text})")
  if isinstance(e, zipfile.BadZipFile) and "CRC" in text:
    return SourceError(f"zip_crc_error: {text}")
  return SourceError(f"zip_corrupt: {type(e).__name__}: {text}")


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, struct.error, ValueError)


def open_zip(zip_path: str) -> zipfile.ZipFile:
  """Opens a zip (on any file system); a truncated or corrupt one is a one-line `ValueError`
  naming it."""
  if filesystems.is_local(zip_path):
    stream = None
    target = zip_path
  else:
    stream = target = filesystems.open_read(zip_path)  # seekable: members are read in place
  try:
    return _ZipFile(target, stream)
  except (zipfile.BadZipFile, EOFError, struct.error) as e:
    if stream is not None:
      stream.close()
    raise ValueError(f"{zip_path} is not a readable zip (truncated or corrupt: {e}).") from None


class _ZipFile(zipfile.ZipFile):
  """A zip that closes the stream it was opened on (zipfile leaves a passed stream open)."""

  def __init__(self, target, stream=None):
    self._stream = stream
    super().__init__(target)

  def close(self):
    try:
      super().close()
    finally:
      if self._stream is not None:
        self._stream.close()


class ZipSource:
  """Members under `<prefix><class_dir>/**` of a zip file, read without extraction."""

  def __init__(self, zip_path: str, class_dirs: Sequence[str], prefix: str = ""):
    self.zip_path = filesystems.absolute(zip_path)
    self.class_dirs = tuple(class_dirs)
    self.prefix = prefix
    self._local = threading.local()
    self._table = None

  def __repr__(self) -> str:
    return f"ZipSource({self.zip_path!r}, prefix={self.prefix!r})"

  def __getstate__(self):
    return {"zip_path": self.zip_path, "class_dirs": self.class_dirs, "prefix": self.prefix}

  def __setstate__(self, state):
    self.__init__(**state)

  def _zip(self) -> zipfile.ZipFile:
    # One handle per thread: members then decompress in parallel.
    handle = getattr(self._local, "zip", None)
    if handle is None:
      handle = self._local.zip = open_zip(self.zip_path)
    return handle

  def _members(self) -> "MemberTable":
    if self._table is None:
      self._table = member_table(self._zip().namelist(), self.prefix)
    return self._table

  def member_names(self) -> dict[str, str]:
    """Normalised path relative to the prefix → raw member name."""
    return self._members().clean

  def listing(self, part: str = ALL_PARTS) -> Listing:
    """Members of the class folders, members beside them (ignored), members refused (unsafe or
    repeated names) and the folders not read, all relative to the prefix."""
    table = self._members()
    found, names, folders = CandidateList(), [], set()
    for rel in sorted(table.clean):
      top, _, rest = rel.partition("/")
      if not rest:
        names.append(rel)
      elif top in self.class_dirs:
        found.append(candidate(rel, top))
      else:
        folders.add(top)
    for raw, reason in table.rejected:
      rel = raw.replace("\\", "/")
      rel = rel[len(self.prefix):] if rel.startswith(self.prefix) else rel
      found.append(Candidate(rel, rel.split("/", 1)[0], files.has_image_extension(rel),
                             skip_reason=reason))
    top_files, ignored = top_level(names, folders, self.class_dirs)
    found.extend(top_files)
    # Junk beside the prefix folder (`__MACOSX/` next to `PetImages/`) is never read either.
    outside = {raw.replace("\\", "/").split("/", 1)[0] for raw in self._zip().namelist()}
    ignored += [(f"{n}/", JUNK_FOLDER) for n in sorted(outside - folders) if files.is_junk(n)]
    return Listing(found, sorted(set(ignored)))

  def listing_parts(self) -> list[str]:
    """One part: a zip's members are listed from its central directory at once."""
    return [ALL_PARTS]

  def signature(self, candidates: Sequence[Candidate]) -> str:
    size, mtime_ns = filesystems.stat(self.zip_path)
    return f"{size}:{mtime_ns}"

  def stamps(self, candidates: Sequence[Candidate]) -> list[str]:
    """Each member's "crc32:size" from the central directory ("" for a refused name): a
    member changes its stamp when its bytes change, whatever happened to the zip."""
    members = self._members().clean
    out = []
    for c in candidates:
      name = members.get(c.path)
      info = self._zip().getinfo(name) if name is not None else None
      out.append("" if info is None else f"{info.CRC:08x}:{info.file_size}")
    return out

  def _info(self, path: str) -> zipfile.ZipInfo:
    return self._zip().getinfo(self._members().clean[path])

  def size(self, path: str) -> int:
    """The member's declared uncompressed size (zipfile never inflates beyond it)."""
    return self._info(path).file_size

  def open(self, path: str):
    try:
      return _ZipMemberStream(self._zip().open(self._info(path)))
    except _ZIP_ERRORS as e:
      raise _zip_error(e) from None

  def read(self, path: str) -> bytes:
    with self.open(path) as f:
      return f.read()


class _ZipMemberStream:
  """A zip member's stream whose read errors become `SourceError`s with a reason."""

  def __init__(self, f):
    self._f = f

  def read(self, n: int = -1) -> bytes:
    try:
      return self._f.read(n)
    except _ZIP_ERRORS as e:
      raise _zip_error(e) from None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


@dataclasses.dataclass
class MemberTable:
  """A zip's members: clean relative path → raw name, and members refused with a reason."""

  clean: dict
  rejected: list


def member_table(names: Iterable[str], prefix: str = "") -> MemberTable:
  """Maps clean relative paths to member names; records names that escape or collide.

  Backslashes (zips written on Windows) become slashes; directories and members
  outside `prefix` are left out. A member whose name escapes the root (`..`,
  absolute) is refused; of several names with one clean path (`a/./x.jpg`,
  `a/x.jpg`), the one written cleanly wins, else the first, and the others are refused.
  """
  clean, rejected = {}, []
  exact = set()
  for raw in names:
    name = raw.replace("\\", "/")
    if name.endswith("/"):
      continue
    norm = posixpath.normpath(name)
    if filesystems.escapes_root(name):
      rejected.append((raw, "unsafe_path: member name escapes the archive root"))
      continue
    if not norm.startswith(prefix):
      continue
    rel = norm[len(prefix):]
    if rel in clean:
      if name == norm and rel not in exact:
        rejected.append((clean[rel], f"duplicate_member: same path as member {raw!r}"))
        clean[rel] = raw
        exact.add(rel)
      else:
        rejected.append((raw, f"duplicate_member: same path as member {clean[rel]!r}"))
      continue
    clean[rel] = raw
    if name == norm:
      exact.add(rel)
  return MemberTable(clean, rejected)


def subfolders(root: str) -> list[str]:
  """Sorted names of the sub-folders of `root` (hidden and junk ones left out)."""
  return sorted(n for n in filesystems.subdirectories(root) if not files.is_junk(n))


def zip_layout(zip_path: str) -> tuple[str, list[str]]:
  """(prefix, sorted class folders) of a zip of class folders.

  A zip whose only top-level entry (junk aside) is one folder holding folders —
  how macOS and most tools zip a folder — is read from inside that folder.
  """
  with open_zip(zip_path) as zf:
    names = list(member_table(zf.namelist()).clean)
  prefix = ""
  while True:
    inner = [n[len(prefix):] for n in names if n.startswith(prefix)]
    top = {n.split("/", 1)[0] for n in inner if not files.is_junk(n.split("/", 1)[0])}
    folders = {n.split("/", 1)[0] for n in inner
               if "/" in n and not files.is_junk(n.split("/", 1)[0])}
    if len(top) == 1 and folders == top:
      only = next(iter(top))
      below = {n.split("/")[1] for n in inner if n.startswith(only + "/") and n.count("/") >= 2}
      if below - {b for b in below if files.is_junk(b)}:
        prefix += only + "/"
        continue
    return prefix, sorted(folders)


def find_zip_prefix(zip_path: str, class_dirs: Sequence[str]) -> Optional[str]:
  """The member prefix under which all `class_dirs` sit, e.g. "PetImages/"."""
  with open_zip(zip_path) as zf:
    names = [n.replace("\\", "/") for n in zf.namelist()]
  for prefix in ("", "PetImages/"):
    if all(any(n.startswith(f"{prefix}{c}/") for n in names) for c in class_dirs):
      return prefix
  return None
