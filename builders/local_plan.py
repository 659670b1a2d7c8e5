"""The local build's plan (duplicates → split → balance → manifest and card) in bounded
memory per file.

Verdicts stay on disk (`verdicts.jsonl`, read in a few passes, one verdict at a time); the
manifest and `files.jsonl` are sorted on disk (`sorted_jsonl`). Memory holds the packed
listing (`sources.CandidateList`, the path's bytes plus ~13) and, indexed like it, a class
(2 bytes), a split (1), a kept flag (1) and, while balancing, a hash fraction (8) a file;
finding duplicates briefly adds a digest prefix (8, and with `near_duplicates` a perceptual
hash, 8). Only the verdicts of files that may be duplicated are read back whole.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from petpipe.builders import card as card_lib
from petpipe.builders import duplicates
from petpipe.builders import layouts
from petpipe.builders import quality
from petpipe.builders import sorted_jsonl
from petpipe.builders import splits as splits_lib
from petpipe.builders import verdict_store
from petpipe.images import validation
from petpipe.pipeline import verify as verify_lib

MANIFEST = "manifest.jsonl"
FILES = verify_lib.FILES  # every stored file: path, split, label, size, sha256


def manifest_row(v: validation.Verdict, status: Optional[str] = None, reason: Optional[str] = None) -> dict:
  return {"path": v.path, "status": status or v.status, "reason": v.reason if reason is None else reason,
          "size_bytes": v.size_bytes, "sha256": v.sha256}


def folder_rows(ignored_folders, missing) -> Iterator[dict]:
  """Manifest rows of the folders not read and the names a label file gives without a file."""
  for folder, reason in ignored_folders:
    yield {"path": folder, "status": "ignored", "reason": reason, "size_bytes": 0, "sha256": ""}
  for name in missing:
    yield {"path": name, "status": "missing", "reason": "named in the labels file, no such file",
           "size_bytes": 0, "sha256": ""}


BALANCED_OUT = ("balanced_out", "undersampled to the smallest class")


def manifest_key(row: dict) -> tuple:
  return row["status"], row["path"]


def files_key(row: dict) -> tuple:
  return (row["path"],)


class LocalPlan:
  """Which file goes to which split, what the manifest and card say, for one local build."""

  def __init__(self, verdicts_file: str, candidates, source, label_of_dir: dict, names, config):
    self.file, self.candidates, self.source = verdicts_file, candidates, source
    self.label_of_dir, self.names, self.config = label_of_dir, list(names), config
    self.index = {n: i for i, n in enumerate(self.names)}
    self.replaced: dict[int, validation.Verdict] = {}  # ordinal -> verdict after duplicates
    self.split_key: dict[int, str] = {}  # ordinal -> its duplicate group's first path
    n = len(candidates)
    self.labels = np.full(n, -1, np.int16)  # usable files in a class: class index
    self.splits = np.full(n, -1, np.int8)
    self.kept = np.zeros(n, bool)
    self.tally = card_lib.Tally()
    self.summary = duplicates.Summary()

  def verdicts(self, wanted: Optional[np.ndarray] = None
               ) -> Iterator[tuple[int, validation.Verdict]]:
    """(ordinal, verdict) of every file (or of those `wanted` selects), after duplicate
    handling."""
    for i, v in verdict_store.read_selected(self.file, wanted):
      yield i, self.replaced.get(i, v)

  def _in_class(self, v: validation.Verdict) -> bool:
    return v.usable and v.class_dir in self.label_of_dir

  def resolve_duplicates(self) -> None:
    """Finds duplicate groups among usable files and decides each one's fate."""
    near = bool(getattr(self.config, "near_duplicates", False))
    n = len(self.candidates)
    usable = np.zeros(n, bool)
    digests = np.zeros(n, np.uint64)
    phashes = np.zeros(n, np.uint64) if near else None
    has_phash = np.zeros(n, bool) if near else None
    for i, v in enumerate(verdict_store.read(self.file)):
      if self._in_class(v):
        usable[i] = True
        digests[i] = int(v.sha256[:16] or "0", 16)
        if near and v.phash:
          phashes[i], has_phash[i] = int(v.phash, 16), True
    rows = np.flatnonzero(usable)
    marked = splits_lib.possibly_duplicated(
        digests[rows], None if not near else phashes[rows], None if not near else has_phash[rows])
    members = set(rows[marked].tolist())
    del usable, digests, phashes, has_phash, rows, marked
    if not members:
      return
    wanted = np.zeros(n, bool)
    wanted[list(members)] = True
    found = list(verdict_store.read_selected(self.file, wanted))
    groups = splits_lib.duplicate_groups(
        found, lambda t: t[1].sha256, lambda t: t[1].path, (lambda t: t[1].phash) if near else None)
    mode = getattr(self.config, "duplicates", "keep")
    folders = getattr(self.source, "split_folders", None)
    for group in groups:
      out, entry = duplicates.resolve([v for _, v in group], self.label_of_dir, mode, folders)
      for (i, v), after in zip(group, out):
        self.split_key[i] = group[0][1].path
        if after is not v:
          self.replaced[i] = after
      self.summary.add(entry)

  def plan(self, manifest: sorted_jsonl.SortedJsonl) -> tuple[dict, dict]:
    """Splits and balances; adds the manifest's rows. Returns (counts before, counts after)
    balancing, {split: {class: count}}."""
    config = self.config
    balance = config.balance == "undersample"
    fractions = np.zeros(len(self.candidates)) if balance else None
    for i, v in self.verdicts():
      self.tally.add(v)
      if v.status != validation.KEPT:
        manifest.add(manifest_row(v))
      if self._in_class(v):
        split = layouts.split_of_path(self.source, v.path, config.percentages, self.split_key.get(i))
        self.splits[i] = splits_lib.SPLITS.index(split)
        self.labels[i] = self.index[self.label_of_dir[v.class_dir]]
        if balance:
          fractions[i] = splits_lib.stable_fraction(v.path, "balance")
    usable = self.labels >= 0
    before = self._counts(usable)
    found = before.sum(axis=0)
    quality.check_plan(config, self.tally, self._as_dict(before), self.names)
    self.kept = usable.copy()
    if balance:
      self._balance(fractions, before, found)
      del fractions
      for _, v in self.verdicts(usable & ~self.kept):
        manifest.add(manifest_row(v, *BALANCED_OUT))
    return self._as_dict(before), self._as_dict(self._counts(self.kept))

  def _counts(self, mask: np.ndarray) -> np.ndarray:
    """[split, class] counts of the files in `mask`."""
    c = len(self.names)
    keys = self.splits[mask].astype(np.int64) * c + self.labels[mask]
    return np.bincount(keys, minlength=len(splits_lib.SPLITS) * c).reshape(-1, c)

  def _as_dict(self, counts: np.ndarray) -> dict:
    present = self._counts(self.labels >= 0).sum(axis=1)
    return {split: {n: int(counts[s, c]) for c, n in enumerate(self.names)}
            for s, split in enumerate(splits_lib.SPLITS) if present[s]}

  def _balance(self, fractions: np.ndarray, before: np.ndarray, found: np.ndarray) -> None:
    """Per split and class, the `target` smallest
    (salted path hash, path), `target` the smallest class's count among the classes present
    (in a pre-split root: present in that split)."""
    given = bool(getattr(self.source, "split_folders", None))
    for s in range(len(splits_lib.SPLITS)):
      # Classes allowed to be empty take no part: they would cut every class to 0.
      present = [c for c in range(len(self.names)) if found[c] and (before[s, c] or not given)]
      if not present or not before[s].any():
        continue
      target = min(before[s, c] for c in present)
      for c in range(len(self.names)):
        if before[s, c] > target:
          self._keep_smallest(np.flatnonzero((self.splits == s) & (self.labels == c)), fractions, target)

  def _keep_smallest(self, rows: np.ndarray, fractions: np.ndarray, target: int) -> None:
    self.kept[rows] = False
    if not target:
      return
    values = fractions[rows]
    edge = np.partition(values, target - 1)[target - 1]
    self.kept[rows[values < edge]] = True
    # Ties on the edge value go by path, as the sort by (fraction, path) does.
    ties = sorted(rows[values == edge].tolist(), key=lambda i: self.candidates[i].path)
    self.kept[ties[:target - int(np.count_nonzero(values < edge))]] = True

  def items(self, split: str) -> Iterator[tuple[int, validation.Verdict, int]]:
    """(ordinal in the listing, verdict, label) of the files stored in `split`, one at a
    time."""
    s = splits_lib.SPLITS.index(split)
    for i, v in self.verdicts(self.kept & (self.splits == s)):
      yield i, v, int(self.labels[i])

  def split_names(self) -> list[str]:
    counts = self._counts(self.kept).sum(axis=1)
    return [split for s, split in enumerate(splits_lib.SPLITS) if counts[s]]

  def card(self, before: dict, after: dict, ignored_folders) -> dict:
    given = bool(getattr(self.source, "split_folders", None))
    dup = self.summary.card(getattr(self.config, "duplicates", "keep"),
                            bool(getattr(self.config, "near_duplicates", False)), given)
    return card_lib.build_card(self.tally, before, after, ignored_folders, dup, self.config,
                               self.source)
