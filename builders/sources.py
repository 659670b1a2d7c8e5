"""Where the images come from: a `root/<class>/**` folder or a zip of one.

A source lists candidate files (relative path + class folder) and reads their
bytes. Sources hold only paths, so they pickle to Beam workers and threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import threading
import zipfile
from typing import Iterable, Optional, Sequence

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A file found under a class folder.

  Attributes:
    path: path relative to the source root, with forward slashes.
    class_dir: the class folder it sits in (first path component).
    is_image: whether its extension names an image format; other files
      (Thumbs.db, .DS_Store, notes) are listed as ignored, never decoded.
  """

  path: str
  class_dir: str
  is_image: bool


def _is_image_name(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class FolderSource:
  """Files under `root/<class_dir>/**` on a local or mounted file system."""

  def __init__(self, root: str, class_dirs: Sequence[str], follow_links: bool = False):
    self.root = os.path.abspath(root)
    self.class_dirs = tuple(class_dirs)
    self.follow_links = follow_links

  def __repr__(self) -> str:
    return f"FolderSource({self.root!r})"

  def candidates(self) -> list[Candidate]:
    found = []
    for class_dir in self.class_dirs:
      top = os.path.join(self.root, class_dir)
      for dirpath, dirnames, filenames in os.walk(top, followlinks=self.follow_links):
        dirnames.sort()
        for name in sorted(filenames):
          rel = os.path.relpath(os.path.join(dirpath, name), self.root)
          rel = rel.replace(os.sep, "/")
          found.append(Candidate(rel, class_dir, _is_image_name(name)))
    return found

  def signature(self, candidates: Sequence[Candidate]) -> str:
    """Changes whenever a listed file changes (size or modification time)."""
    h = hashlib.sha256()
    for c in candidates:
      try:
        st = os.stat(os.path.join(self.root, *c.path.split("/")))
        h.update(f"{c.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
      except OSError:
        h.update(f"{c.path}\0missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()

  def read(self, path: str) -> bytes:
    full = os.path.join(self.root, *path.split("/"))
    real = os.path.realpath(full)
    if os.path.commonpath([real, os.path.realpath(self.root)]) != os.path.realpath(self.root):
      raise PermissionError(f"symlink points outside the root: {path}")
    with open(full, "rb") as f:
      return f.read()


class ZipSource:
  """Members under `<prefix><class_dir>/**` of a zip file, read without extraction."""

  def __init__(self, zip_path: str, class_dirs: Sequence[str], prefix: str = ""):
    self.zip_path = os.path.abspath(zip_path)
    self.class_dirs = tuple(class_dirs)
    self.prefix = prefix
    self._local = threading.local()
    self._names = None

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
      handle = self._local.zip = zipfile.ZipFile(self.zip_path)
    return handle

  def member_names(self) -> dict[str, str]:
    """Normalised path relative to the prefix → raw member name."""
    if self._names is None:
      self._names = normalised_members(self._zip().namelist(), self.prefix)
    return self._names

  def candidates(self) -> list[Candidate]:
    found = []
    for rel in sorted(self.member_names()):
      class_dir = rel.split("/", 1)[0]
      if class_dir in self.class_dirs and "/" in rel:
        found.append(Candidate(rel, class_dir, _is_image_name(rel)))
    return found

  def signature(self, candidates: Sequence[Candidate]) -> str:
    st = os.stat(self.zip_path)
    return f"{st.st_size}:{st.st_mtime_ns}"

  def read(self, path: str) -> bytes:
    return self._zip().read(self.member_names()[path])


def normalised_members(names: Iterable[str], prefix: str = "") -> dict[str, str]:
  """Maps clean relative paths to member names; rejects names escaping the root.

  Backslashes (zips written on Windows) become slashes; directories and members
  outside `prefix` are left out.
  """
  out = {}
  for raw in names:
    name = raw.replace("\\", "/")
    if name.endswith("/"):
      continue
    norm = posixpath.normpath(name)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
      raise ValueError(f"zip member escapes the archive root: {raw!r}")
    if not norm.startswith(prefix):
      continue
    out[norm[len(prefix):]] = raw
  return out


def subfolders(root: str) -> list[str]:
  """Sorted names of the sub-folders of `root` (hidden ones left out)."""
  return sorted(
      e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
  )


def zip_subfolders(zip_path: str) -> list[str]:
  """Sorted top-level folder names inside a zip."""
  with zipfile.ZipFile(zip_path) as zf:
    names = normalised_members(zf.namelist())
  return sorted({n.split("/", 1)[0] for n in names if "/" in n and not n.startswith(".")})


def find_zip_prefix(zip_path: str, class_dirs: Sequence[str]) -> Optional[str]:
  """The member prefix under which all `class_dirs` sit, e.g. "PetImages/"."""
  with zipfile.ZipFile(zip_path) as zf:
    names = [n.replace("\\", "/") for n in zf.namelist()]
  for prefix in ("", "PetImages/"):
    if all(any(n.startswith(f"{prefix}{c}/") for n in names) for c in class_dirs):
      return prefix
  return None
