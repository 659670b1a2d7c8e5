"""Exact (and near) duplicates: one group's fate, and the card's count of all groups.

Every member of a group is split by the group's first path, so copies never sit in two
splits. Groups spanning several classes (conflicting labels) are skipped unless the mode is
"keep"; "drop" also keeps one file of every other group. The local build and Beam both find
the groups (by sha256, or by perceptual hash), then call `resolve` on each and add its entry
to a `Summary`, so both decide alike.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

from petpipe.images import validation

MAX_GROUPS_LISTED = 100


def resolve(group: Sequence[validation.Verdict], label_of_dir: dict, mode: str,
            split_folders: Optional[dict] = None) -> tuple[list[validation.Verdict], dict]:
  """(the group's verdicts as the build keeps them, its card entry) for one group of 2+ usable
  files, sorted by path."""
  same = "same bytes" if len({v.sha256 for v in group}) == 1 else "near-identical picture"
  first = group[0].path
  classes = sorted({label_of_dir[v.class_dir] for v in group})
  conflict = len(classes) > 1
  out = list(group)
  if conflict and mode != "keep":
    out = [dataclasses.replace(v, status=validation.SKIPPED, reason=(
        f"duplicate_conflict: {same} as {', '.join(o.path for o in group if o is not v)} "
        "in another class")) for v in group]
  elif mode == "drop":
    out = [group[0]] + [dataclasses.replace(v, status=validation.SKIPPED, reason=(
        f"duplicate: {same} as {first}")) for v in group[1:]]
  entry = {"sha256": group[0].sha256, "phash": group[0].phash, "paths": [v.path for v in group],
           "classes": classes, "conflict": conflict}
  return out, dict(entry, files=len(group), across_given_splits=_across(out, split_folders))


def _across(kept: Sequence[validation.Verdict], split_folders: Optional[dict]) -> int:
  """Sets of same bytes among the files kept whose given split folders differ."""
  if not split_folders:
    return 0
  folders = collections.defaultdict(set)
  for v in kept:
    if v.usable and v.sha256:
      folders[v.sha256].add(split_folders[v.path.split("/", 1)[0]])
  return sum(len(f) > 1 for f in folders.values())


class Summary:
  """The card's `duplicates` entry, added group by group and merged (a Beam combiner's
  accumulator): counts, and the first groups by first path."""

  def __init__(self):
    self.groups = self.files = self.conflicts = self.across = 0
    self.first: list[dict] = []

  def add(self, entry: dict) -> "Summary":
    self.groups += 1
    self.files += entry["files"]
    self.conflicts += entry["conflict"]
    self.across += entry["across_given_splits"]
    self.first = _first(self.first + [entry])
    return self

  def merge(self, other: "Summary") -> "Summary":
    self.groups += other.groups
    self.files += other.files
    self.conflicts += other.conflicts
    self.across += other.across
    self.first = _first(self.first + other.first)
    return self

  def card(self, mode: str, near_duplicates: bool, given_splits: bool) -> dict:
    listed = [{k: e[k] for k in ("sha256", "phash", "paths", "classes", "conflict")}
              for e in self.first]
    card = {"mode": mode, "groups": self.groups, "files_in_groups": self.files,
            "conflicting_groups": self.conflicts, "first_groups": listed,
            "near_duplicates": near_duplicates}
    if given_splits:
      # Copies across given splits stay where the folders put them: reported, never moved.
      card["groups_across_given_splits"] = self.across
    return card


def _first(entries: list[dict]) -> list[dict]:
  return sorted(entries, key=lambda e: e["paths"][0])[:MAX_GROUPS_LISTED]
