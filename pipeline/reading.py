"""Readers of built datasets: a glob or list of shards, a built dataset folder, a TFDS name.

Each one finds the shards and the feature schema (the dataset's own `features.json`) and
hands them to `make_dataset`, which owns the pipeline. TFDS is used for what it already does
well, turning split strings such as `train[:10%]` into per-shard read instructions; the
records themselves are read directly, with this project's batched parsing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping, Optional, Sequence, Union

import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.images import errors
from petpipe.pipeline import records
from petpipe.pipeline import schema
from petpipe.pipeline import verify
from petpipe.pipeline.config import PipelineConfig
from petpipe.pipeline.input_pipeline import ShardSlice, make_dataset

Files = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]



@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a training script needs to know about a built dataset.

  Attributes:
    class_names: class names; a label is an index into them.
    storage: how the records store images.
    num_examples: examples per split, e.g. {"train": 18000, "validation": 2000}.
    data_dir: the folder holding the shards and `features.json`.
  """

  class_names: tuple[str, ...]
  storage: schema.ImageStorage
  num_examples: Mapping[str, int]
  data_dir: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def from_shards(
    files: Files,
    config: PipelineConfig,
    training: bool = True,
    *,
    storage: Optional[schema.ImageStorage] = None,
    class_names: Optional[Sequence[str]] = None,
    exact_cardinality: bool = True,
) -> tf.data.Dataset:
  """Streams `(images, labels)` batches from a glob or list of TFRecord shards.

  Storage and class names come from `features.json` in the shards' folder; `storage=` and
  `class_names=` override it, or stand in for it when the folder has none. `files` may be
  `ShardSlice`s with their record counts (`record_counts`). The records per
  shard come from the folder's `dataset_info.json`, else are counted (read, not parsed), so
  the dataset's cardinality is its exact batch count; `exact_cardinality=False` skips that
  for a dataset that will be split among workers or a tf.data service.
  """
  if isinstance(files, (list, tuple)) and files and all(isinstance(f, ShardSlice)
                                                       for f in files):
    shards, paths = list(files), [f.path for f in files]  # counts given: nothing to read
  else:
    paths = resolve_files(files)
    check_one_dataset(paths)
    shards = record_counts(paths) if exact_cardinality and not config.repeat else paths
  storage, class_names = _schema_of(os.path.dirname(paths[0]), storage, class_names)
  return make_dataset(
      shards, storage, config, training=training,
      num_classes=len(class_names) if class_names else None,
      exact_cardinality=exact_cardinality,
  )


def from_dataset_dir(
    dataset_dir: Union[str, os.PathLike],
    split: str,
    config: PipelineConfig,
    training: bool = True,
    *,
    check_sizes: bool = True,
    exact_cardinality: bool = True,
) -> tf.data.Dataset:
  """Streams one split of a built dataset folder (`<data_dir>/<name>/<config>/<version>`).

  `split` accepts TFDS split strings (`"train[:10%]"`, `"train[100:]+validation"`); slicing
  needs the folder's `dataset_info.json`, which holds the per-shard example counts. With
  `check_sizes`, the shards' total size is first checked against that metadata (file sizes
  only), so a truncated or missing shard fails here rather than mid-epoch. The dataset's
  cardinality is its exact batch count, from the metadata; `exact_cardinality=False` leaves
  it unknown, for a dataset split among workers or a tf.data service.
  """
  dataset_dir = os.fspath(dataset_dir)
  if check_sizes and tf.io.gfile.exists(os.path.join(dataset_dir, "dataset_info.json")):
    verify.check_sizes(dataset_dir, _split_names(split))
  features = schema.load_features(dataset_dir)
  class_names = schema.class_names_of(features)
  return make_dataset(
      split_shards(dataset_dir, split), schema.storage_of(features), config,
      training=training, num_classes=len(class_names), exact_cardinality=exact_cardinality,
  )


