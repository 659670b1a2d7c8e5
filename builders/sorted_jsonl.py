"""A JSON-lines file written in any order and stored sorted, in bounded memory.

The manifest and `files.jsonl` are sorted by path, and a build of 10^8 files must not hold
their rows: rows are sorted in runs, runs spilled to temporary files and merged at the end
(an external merge sort).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from typing import Callable, Iterator

import tensorflow as tf

RUN_ROWS = 10_000  # rows held before a run is spilled: bounds memory (~6 MB)


def line(row: dict) -> str:
  """The one way a row is written (local and Beam builds write identical files)."""
  return json.dumps(row, ensure_ascii=False) + "\n"


class SortedJsonl:
  """Collects rows (`add`) and writes them to `path` sorted by `key` (`close`)."""

  def __init__(self, path: str, key: Callable[[dict], tuple], run_rows: int = RUN_ROWS):
    self.path, self.key, self.run_rows = path, key, run_rows
    self._rows: list[dict] = []
    self._runs: list[str] = []
    self._scratch = None

  def add(self, row: dict) -> None:
    self._rows.append(row)
    if len(self._rows) >= self.run_rows:
      self._spill()

  def _spill(self) -> None:
    if self._scratch is None:
      self._scratch = tempfile.mkdtemp(prefix="petpipe_sort_")
    run = os.path.join(self._scratch, f"{len(self._runs)}.jsonl")
    with open(run, "w", encoding="utf-8") as f:
      f.writelines(line(r) for r in sorted(self._rows, key=self.key))
    self._runs.append(run)
    self._rows = []

  def _read(self, run: str) -> Iterator[dict]:
    with open(run, encoding="utf-8") as f:
      for text in f:
        yield json.loads(text)

  def close(self) -> None:
    """Writes the file (it exists even with no rows) and removes the runs."""
    try:
      runs = [self._read(r) for r in self._runs] + [iter(sorted(self._rows, key=self.key))]
      with tf.io.gfile.GFile(self.path, "w") as f:
        batch = []
        for row in heapq.merge(*runs, key=self.key):
          batch.append(line(row))
          if len(batch) >= 1024:
            f.write("".join(batch))
            batch = []
        f.write("".join(batch))
    finally:
      self._rows = []
      if self._scratch is not None:
        shutil.rmtree(self._scratch, ignore_errors=True)
