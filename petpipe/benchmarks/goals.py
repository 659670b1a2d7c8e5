"""Goals as ratios of two measurements of one run, shared by the benchmarks."""

from __future__ import annotations

from typing import Sequence


def ratio_goals(results: dict, goals: Sequence[tuple[str, str, float]], rate: str) -> list[dict]:
  """For each (name, reference, target): `{"goal", "value", "met"}`, value being name's
  `rate` over the reference's; value and met are None when either was not run."""
  out = []
  for name, reference, target in goals:
    ratio = None
    if name in results and reference in results:
      ratio = results[name][rate] / results[reference][rate]
    out.append({"goal": f"{name} >= {target}x {reference}", "value": ratio,
                "met": None if ratio is None else ratio >= target})
  return out
