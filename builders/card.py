"""The dataset card: what was found, kept, skipped and why, in numbers.

It is stored in the dataset's `metadata.json` (key "card") and printed as the
last lines of the build log.
"""

from __future__ import annotations

import bisect
import collections
from typing import Sequence

from petpipe.builders.splits import SPLITS
from petpipe.images import validation


def reason_kind(reason: str) -> str:
  """The reason's kind: its text before the first colon ("truncated: ..." -> "truncated")."""
  return reason.split(":", 1)[0].strip() or "unknown"


# Bin edges (px) of the longest-side histogram: about two bins per doubling.
SIZE_EDGES = (0, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
              4096, 6144, 8192)


def size_histogram(sides: Sequence[int]) -> dict:
  """Counts of `sides` per bin: counts[i] holds edges[i] <= side < edges[i + 1] (the last bin
  is open-ended)."""
  counts = [0] * len(SIZE_EDGES)
  for side in sides:
    counts[bisect.bisect_right(SIZE_EDGES, side) - 1] += 1
  return {"edges": list(SIZE_EDGES), "counts": counts}


def histogram_bins(histogram: dict) -> dict:
  """{"lo-hi": count} of a `size_histogram`, without the empty bins at either end."""
  edges, counts = histogram.get("edges", []), histogram.get("counts", [])
  used = [i for i, c in enumerate(counts) if c]
  if not used:
    return {}
  labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
  return {labels[i]: counts[i] for i in range(used[0], used[-1] + 1)}


class Tally:
  """What the card counts of the verdicts, added one at a time and merged (a Beam combiner's
  accumulator): counters only, never the verdicts, so it stays small whatever the number of
  files (image sizes as counts per distinct size give exact medians)."""

  def __init__(self):
    self.status = collections.Counter()
    self.reasons = {validation.SKIPPED: collections.Counter(), validation.TRANSCODED: collections.Counter(),
                    validation.IGNORED: collections.Counter()}
    self.formats = collections.Counter()
    self.widths = collections.Counter()
    self.heights = collections.Counter()
    self.sides = [0] * len(SIZE_EDGES)
    self.examples = {}  # skip reason kind -> its first path (a few kinds: stays small)

  def add(self, v) -> "Tally":
    self.status[v.status] += 1
    if v.status in self.reasons:
      kind = reason_kind(v.reason)
      self.reasons[v.status][kind] += 1
      if v.status == validation.SKIPPED:
        self._example(kind, v.path)
    if v.usable:
      self.formats[v.format] += 1
      self.widths[v.width] += 1
      self.heights[v.height] += 1
      self.sides[bisect.bisect_right(SIZE_EDGES, max(v.width, v.height)) - 1] += 1
    return self

  def _example(self, kind: str, path: str) -> None:
    if kind not in self.examples or path < self.examples[kind]:  # the same in any merge order
      self.examples[kind] = path

  def merge(self, other: "Tally") -> "Tally":
    for kind, path in other.examples.items():
      self._example(kind, path)
    self.status.update(other.status)
    for status, counts in other.reasons.items():
      self.reasons[status].update(counts)
    self.formats.update(other.formats)
    self.widths.update(other.widths)
    self.heights.update(other.heights)
    self.sides = [a + b for a, b in zip(self.sides, other.sides)]
    return self

  def moved(self, v, status: str, reason: str) -> None:
    """`v` (counted) is now of `status` for `reason` (a file changed while building)."""
    self.status[v.status] -= 1
    self.status[status] += 1
    self.reasons[status][reason_kind(reason)] += 1


