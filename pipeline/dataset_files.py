"""The JSON-lines files beside a dataset's records (`manifest.jsonl`, `files.jsonl`).

A local build writes each as one file; a Beam build writes it in parts sorted among
themselves (`files.jsonl-00000-of-00004`, ...), each part written by one worker, so no
machine holds every row. Read in name order, the parts are the one file's lines.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import tensorflow as tf


def part_name(name: str, index: int, count: int) -> str:
  return f"{name}-{index:05d}-of-{count:05d}"


def paths(dataset_dir: str, name: str) -> list[str]:
  """The one file `name`, or its parts in order; [] if there is neither."""
  whole = os.path.join(dataset_dir, name)
  if tf.io.gfile.exists(whole):
    return [whole]
  return sorted(tf.io.gfile.glob(os.path.join(dataset_dir, f"{name}-?????-of-?????")))


def rows(dataset_dir: str, name: str) -> Iterator[dict]:
  """Every row of `name` in order, one at a time.

  Raises:
    FileNotFoundError: the dataset has neither the file nor parts of it.
  """
  found = paths(dataset_dir, name)
  if not found:
    raise FileNotFoundError(f"{dataset_dir} has no {name}")
  for path in found:
    with tf.io.gfile.GFile(path) as f:
      for line in f:
        if line.strip():
          yield json.loads(line)
