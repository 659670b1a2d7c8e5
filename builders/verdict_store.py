"""Every file's verdict, kept beside the records, so a build of another config of the same
unchanged source reuses them instead of validating every file again.

`tfds build pet_images` builds each config in turn, possibly in several processes; each
build writes `verdicts.jsonl` into its dataset folder (a first line naming what the
verdicts depend on, then one verdict a line) and looks for one written by a finished build
of a sibling config. What they depend on: the source (its repr names the root and layout),
each listed file's path, size and modification time (`source.signature`), the limits, and
the format of this file. Writing re-reads and re-hashes every stored file anyway, so a file
changed without changing its size or time is still caught (`changed_during_build`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Iterator, Optional, Sequence

import tensorflow as tf

from petpipe.images import validation

VERDICTS = "verdicts.jsonl"
# Bumped whenever validation decides differently, so older verdicts are not reused.
FORMAT = 2


def key(source, candidates: Sequence, limits: validation.Limits) -> dict:
  """What a set of verdicts depends on (JSON-able)."""
  return {"format": FORMAT, "source": repr(source), "signature": source.signature(candidates),
          "limits": dataclasses.asdict(limits)}


def path(data_dir: str) -> str:
  return os.path.join(data_dir, VERDICTS)


def write(data_dir: str, key_: dict, verdicts: Iterable[validation.Verdict]) -> Iterator[validation.Verdict]:
  """Writes `verdicts` one at a time as they come (bounded memory) and yields each on."""
  with tf.io.gfile.GFile(path(data_dir), "w") as f:
    f.write(json.dumps(key_) + "\n")
    lines = []
    for v in verdicts:
      lines.append(json.dumps(dataclasses.asdict(v), ensure_ascii=False) + "\n")
      if len(lines) >= 1024:
        f.write("".join(lines))
        lines = []
      yield v
    f.write("".join(lines))


def read(file: str) -> Iterator[validation.Verdict]:
  """The verdicts of a verdicts file, one at a time."""
  with tf.io.gfile.GFile(file) as f:
    f.readline()  # the key
    for text in f:
      if text.strip():
        yield validation.Verdict(**json.loads(text))


def find(dataset_root: str, key_: dict) -> Optional[str]:
  """The verdicts file of a finished build under `dataset_root` (`<data_dir>/<name>`) made
  with the same key, or None."""
  wanted = json.dumps(key_)
  for file in sorted(tf.io.gfile.glob(os.path.join(dataset_root, "*", "*", VERDICTS))):
    if os.path.basename(os.path.dirname(file)).startswith("incomplete."):
      continue
    try:
      with tf.io.gfile.GFile(file) as f:
        if f.readline().rstrip("\n") != wanted:
          continue
        first = f.readline()
        if first.strip():
          validation.Verdict(**json.loads(first))  # from this layout
        return file
    except (tf.errors.OpError, ValueError, TypeError):
      continue  # unreadable or from another layout: validate instead
  return None
