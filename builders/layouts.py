"""Roots that are not one sub-folder per class: pre-split folders and label files.

* Pre-split: every (non-junk) sub-folder of the root is a split name, `root/<split>/<class>/**`
  (TFDS `ImageFolder`'s layout). Each folder is built as its split; nothing is re-split.
* Label file: a CSV or JSONL names each file's label (`pipeline.label_files`); folders
  say nothing about classes.

Both are sources wrapping a `FolderSource` or `ZipSource`: their candidates carry a class
key as `class_dir` (`<split>/<class>` or the label itself), so the builder's
`label_of_dir` mapping labels them unchanged, and `split_folders` tells the builder which
split each file's first path component gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from typing import Optional, Sequence

import tensorflow as tf

from petpipe.builders import splits as splits_lib
from petpipe.images import files
from petpipe.images import sources as sources_lib
from petpipe.pipeline import label_files

# Folder name -> split it holds.
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test"}
NOT_IN_CLASS_FOLDER = "not in a class folder of its split folder"
NOT_IN_SPLIT_FOLDER = "not in a split folder"


def split_folders_of(folders: Sequence[str]) -> Optional[dict]:
  """{folder: split} when every folder is a split name (a pre-split root), else None.

  Raises:
    ValueError: two folders name one split (`val` and `validation`).
  """
  # Any case: Kaggle ships `Train/` and `Test/`.
  if not folders or not all(f.lower() in SPLIT_FOLDERS for f in folders):
    return None
  by_split = {}
  for folder in sorted(folders):
    split = SPLIT_FOLDERS[folder.lower()]
    if split in by_split:
      raise ValueError(f"Folders {by_split[split]!r} and {folder!r} both hold the {split} split; "
                       "keep one.")
    by_split[split] = folder
  return {folder: split for split, folder in by_split.items()}


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a root that is not plain class folders is read.

  Attributes:
    class_names: label names in label order.
    split_folders: {folder: split} for a pre-split root, else None.
    label_file: the parsed label file, or None.
    label_member: the label file's path relative to the root when it lies inside it
      (never an image candidate), else "".
    prefix: member prefix of a zip root.
  """

  class_names: tuple
  split_folders: Optional[dict] = None
  label_file: Optional[label_files.LabelFile] = None
  label_member: str = ""
  prefix: str = ""


def detect(config, prefix: str, folders: Sequence[str], members: Optional[Sequence[str]]) -> Optional[Layout]:
  """The layout of `config.root` (None: plain class folders).

  `folders` are the root's non-junk sub-folders (under `prefix` for a zip) and `members`
  a zip's clean member paths (None for a folder).
  """
  pre_split = getattr(config, "pre_split", None)
  split_folders = None if pre_split is False else split_folders_of(folders)
  if pre_split and split_folders is None:
    raise ValueError(f"pre_split is true but the sub-folders of {config.root} are not all split names "
                     f"{sorted(SPLIT_FOLDERS)}. Received folders: {list(folders)}")
  labels = getattr(config, "labels", None)
  if labels:
    label_file, member = _read_label_file(config.root, labels, prefix, members)
    if config.class_names:
      names = tuple(config.class_names)
    else:
      names = tuple(label_file.class_names())
    return Layout(names, split_folders, label_file, member, prefix)
  if split_folders is None:
    return None
  if config.class_names:
    names = tuple(config.class_names)
  else:
    names = tuple(sorted({c for f in split_folders for c in _subfolders(config.root, f, members)}))
  return Layout(names, split_folders, prefix=prefix)


def _subfolders(root: str, folder: str, members) -> list[str]:
  if members is None:
    return sources_lib.subfolders(os.path.join(root, folder))
  below = {m.split("/")[1] for m in members if m.startswith(folder + "/") and m.count("/") >= 2}
  return sorted(b for b in below if not files.is_junk(b))


def _read_label_file(root: str, labels: str, prefix: str, members) -> tuple:
  """(parsed label file, its path relative to the root when inside it, else "")."""
  if members is not None and "://" not in labels and not os.path.isabs(labels):
    # A zip root: a relative path names a member of the zip (below its prefix).
    member = posixpath.normpath(labels.replace("\\", "/"))
    if member not in members:
      raise FileNotFoundError(f"labels file {labels!r} is not a member of {root} (under "
                              f"{prefix or 'its top'}); give an absolute path for a file outside it.")
    with sources_lib.open_zip(root) as zf:
      data = zf.read(sources_lib.member_table(zf.namelist(), prefix).clean[member])
    return label_files.parse(data, f"{root}:{prefix}{member}"), member
  path = label_files.resolve(labels, root)
  parsed = label_files.read(path)
  if members is not None:
    return parsed, ""
  if "://" in path:
    top = root.rstrip("/") + "/"
    return parsed, path[len(top):] if path.startswith(top) else ""
  rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
  inside = rel != ".." and not rel.startswith(".." + os.sep)
  return parsed, rel.replace(os.sep, "/") if inside else ""