def _counted_stats(counts: collections.Counter) -> dict:
  """Min, median (`statistics.median`'s value) and max of the values `counts` counts, without
  a list of them."""
  n = sum(counts.values())
  if not n:
    return {}
  ordered = sorted(v for v, c in counts.items() if c)

  def nth(i):
    seen = 0
    for value in ordered:
      seen += counts[value]
      if i < seen:
        return value

  median = nth(n // 2) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2
  return {"min": ordered[0], "median": median, "max": ordered[-1]}


def ignored_by_reason(tally: Tally, ignored_folders) -> dict:
  """Counts of files and folders listed as ignored, by reason kind: `not an image file name`,
  `junk`, `not in a class folder`, `folder not in class_names`, `symlink_loop`, ..."""
  kinds = collections.Counter(tally.reasons[validation.IGNORED])
  kinds.update(reason_kind(reason) for _, reason in ignored_folders)
  return dict(sorted((k, c) for k, c in kinds.items() if c))


def make_card(tally: Tally, before: dict, after: dict, balanced_out: int, config) -> dict:
  """Counts per status, reason, class and split; image size statistics."""
  status = +tally.status
  by_reason = lambda s: dict(sorted((k, c) for k, c in tally.reasons[s].items() if c))
  return {
      "files_found": sum(status.values()),
      "status": dict(sorted(status.items())),
      "skipped_by_reason": by_reason(validation.SKIPPED),
      "transcoded_by_reason": by_reason(validation.TRANSCODED),
      "repaired": status.get(validation.REPAIRED, 0),
      "ignored": status.get(validation.IGNORED, 0),
      "formats": dict(sorted(tally.formats.items())),
      "counts_before_balancing": before,
      "counts_after_balancing": after,
      "balanced_out": balanced_out,
      "image_width": _counted_stats(tally.widths),
      "image_height": _counted_stats(tally.heights),
      # From the validated headers of the usable files (before resizing or balancing).
      "longest_side_histogram": {"edges": list(SIZE_EDGES), "counts": list(tally.sides)},
      "storage": {
          "encoding": config.encoding,
          "image_size": config.image_size,
          "channels": config.channels,
          "balance": config.balance,
          "split_percent": list(getattr(config, "percentages", config.split_percent)),
      },
  }


def counts_by_split(counts: dict, names: Sequence[str]) -> dict:
  """{split: {class: count}} from {(split, class index): count}, for the splits with files."""
  return {split: {n: counts.get((split, c), 0) for c, n in enumerate(names)}
          for split in SPLITS if any(counts.get((split, c)) for c in range(len(names)))}


def check_classes(before: dict, names: Sequence[str], files_found: int, config) -> None:
  """Raises ValueError when no file is usable, or a class has none (unless allowed)."""
  found = {n: sum(per_class.get(n, 0) for per_class in before.values()) for n in names}
  if not any(found.values()):
    raise ValueError(f"No usable images: {files_found} files found, none decodable.")
  empty = [n for n in names if not found[n]]
  if empty and not getattr(config, "allow_empty_classes", False):
    raise ValueError(
        f"Class(es) with no usable image: {empty} (skip reasons in the files listed under them); "
        'fix the data or class_names, or set "allow_empty_classes": true.'
    )


def build_card(tally: Tally, before: dict, after: dict, ignored_folders, duplicates: dict, config,
               source) -> dict:
  """The whole card, local or Beam alike, from what they count."""
  balanced_out = sum(sum(c.values()) for c in before.values()) - sum(
      sum(c.values()) for c in after.values())
  card = make_card(tally, before, after, balanced_out, config)
  ignored_folders = sorted(ignored_folders)
  card["ignored_folders"] = [path.rstrip("/") for path, _ in ignored_folders]
  card["ignored_by_reason"] = ignored_by_reason(tally, ignored_folders)
  card["duplicates"] = duplicates
  card.update(getattr(source, "card_entries", dict)())
  if getattr(source, "split_folders", None):
    card["storage"]["split_percent"] = None
  return card


def summary(card: dict, data_dir: str) -> str:
  """A few human lines for the end of the build log."""
  lines = [
      f"Built {data_dir}",
      f"  files found: {card['files_found']}  status: {card['status']}",
      f"  skipped by reason: {card['skipped_by_reason'] or 'none'}",
      f"  transcoded: {card['transcoded_by_reason'] or 'none'}  repaired: {card['repaired']}  ignored: {card['ignored']}",
  ]
  if card.get("verdicts_reused"):
    lines.append(f"  verdicts reused from an earlier build (files unchanged): {card['verdicts_reused']}")
  for split, counts in card["counts_after_balancing"].items():
    was = card["counts_before_balancing"].get(split, {})
    lines.append(f"  {split}: {counts} (before balancing {was})")
  dup = card.get("duplicates")
  if dup and dup["groups"]:
    lines.append(f"  exact duplicates: {dup['groups']} group(s) of {dup['files_in_groups']} files, "
                 f"{dup['conflicting_groups']} with conflicting labels ({dup['mode']})")
  if dup and dup.get("groups_across_given_splits"):
    lines.append(f"  duplicate groups across the given splits (kept where they are): "
                 f"{dup['groups_across_given_splits']}")
  if card.get("splits_given"):
    lines.append(f"  splits as given by the folders: {card['splits_given']} (split_percent not used)")
  labels = card.get("labels_file")
  if labels:
    lines.append(f"  labels from {labels['path']}: {labels['rows']} rows, {labels['missing_files']} "
                 f"without a file (status 'missing' in the manifest), extra columns "
                 f"{labels['extra_columns'] or 'none'}")
  if card.get("ignored_folders"):
    lines.append(f"  folders not read: {card['ignored_folders']}")
  if card.get("ignored_by_reason"):
    lines.append(f"  ignored by reason: {card['ignored_by_reason']}")
  lines.append(f"  manifest of every file not stored as is: {data_dir}/manifest.jsonl")
  return "\n".join(lines)
