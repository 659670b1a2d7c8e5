"""Which split a file belongs to, from its path alone: the builders' rule, and `--folder`'s.

A file's split depends only on a hash of its path relative to the root, so adding files
never moves an existing file to another split, no file sits in two splits, and no seed
changes which files are validated or tested on. Per class, each split receives its
percentage in expectation (stratified).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_PERCENT = (80.0, 10.0, 10.0)


def stable_fraction(key: str, salt: str = "") -> float:
  """A number in [0, 1) fixed by `key` alone (same on every machine and run)."""
  digest = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2**64


def split_of(path: str, percent: Sequence[float] = DEFAULT_SPLIT_PERCENT) -> str:
  """The split of a file (its path relative to the root, forward slashes) given (train,
  validation, test) percentages."""
  point = stable_fraction(path, "split") * 100
  edge = 0.0
  for name, share in zip(SPLITS, percent):
    edge += share
    if point < edge:
      return name
  return next(name for name, share in reversed(list(zip(SPLITS, percent))) if share > 0)
