"""Serialized records from the files TFDS writes: TFRecord (streamed) or ArrayRecord
(random access), told apart by their names (`<name>-<split>.array_record-00000-of-00004`).

TFRecord files can only be read front to back; ArrayRecord files can be read by index, so
a split stored that way can be shuffled globally: the pipeline shuffles record indices
(8 bytes each) and reads the records of each batch by index.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

TFRECORD = "tfrecord"
ARRAY_RECORD = "array_record"
# TFDS names record files `<name>-<split>.<format>-00000-of-00004`.
_SHARD_NAME = re.compile(
    r"^(?P<prefix>.+)-(?P<split>[A-Za-z0-9_]+)\.(?P<format>tfrecord|array_record)(-\d+-of-\d+)?$")


class ShardName(NamedTuple):
  """The parts of a TFDS record file name: `<prefix>-<split>.<format>...`."""

  prefix: str
  split: str
  format: str


def shard_name(path: str) -> Optional[ShardName]:
  """The parts of a TFDS-named record file, or None for another name."""
  match = _SHARD_NAME.match(os.path.basename(os.fspath(path)))
  return ShardName(match["prefix"], match["split"], match["format"]) if match else None


def file_format(path: str) -> str:
  """TFRECORD or ARRAY_RECORD, from TFDS's file name."""
  return ARRAY_RECORD if ".array_record" in os.path.basename(os.fspath(path)) else TFRECORD


def format_of(paths: Sequence[str]) -> str:
  """The one format of `paths`; a mixture is a ValueError."""
  formats = {file_format(p) for p in paths}
  if len(formats) > 1:
    raise ValueError(f"The files mix TFRecord and ArrayRecord. Received: files={list(paths)!r}")
  return formats.pop() if formats else TFRECORD


class IndexedRecords:
  """Random access to the records of ArrayRecord files, numbered across the files in order.

  Attributes:
    paths: the files.
    lengths: records in each file.
    offsets: index of each file's first record.
  """

  def __init__(self, paths: Sequence[str]):
    # Imported here: only ArrayRecord datasets need it (TFDS installs it).
    from array_record.python import array_record_data_source

    self.paths = [os.fspath(p) for p in paths]
    self._source = array_record_data_source.ArrayRecordDataSource(self.paths)
    self.lengths = [num_records(p) for p in self.paths]
    self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

  def __len__(self) -> int:
    return len(self._source)

  def indices(self, slices) -> np.ndarray:
    """Global indices of the records `slices` (path, skip, take) name, in file order."""
    where = {p: i for i, p in enumerate(self.paths)}
    ranges = []
    for s in slices:
      i = where[os.fspath(s.path)]
      start = self.offsets[i] + s.skip
      end = start + (self.lengths[i] - s.skip if s.take < 0 else s.take)
      ranges.append(np.arange(start, end, dtype=np.int64))
    return np.concatenate(ranges) if ranges else np.zeros([0], np.int64)

  def read(self, indices: tf.Tensor) -> tf.Tensor:
    """The serialized records at a batch of indices, as a string tensor (in a graph too)."""
    def fetch(batch):
      return np.asarray(self._source.__getitems__(batch.numpy().tolist()), dtype=object)

    records = tf.py_function(fetch, [indices], tf.string)
    records.set_shape(indices.shape)
    return records


def num_records(path: str) -> int:
  """Records in one file: ArrayRecord keeps the count in its footer; TFRecord is counted."""
  if file_format(path) == ARRAY_RECORD:
    from array_record.python import array_record_module

    reader = array_record_module.ArrayRecordReader(os.fspath(path))
    try:
      return int(reader.num_records())
    finally:
      reader.close()
  return int(tf.data.TFRecordDataset(os.fspath(path)).reduce(
      tf.constant(0, tf.int64), lambda n, _: n + 1))


def in_order(paths: Sequence[str], batch_size: int = 1024) -> tf.data.Dataset:
  """Batches of the serialized records of `paths`, in file order, whatever the format."""
  paths = [os.fspath(p) for p in paths]
  if format_of(paths) == TFRECORD:
    return tf.data.TFRecordDataset(paths).batch(batch_size)
  source = IndexedRecords(paths)
  return tf.data.Dataset.range(len(source)).batch(batch_size).map(source.read)
