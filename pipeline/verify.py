"""Checks that a built dataset's shards hold what its metadata says.

* `check_sizes` (cheap, run by the readers by default): a TFRecord file is
  exactly the example bytes plus 16 bytes of framing per record, so any
  missing, truncated or padded shard changes the total; an ArrayRecord file's
  footer (its index) must open and count the records the metadata says;
* `verify` (reads everything): every record (with its CRC, for TFRecord) and
  every shard's record count against `dataset_info.json`, naming the file at
  fault. ArrayRecord has no per-record CRC: its chunks are checked as read;
* `changed_sources`: which source files (of a folder or zip) no longer have the
  sha256 recorded in the dataset's `files.jsonl` when the build stored them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.images import errors
from petpipe.images import files
from petpipe.images import filesystems
from petpipe.images import sources
from petpipe.pipeline import dataset_files
from petpipe.pipeline import records

_FRAMING_BYTES = 16  # length (8) + length CRC (4) + data CRC (4)
FILES = "files.jsonl"  # written by the builders: every stored file with its sha256


class CorruptDatasetError(ValueError):
  """A shard is missing, truncated, corrupted or disagrees with the metadata."""


@dataclasses.dataclass(frozen=True)
class ShardReport:
  path: str
  expected_records: int
  records: int


def _split_infos(dataset_dir: str, splits=None):
  info = tfds.builder_from_directory(dataset_dir).info
  names = list(info.splits) if splits is None else list(splits)
  return [info.splits[name] for name in names]


def check_sizes(dataset_dir: str, splits=None) -> None:
  """Raises CorruptDatasetError unless every split's shards have the expected total size."""
  for split in _split_infos(dataset_dir, splits):
    paths = [os.fspath(p) for p in split.filepaths]
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
      raise CorruptDatasetError(f"split {split.name}: shard files missing: {missing}")
    if records.format_of(paths) == records.ARRAY_RECORD:
      for path, expected in zip(paths, split.shard_lengths):
        _check_count(path, _array_record_count(path), expected)
      continue
    actual = sum(tf.io.gfile.stat(p).length for p in paths)
    expected = int(split.num_bytes) + _FRAMING_BYTES * split.num_examples
    if actual != expected:
      raise CorruptDatasetError(
          f"split {split.name}: its {len(paths)} shard(s) hold {actual} bytes, dataset_info.json "
          f"says {expected} ({split.num_examples} examples); a shard was truncated or changed. "
          f"Run `petpipe verify {dataset_dir}` to find the file."
      )


def verify(dataset_dir: str, splits=None) -> list[ShardReport]:
  """Reads every record (checking its CRC) and counts each shard's records."""
  reports = []
  for split in _split_infos(dataset_dir, splits):
    for path, expected in zip(split.filepaths, split.shard_lengths):
      path = os.fspath(path)
      if not tf.io.gfile.exists(path):
        raise CorruptDatasetError(f"{path}: shard file missing")
      count = _read_all(path)
      _check_count(path, count, expected)
      reports.append(ShardReport(path, expected, count))
  return reports


def _read_all(path: str) -> int:
  """Reads every record of one file; raises CorruptDatasetError naming it at the first bad one."""
  count = 0
  # TFRecord one record at a time, so a CRC error says how many records were good.
  batch_size = 1 if records.file_format(path) == records.TFRECORD else 1024
  try:
    for batch in records.in_order([path], batch_size):
      count += int(batch.shape[0])
  except (tf.errors.DataLossError, tf.errors.UnknownError, RuntimeError, OSError) as e:
    raise CorruptDatasetError(
        f"{path}: {errors.one_line(e)} (after {count} good records)") from None
  return count


def corrupt_shard(paths: Sequence[str], error: Exception) -> CorruptDatasetError:
  """The error to raise when reading `paths` failed with `error` (a `DataLossError`, which
  names no file): names the first of them that does not read, and the command that checks
  its whole dataset."""
  for path in paths:
    try:
      _read_all(os.fspath(path))
    except CorruptDatasetError as e:
      return CorruptDatasetError(
          f"{e}; run `petpipe verify {os.path.dirname(os.fspath(path))}` to check every shard, "
          "then rebuild the dataset.")
  return CorruptDatasetError(f"a record could not be read ({errors.one_line(error)}); run "
                             f"`petpipe verify` on the dataset folder to find the shard.")


@contextlib.contextmanager
def naming_corrupt_shard(paths: Sequence[str]):
  """Turns a `DataLossError` raised inside into `corrupt_shard`'s error over `paths`."""
  try:
    yield
  except tf.errors.DataLossError as e:
    raise corrupt_shard(paths, e) from None


def _check_count(path: str, count: int, expected: int) -> None:
  if count != expected:
    raise CorruptDatasetError(
        f"{path}: {count} records, dataset_info.json says {expected}: the shard was truncated "
        "or changed")


def _array_record_count(path: str) -> int:
  try:
    return records.num_records(path)
  except (RuntimeError, OSError, ValueError) as e:  # the footer (index) does not parse
    raise CorruptDatasetError(
        f"{path}: not a readable ArrayRecord file ({errors.one_line(e)})") from None


def changed_sources(dataset_dir: str, root: str) -> list[tuple[str, str]]:
  """(path, "changed" | "missing") for every stored file whose source under `root` (a folder or
  a zip, on any file system TensorFlow knows) is gone or no longer has the sha256 recorded at build time; [] when all match.

  Files are hashed in 1 MiB chunks. Raises FileNotFoundError if the dataset has no `files.jsonl`.
  """
  if not dataset_files.paths(dataset_dir, FILES):
    raise FileNotFoundError(f"{dataset_dir} has no {FILES}: it was built before stored files were hashed")
  rows = list(dataset_files.rows(dataset_dir, FILES))
  problems = []
  if filesystems.isdir(root):
    for row in rows:
      try:
        with filesystems.open_read(os.path.join(root, *row["path"].split("/"))) as f:
          digest, _ = files.stream_sha256(f)
      except OSError:
        problems.append((row["path"], "missing"))
        continue
      if digest != row["sha256"]:
        problems.append((row["path"], "changed"))
    return problems
  with sources.open_zip(root) as zf:
    names = sources.member_table(zf.namelist()).clean
    # The class folders may sit under a top folder (PetImages/): the first stored path finds it.
    prefix = ""
    if rows and rows[0]["path"] not in names:
      hits = [n for n in names if n.endswith("/" + rows[0]["path"])]
      prefix = hits[0][:-len(rows[0]["path"])] if hits else ""
    for row in rows:
      name = names.get(prefix + row["path"])
      if name is None:
        problems.append((row["path"], "missing"))
        continue
      try:
        with zf.open(name) as f:
          digest, _ = files.stream_sha256(f)
      except Exception:  # a bad member is a changed one
        digest = ""
      if digest != row["sha256"]:
        problems.append((row["path"], "changed"))
  return problems
