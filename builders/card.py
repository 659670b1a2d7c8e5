"""The dataset card: what was found, kept, skipped and why, in numbers.

It is stored in the dataset's `metadata.json` (key "card") and printed as the
last lines of the build log.
"""

from __future__ import annotations

import bisect
import collections
import statistics
from typing import Sequence

from petpipe.images import validation


def reason_kind(reason: str) -> str:
  """The reason's kind: its text before the first colon ("truncated: ..." -> "truncated")."""
  return reason.split(":", 1)[0].strip() or "unknown"


def _stats(values: Sequence[int]) -> dict:
  if not values:
    return {}
  return {"min": min(values), "median": statistics.median(values), "max": max(values)}


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


def ignored_by_reason(verdicts, ignored_folders) -> dict:
  """Counts of files and folders listed as ignored, by reason kind: `not an image file name`,
  `junk`, `not in a class folder`, `folder not in class_names`, `symlink_loop`, ..."""
  kinds = [reason_kind(v.reason) for v in verdicts if v.status == validation.IGNORED]
  kinds += [reason_kind(reason) for _, reason in ignored_folders]
  return dict(sorted(collections.Counter(kinds).items()))


def make_card(verdicts, before: dict, after: dict, balanced_out: int, config) -> dict:
  """Counts per status, reason, class and split; image size statistics."""
  status = collections.Counter(v.status for v in verdicts)
  usable = [v for v in verdicts if v.usable]
  by_reason = lambda s: dict(sorted(collections.Counter(reason_kind(v.reason) for v in verdicts if v.status == s).items()))
  return {
      "files_found": len(verdicts),
      "status": dict(sorted(status.items())),
      "skipped_by_reason": by_reason(validation.SKIPPED),
      "transcoded_by_reason": by_reason(validation.TRANSCODED),
      "repaired": status.get(validation.REPAIRED, 0),
      "ignored": status.get(validation.IGNORED, 0),
      "formats": dict(sorted(collections.Counter(v.format for v in usable).items())),
      "counts_before_balancing": before,
      "counts_after_balancing": after,
      "balanced_out": balanced_out,
      "image_width": _stats([v.width for v in usable]),
      "image_height": _stats([v.height for v in usable]),
      # From the validated headers of the usable files (before resizing or balancing).
      "longest_side_histogram": size_histogram([max(v.width, v.height) for v in usable]),
      "storage": {
          "encoding": config.encoding,
          "image_size": config.image_size,
          "channels": config.channels,
          "balance": config.balance,
          "split_percent": list(getattr(config, "percentages", config.split_percent)),
      },
  }


def summary(card: dict, data_dir: str) -> str:
  """A few human lines for the end of the build log."""
  lines = [
      f"Built {data_dir}",
      f"  files found: {card['files_found']}  status: {card['status']}",
      f"  skipped by reason: {card['skipped_by_reason'] or 'none'}",
      f"  transcoded: {card['transcoded_by_reason'] or 'none'}  repaired: {card['repaired']}  ignored: {card['ignored']}",
  ]
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