def make_source(config, layout: Layout, folder_source, zip_source):
  """(source, label_of_dir) for a pre-split or labelled root; `folder_source`/`zip_source`
  make the underlying `FolderSource`/`ZipSource` from a list of top folders."""
  is_zip = not tf.io.gfile.isdir(config.root)
  if layout.label_file is not None:
    inner = zip_source([]) if is_zip else folder_source([])
    names = _zip_listing(config.root, layout.prefix) if is_zip else _folder_listing(
        config.root, config.follow_links)
    source = LabelFileSource(inner, names, layout.label_file, layout.class_names,
                             layout.label_member, layout.split_folders)
    return source, {n: n for n in layout.class_names}
  folders = sorted(layout.split_folders)
  inner = zip_source(folders) if is_zip else folder_source(folders)
  source = SplitFolderSource(inner, layout.split_folders, layout.class_names)
  return source, {f"{f}/{c}": c for f in folders for c in layout.class_names}


def _folder_listing(root: str, follow_links: bool) -> tuple:
  """(every file under `root`, [(path, reason)] of files `files.walk` left out, [(folder/,
  reason)] of folders not read), relative with forward slashes; junk folders are not entered."""
  found, left_out, ignored = [], [], []
  local = "://" not in root

  def relative(path):
    rel = os.path.relpath(path, root) if local else path[len(root):].strip("/")
    return "" if rel in (".", "") else rel.replace(os.sep, "/")

  for dirpath, dirnames, filenames in files.walk(root, follow_links, left_out):
    rel_dir = relative(dirpath)
    prefix = f"{rel_dir}/" if rel_dir else ""
    ignored += [(f"{prefix}{d}/", sources_lib.JUNK_FOLDER) for d in dirnames if files.is_junk(d)]
    dirnames[:] = [d for d in dirnames if not files.is_junk(d)]
    found += [prefix + name for name in filenames]
  refused = tuple((relative(path), reason) for path, reason, is_folder in left_out if not is_folder)
  ignored += [(relative(path) + "/", reason) for path, reason, is_folder in left_out if is_folder]
  return (tuple(found), refused, tuple(sorted(ignored)))


def _zip_listing(zip_path: str, prefix: str) -> tuple:
  """(clean member paths under `prefix`, [(path, reason)] of members refused)."""
  with sources_lib.open_zip(zip_path) as zf:
    table = sources_lib.member_table(zf.namelist(), prefix)
  refused = []
  for raw, reason in table.rejected:
    rel = raw.replace("\\", "/")
    refused.append((rel[len(prefix):] if rel.startswith(prefix) else rel, reason))
  names, ignored = [], set()
  for name in sorted(table.clean):
    parts = name.split("/")[:-1]
    junk = next((i for i, p in enumerate(parts) if files.is_junk(p)), None)
    if junk is None:
      names.append(name)
    else:
      ignored.add(("/".join(parts[:junk + 1]) + "/", sources_lib.JUNK_FOLDER))
  return (tuple(names), tuple(refused), tuple(sorted(ignored)))


class _Wrapped:
  """Reads go to the wrapped source; only the listing differs."""

  def __init__(self, inner):
    self.inner = inner

  def signature(self, candidates) -> str:
    return self.inner.signature(candidates)

  def stamps(self, candidates) -> list:
    return self.inner.stamps(candidates)

  def size(self, path: str) -> int:
    return self.inner.size(path)

  def local_path(self, path: str):
    local = getattr(self.inner, "local_path", None)
    return local(path) if local is not None else None

  def open(self, path: str):
    return self.inner.open(path)

  def read(self, path: str) -> bytes:
    return self.inner.read(path)