def from_tfds(
    name: str,
    split: str,
    data_dir: Optional[Union[str, os.PathLike]],
    config: PipelineConfig,
    training: bool = True,
    *,
    check_sizes: bool = True,
    exact_cardinality: bool = True,
) -> tf.data.Dataset:
  """Streams one split of a built TFDS dataset named like `"pet_images/gray100"`."""
  return from_dataset_dir(tfds_dataset_dir(name, data_dir), split, config, training,
                          check_sizes=check_sizes, exact_cardinality=exact_cardinality)


def dataset_info(
    source: Files, data_dir: Optional[Union[str, os.PathLike]] = None
) -> DatasetInfo:
  """Class names, storage and examples per split of a built dataset.

  Args:
    source: a built dataset folder, a glob or list of its shards, or (with `data_dir`) a
      TFDS name such as `"pet_images/gray100"`.
    data_dir: TFDS data dir; only for a TFDS name.

  Counts come from `dataset_info.json`; without it the records of the shards are counted.
  """
  if data_dir is not None:
    folder, paths = tfds_dataset_dir(os.fspath(source), data_dir), None
  elif isinstance(source, (str, os.PathLike)) and tf.io.gfile.isdir(os.fspath(source)):
    folder, paths = os.fspath(source), None
  else:
    paths = resolve_files(source)
    folder = os.path.dirname(paths[0])
  features = schema.load_features(folder)
  if tf.io.gfile.exists(os.path.join(folder, "dataset_info.json")):
    splits = tfds.builder_from_directory(folder).info.splits
    counts = {name: int(splits[name].num_examples) for name in splits.keys()}
  else:
    counts = _count_records(paths or _record_files(os.path.join(folder, "*")))
  return DatasetInfo(
      class_names=tuple(schema.class_names_of(features)),
      storage=schema.storage_of(features),
      num_examples=counts,
      data_dir=folder,
  )


def resolve_files(files: Files) -> list[str]:
  """A glob or a list of paths -> the sorted, existing shard paths."""
  if isinstance(files, (str, os.PathLike)):
    pattern = os.fspath(files)
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
      raise FileNotFoundError(f"No TFRecord shards match the pattern {pattern!r}.")
    return paths
  paths = [os.fspath(f) for f in files]
  if not paths:
    raise ValueError(f"files must name at least one TFRecord shard. Received: files={files!r}")
  missing = [p for p in paths if not tf.io.gfile.exists(p)]
  if missing:
    raise FileNotFoundError(f"These TFRecord shards do not exist: {missing}")
  return paths


def check_one_dataset(paths: Sequence[str]) -> None:
  """Raises ValueError if `paths` span dataset folders whose features or class names differ
  (a glob matching two datasets would mix their records and labels), naming both folders."""
  folders = sorted({os.path.dirname(os.path.abspath(p)) if "://" not in p else os.path.dirname(p)
                    for p in paths})
  if len(folders) < 2:
    return

  def described(folder):
    if not tf.io.gfile.exists(os.path.join(folder, "features.json")):
      return None
    features = schema.load_features(folder)
    return schema.storage_of(features), tuple(schema.class_names_of(features))

  first = described(folders[0])
  for folder in folders[1:]:
    other = described(folder)
    if other is None or first is None or other != first:
      what = ("one has no features.json" if other is None or first is None else
              "class names differ" if other[1] != first[1] else "image storage differs")
      raise ValueError(
          f"The shards span two datasets ({what}): {folders[0]} and {folder}. "
          "Give the shards of one dataset."
      )


