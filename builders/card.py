"""The dataset card: what was found, kept, skipped and why, in numbers.

It is stored in the dataset's `metadata.json` (key "card") and printed as the
last lines of the build log.
"""

from __future__ import annotations

import collections
import statistics
from typing import Sequence

from petpipe.builders import validation


def _reason_kind(reason: str) -> str:
  return reason.split(":", 1)[0].strip() or "unknown"


def _stats(values: Sequence[int]) -> dict:
  if not values:
    return {}
  return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def make_card(verdicts, before: dict, after: dict, balanced_out: int, config) -> dict:
  """Counts per status, reason, class and split; image size statistics."""
  status = collections.Counter(v.status for v in verdicts)
  usable = [v for v in verdicts if v.usable]
  by_reason = lambda s: dict(sorted(collections.Counter(_reason_kind(v.reason) for v in verdicts if v.status == s).items()))
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
      "storage": {
          "encoding": config.encoding,
          "image_size": config.image_size,
          "channels": config.channels,
          "balance": config.balance,
          "split_percent": list(config.split_percent),
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
  if card.get("ignored_folders"):
    lines.append(f"  ignored folders (never classes): {card['ignored_folders']}")
  lines.append(f"  manifest of every file not stored as is: {data_dir}/manifest.jsonl")
  return "\n".join(lines)
