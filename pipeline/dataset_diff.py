"""What changed between two builds of a dataset: files added, removed, changed, relabelled,
moved between splits, and the counts per split and class.

Both folders are read from what a build writes beside its records: `files.jsonl` (every
stored file: path, split, label, size, sha256), `manifest.jsonl` (every file not stored,
with its reason) and `features.json` (the class names). A stored file is matched by its path
first; a file whose path is gone is then matched by its bytes (sha256), so a file moved to
another class folder is one relabelled file, not one removed and one added.

    from petpipe import pipeline
    diff = pipeline.diff_datasets("out/image_folder/flowers/1.0.0", "out2/image_folder/flowers/1.0.0")
    print(diff.summary()); diff.same  # False when anything differs
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Iterator

import tensorflow as tf

from petpipe.pipeline import schema
from petpipe.pipeline import verify

MANIFEST = "manifest.jsonl"
_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class StoredFile:
  """A file a build stored: its path in the source, split, class name and sha256."""

  path: str
  split: str
  label: str
  sha256: str


@dataclasses.dataclass
class DatasetDiff:
  """The differences of NEW from OLD.

  Attributes:
    old, new: the dataset folders.
    added: files NEW stores that OLD did not (with OLD's manifest reason when OLD skipped
      them), as (file, reason).
    removed: files OLD stored that NEW does not, as (file, NEW's manifest reason or "not in
      the source any more").
    changed: (old, new) of files stored under one path whose bytes differ.
    relabelled: (old, new) of one file (same path, or same bytes under another path) whose
      class differs.
    moved: (old, new) of one file (same path, or same bytes under another path) whose split
      differs, class unchanged.
    renamed: (old, new) of the same bytes under another path, class and split unchanged.
    counts: {(split, class): (old count, new count)} wherever they differ.
  """

  old: str
  new: str
  added: list = dataclasses.field(default_factory=list)
  removed: list = dataclasses.field(default_factory=list)
  changed: list = dataclasses.field(default_factory=list)
  relabelled: list = dataclasses.field(default_factory=list)
  moved: list = dataclasses.field(default_factory=list)
  renamed: list = dataclasses.field(default_factory=list)
  counts: dict = dataclasses.field(default_factory=dict)

  @property
  def same(self) -> bool:
    return not any((self.added, self.removed, self.changed, self.relabelled, self.moved,
                    self.renamed, self.counts))

  def to_json(self) -> dict:
    pair = lambda old, new: {"old": dataclasses.asdict(old), "new": dataclasses.asdict(new)}
    return {
        "old": self.old, "new": self.new, "same": self.same,
        "added": [dict(dataclasses.asdict(f), reason=r) for f, r in self.added],
        "removed": [dict(dataclasses.asdict(f), reason=r) for f, r in self.removed],
        "changed": [pair(*p) for p in self.changed],
        "relabelled": [pair(*p) for p in self.relabelled],
        "moved": [pair(*p) for p in self.moved],
        "renamed": [pair(*p) for p in self.renamed],
        "counts": [{"split": s, "class": c, "old": o, "new": n}
                   for (s, c), (o, n) in sorted(self.counts.items())],
    }

  def summary(self) -> str:
    """One screen: how many of each kind, the counts that changed, the first few files."""
    if self.same:
      return f"{self.new} holds the same files as {self.old}: no difference."
    kinds = (("added", self.added), ("removed", self.removed), ("changed", self.changed),
             ("relabelled", self.relabelled), ("moved between splits", self.moved),
             ("renamed", self.renamed))
    lines = [f"{self.new} differs from {self.old}:",
             "  " + ", ".join(f"{len(items)} {name}" for name, items in kinds)]
    for (split, label), (old, new) in sorted(self.counts.items()):
      lines.append(f"  {split}/{label}: {old} -> {new} ({new - old:+d})")
    for name, items in kinds:
      for item in items[:_SHOWN]:
        lines.append(f"  {name}: {_describe(item)}")
      if len(items) > _SHOWN:
        lines.append(f"  {name}: ... and {len(items) - _SHOWN} more (--json lists them all)")
    return "\n".join(lines)


def _describe(item) -> str:
  first, second = item
  if isinstance(second, str):  # (file, reason)
    return f"{first.path} ({first.split}/{first.label})" + (f": {second}" if second else "")
  if first.path != second.path:
    return f"{first.path} ({first.split}/{first.label}) -> {second.path} ({second.split}/{second.label})"
  return f"{first.path}: {first.split}/{first.label} -> {second.split}/{second.label}"


def stored_files(dataset_dir: str) -> Iterator[StoredFile]:
  """The files a built dataset folder stores, from its files.jsonl, labels as class names."""
  path = os.path.join(dataset_dir, verify.FILES)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{dataset_dir} has no {verify.FILES}: not a dataset built by "
                            "petpipe's builders, or built before stored files were listed.")
  names = schema.class_names_of(schema.load_features(dataset_dir))
  with tf.io.gfile.GFile(path) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        yield StoredFile(row["path"], row["split"], names[row["label"]], row["sha256"])


def _manifest_reasons(dataset_dir: str) -> dict:
  path = os.path.join(dataset_dir, MANIFEST)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    rows = (json.loads(line) for line in f if line.strip())
    return {r["path"]: f"{r['status']}: {r['reason']}" for r in rows}


def diff_datasets(old: str, new: str) -> DatasetDiff:
  """What differs in the built dataset folder `new` from `old` (see `DatasetDiff`).

  Raises:
    FileNotFoundError: a folder lacks files.jsonl or features.json.
  """
  old, new = os.fspath(old), os.fspath(new)
  before = {f.path: f for f in stored_files(old)}
  after = {f.path: f for f in stored_files(new)}
  diff = DatasetDiff(old, new)
  for path in sorted(before.keys() & after.keys()):
    _compare(diff, before[path], after[path])
  gone = [before[p] for p in sorted(before.keys() - after.keys())]
  arrived = {p: after[p] for p in sorted(after.keys() - before.keys())}
  by_bytes = collections.defaultdict(list)
  for f in arrived.values():
    by_bytes[f.sha256].append(f)
  unmatched = []
  for f in gone:
    twins = by_bytes.get(f.sha256)
    if twins:  # the same bytes under another path: one file, moved in the source
      twin = twins.pop(0)
      del arrived[twin.path]
      _compare(diff, f, twin)
    else:
      unmatched.append(f)
  new_reasons, old_reasons = _manifest_reasons(new), _manifest_reasons(old)
  diff.removed = [(f, new_reasons.get(f.path, "not in the source any more")) for f in unmatched]
  diff.added = [(f, old_reasons.get(f.path, "")) for f in arrived.values()]
  diff.counts = _count_changes(before.values(), after.values())
  return diff


def _compare(diff: DatasetDiff, old: StoredFile, new: StoredFile) -> None:
  if old.label != new.label:
    diff.relabelled.append((old, new))
  elif old.split != new.split:
    diff.moved.append((old, new))
  elif old.path != new.path:
    diff.renamed.append((old, new))
  elif old.sha256 != new.sha256:
    diff.changed.append((old, new))


def _count_changes(before, after) -> dict:
  old = collections.Counter((f.split, f.label) for f in before)
  new = collections.Counter((f.split, f.label) for f in after)
  return {key: (old[key], new[key]) for key in old.keys() | new.keys() if old[key] != new[key]}