def split_shards(dataset_dir: str, split: str) -> list:
  """The shards (or TFDS `FileInstruction`s for slices) that hold `split` of a dataset folder."""
  if tf.io.gfile.exists(os.path.join(dataset_dir, "dataset_info.json")):
    # TFDS turns the split string, slices included, into per-shard skip/take instructions.
    instructions = tfds.builder_from_directory(dataset_dir).info.splits[split].file_instructions
    return [i for i in instructions if i.take != 0]
  if not re.fullmatch(r"\w+", split):
    raise ValueError(
        f"{dataset_dir} has no dataset_info.json, so its splits cannot be sliced or "
        f"combined (the shards' example counts are unknown). Received: split={split!r}"
    )
  return resolve_files(_record_files(os.path.join(dataset_dir, f"*-{split}")) or
                       os.path.join(dataset_dir, f"*-{split}.tfrecord*"))


def tfds_dataset_dir(name: str, data_dir: Optional[Union[str, os.PathLike]]) -> str:
  """The version folder of the TFDS dataset `name` (e.g. "pet_images/gray100") in `data_dir`
  (TFDS's default when None): the one place a TFDS name becomes files.

  Raises:
    FileNotFoundError: TFDS knows no such dataset, or it is not built there.
  """
  try:
    builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
  except Exception as e:  # TFDS raises several types for a name it cannot find
    where = data_dir or "the default TFDS data dir"
    raise FileNotFoundError(f"no built {name} in {where} ({errors.one_line(e)})") from None
  folder = os.fspath(builder.data_dir)
  if not tf.io.gfile.exists(os.path.join(folder, "features.json")):
    raise FileNotFoundError(
        f"The TFDS dataset {name!r} is not built in {folder}: build it first "
        f"(`tfds build` or `download_and_prepare`). Received: data_dir={data_dir!r}"
    )
  return folder


def record_counts(paths: Sequence[str]) -> list[ShardSlice]:
  """Each shard with its record count: from `dataset_info.json` beside it, else counted
  (read, not parsed)."""
  known = {}
  for folder in sorted({os.path.dirname(p) for p in paths}):
    if tf.io.gfile.exists(os.path.join(folder, "dataset_info.json")):
      splits = tfds.builder_from_directory(folder).info.splits
      for name in splits.keys():
        for path, length in zip(splits[name].filepaths, splits[name].shard_lengths):
          known[os.path.normpath(os.fspath(path))] = int(length)
  return [ShardSlice(p, 0, known[os.path.normpath(p)] if os.path.normpath(p) in known
                     else records.num_records(p)) for p in paths]


def _split_names(split: str) -> list[str]:
  """The splits a split string reads: "train[:10%]+test" -> ["train", "test"]."""
  return [part.split("[")[0].strip() for part in split.split("+")]


def _schema_of(
    folder: str,
    storage: Optional[schema.ImageStorage],
    class_names: Optional[Sequence[str]],
) -> tuple[schema.ImageStorage, Optional[list[str]]]:
  """Storage and class names from `folder`'s features.json, overridden by what is given."""
  if tf.io.gfile.exists(os.path.join(folder, "features.json")):
    features = schema.load_features(folder)
    storage = storage or schema.storage_of(features)
    class_names = class_names or schema.class_names_of(features)
  elif storage is None:
    raise FileNotFoundError(
        f"{folder} has no features.json, so the shards' storage is unknown. Read a built "
        "dataset folder, or pass storage= (and class_names=) to from_shards."
    )
  return storage, list(class_names) if class_names else None


def _count_records(paths: Sequence[str]) -> dict[str, int]:
  """Examples per split, counted by reading the shards (split taken from the file names)."""
  by_split: dict[str, list[str]] = {}
  for path in paths:
    name = records.shard_name(path)
    by_split.setdefault(name.split if name else "unknown", []).append(path)
  return {split: sum(records.num_records(f) for f in files)
          for split, files in sorted(by_split.items())}


def _record_files(prefix: str) -> list[str]:
  """TFRecord or ArrayRecord files whose names start with `prefix`."""
  return sorted(tf.io.gfile.glob(f"{prefix}.tfrecord*") + tf.io.gfile.glob(f"{prefix}.array_record*"))