class SplitFolderSource(_Wrapped):
  """`root/<split folder>/<class>/**`: class key `<split folder>/<class>`."""

  def __init__(self, inner, split_folders: dict, class_names: Sequence[str]):
    super().__init__(inner)
    self.split_folders = dict(split_folders)
    self.class_names = tuple(class_names)

  def __repr__(self) -> str:
    return f"SplitFolderSource({self.inner!r}, {self.split_folders!r}, {self.class_names!r})"

  def listing_parts(self) -> list[str]:
    return self.inner.listing_parts()

  def listing(self, part: str = sources_lib.ALL_PARTS) -> sources_lib.Listing:
    inner = self.inner.listing(part)
    found = sources_lib.CandidateList()
    for c in inner.candidates:
      parts = c.path.split("/")
      if c.skip_reason or not c.class_dir:  # refused, or beside the split folders
        found.append(c)
      elif len(parts) < 3:  # a file directly in a split folder
        found.append(dataclasses.replace(c, is_image=False, ignore_reason=NOT_IN_CLASS_FOLDER))
      elif parts[1] in self.class_names or files.is_junk(parts[1]):
        found.append(dataclasses.replace(c, class_dir=f"{parts[0]}/{parts[1]}"))
      else:  # as `class_names` leaves out folders of a plain root
        found.append(dataclasses.replace(c, is_image=False, ignore_reason=sources_lib.NOT_A_CLASS))
    return sources_lib.Listing(found, inner.ignored_folders)

  def card_entries(self) -> dict:
    return {"splits_given": given_splits(self.split_folders)}


class LabelFileSource(_Wrapped):
  """Every file under the root; class key = its label in the label file."""

  def __init__(self, inner, listing: tuple, label_file: label_files.LabelFile,
               class_names: Sequence[str], label_member: str = "", split_folders: Optional[dict] = None):
    super().__init__(inner)
    self.names, self.refused, self.ignored = listing
    self.label_file = label_file
    self.class_names = tuple(class_names)
    self.label_member = label_member
    self.split_folders = dict(split_folders) if split_folders else None

  def __repr__(self) -> str:
    digest = hashlib.sha256(repr((sorted(self.label_file.labels.items()), self.class_names,
                                  self.label_member, self.split_folders)).encode()).hexdigest()[:16]
    return f"LabelFileSource({self.inner!r}, labels={self.label_file.path!r}@{digest})"

  def listing_parts(self) -> list[str]:
    return [sources_lib.ALL_PARTS]  # the label file names every file at once

  def listing(self, part: str = sources_lib.ALL_PARTS) -> sources_lib.Listing:
    found = sources_lib.CandidateList(
        sources_lib.Candidate(path, "", files.has_image_extension(path), skip_reason=reason)
        for path, reason in self.refused)
    classes = frozenset(self.class_names)
    for path in self.names:
      if path == self.label_member:
        continue
      reason = self.label_file.reason_left_out(path, classes)
      if not reason and self.split_folders is not None and path.split("/")[0] not in self.split_folders:
        reason = NOT_IN_SPLIT_FOLDER
      if reason:
        found.append(sources_lib.Candidate(path, "", False, ignore_reason=reason))
      elif files.has_image_extension(path) and files.is_junk_path(path):
        found.append(sources_lib.Candidate(path, "", False, ignore_reason=files.JUNK_REASON))
      else:
        found.append(sources_lib.Candidate(path, self.label_file.labels[path],
                                           files.has_image_extension(path)))
    return sources_lib.Listing(found, list(self.ignored))

  def missing_files(self) -> list[str]:
    """Names in the label file with no file under the root."""
    present = set(self.names)
    return self.label_file.missing(present)

  def card_entries(self) -> dict:
    entries = {"labels_file": {
        "path": self.label_file.path,
        "rows": len(self.label_file.labels),
        "extra_columns": list(self.label_file.extra_columns),
        "missing_files": len(self.missing_files()),
    }}
    if self.split_folders:
      entries["splits_given"] = given_splits(self.split_folders)
    return entries


def given_splits(split_folders: dict) -> dict:
  """{split: "folder/"} in train, validation, test order (for the card and the log)."""
  by_split = {split: folder for folder, split in split_folders.items()}
  return {split: by_split[split] + "/" for split in splits_lib.SPLITS if split in by_split}


def split_of_path(source, path: str, percent: Sequence[float], key: Optional[str] = None) -> str:
  """The split of `path`: its split folder's for a pre-split root, else by stable hash of
  `key` (default: the path)."""
  folders = getattr(source, "split_folders", None)
  if folders:
    return folders[path.split("/", 1)[0]]
  return splits_lib.split_of(key or path, percent)
