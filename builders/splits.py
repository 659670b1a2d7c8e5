"""Stable split assignment and duplicate grouping.

A file's split depends only on a hash of its relative path (`pipeline.file_splits`, the
rule `petpipe train --folder` applies too), so adding files never moves an existing file to
another split, and no file sits in two splits. Balancing (undersampling each class of a
split to its smallest class) keeps the files with the smallest (salted path hash, path):
`local_plan` and `beam_build` both apply that rule.
"""

from __future__ import annotations

import collections
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np

from petpipe.pipeline.file_splits import (  # noqa: F401  (re-exported)
    DEFAULT_SPLIT_PERCENT, SPLITS, split_of, stable_fraction)

T = TypeVar("T")


def duplicate_groups(
    items: Sequence[T],
    digest_of: Callable[[T], str],
    path_of: Callable[[T], str],
    phash_of: Optional[Callable[[T], str]] = None,
    max_distance: int = 3,
) -> list[list[T]]:
  """Groups of 2+ items with the same content digest or, with `phash_of`, 64-bit perceptual
  hashes (hex) at most `max_distance` bits apart (linked transitively). Each group is sorted
  by path, groups by their first path.

  Near pairs are found without comparing all pairs: split into `max_distance + 1` chunks,
  two hashes that close agree exactly on at least one chunk (pigeonhole), so only items
  sharing a chunk value are compared.
  """
  items = list(items)
  parent = list(range(len(items)))

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  def union(i, j):
    parent[find(i)] = find(j)

  first_of: dict = {}
  for i, item in enumerate(items):
    if digest_of(item):
      union(i, first_of.setdefault(digest_of(item), i))
  if phash_of is not None:
    hashed = [(i, int(phash_of(it), 16)) for i, it in enumerate(items) if phash_of(it)]
    chunks = max_distance + 1
    bounds = [(64 * k // chunks, 64 * (k + 1) // chunks) for k in range(chunks)]
    for lo, hi in bounds:
      buckets: dict = collections.defaultdict(list)
      for i, h in hashed:
        buckets[(h >> lo) & ((1 << (hi - lo)) - 1)].append((i, h))
      for members in buckets.values():
        for a in range(len(members)):
          for b in range(a + 1, len(members)):
            if bin(members[a][1] ^ members[b][1]).count("1") <= max_distance:
              union(members[a][0], members[b][0])
  by_root: dict = collections.defaultdict(list)
  for i, item in enumerate(items):
    by_root[find(i)].append(item)
  groups = [sorted(g, key=path_of) for g in by_root.values() if len(g) > 1]
  return sorted(groups, key=lambda g: path_of(g[0]))


def possibly_duplicated(digests: np.ndarray, phashes: Optional[np.ndarray] = None,
                        has_phash: Optional[np.ndarray] = None, max_distance: int = 3) -> np.ndarray:
  """Which items `duplicate_groups` may put in a group (a mask): those whose digest (a 64-bit
  prefix) another item has too, or whose perceptual hash (where `has_phash`) is at most
  `max_distance` bits from another's. Compact arrays in, so a build of 10^8 files finds its
  few duplicates without holding its verdicts: only the items marked need a closer look.

  Equal values are found by sorting; near ones as in `duplicate_groups`, by bands (two
  hashes that close agree on one of `max_distance + 1` bands), comparing only distinct hashes
  that share a band value: about n^2 / 2^(64 / (max_distance + 1)) comparisons a band.
  """
  marked = _repeated(digests)
  if phashes is None:
    return marked
  index = np.flatnonzero(has_phash)
  unique, inverse, counts = np.unique(phashes[index], return_inverse=True, return_counts=True)
  near = counts > 1
  chunks = max_distance + 1
  for k in range(chunks):
    lo, hi = 64 * k // chunks, 64 * (k + 1) // chunks
    band = (unique >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
    order = np.argsort(band, kind="stable")
    ordered = band[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
      members = order[start:end]
      values = unique[members]
      close = np.bitwise_count(values[:, None] ^ values[None, :]) <= max_distance
      np.fill_diagonal(close, False)
      near[members[close.any(axis=1)]] = True
  marked[index] |= near[inverse]
  return marked


def _repeated(values: np.ndarray) -> np.ndarray:
  order = np.argsort(values, kind="stable")
  ordered = values[order]
  same = ordered[1:] == ordered[:-1]
  marked = np.zeros(len(values), bool)
  marked[order[np.r_[same, False] | np.r_[False, same]]] = True
  return marked
