"""The splits of one data source (shards, a built TFDS dataset or an image folder) as
datasets ready for `model.fit`: what a training run reads, assembled in one place.

    source = DataSource(dataset_dir="out/pet_images/gray100/1.0.0")
    data = load(source, InputLayout(batch_size=32), seed=0)
    model.fit(data.train(epoch_seed), validation_data=data.evaluation.get("validation"))

Batches are uint8 (the model rescales on its device) with int labels; training batches
are reshuffled from a per-epoch seed, evaluation batches come in a fixed order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.images import filesystems
from petpipe.images import transform
from petpipe.pipeline import file_splits
from petpipe.pipeline import records
from petpipe.pipeline import schema
from petpipe.pipeline import service
from petpipe.pipeline import sharding
from petpipe.pipeline import verify
from petpipe.pipeline.config import PipelineConfig
from petpipe.pipeline.folder_loader import image_dataset_from_directory
from petpipe.pipeline.reading import check_one_dataset, from_shards, record_counts
from petpipe.pipeline.reading import tfds_dataset_dir

SPLITS = ("train", "validation", "test")
HELD_OUT = ("validation", "test")
DEFAULT_CHANNELS = 1


@dataclasses.dataclass(frozen=True)
class DataSource:
  """Where the examples come from: exactly one of `shards`, `dataset_dir`, `dataset` or
  `folder`.

  Attributes:
    shards: glob of training shards; validation/test siblings of TFDS-named shards
      (`<name>-train.tfrecord*`) are found beside them.
    val_shards: glob of validation shards (instead of the sibling split).
    test_shards: glob of test shards (instead of the sibling split).
    dataset_dir: a built dataset folder (`<data_dir>/<name>/<config>/<version>`).
    dataset: a TFDS name such as "pet_images/gray100", read from `data_dir`.
    data_dir: TFDS data directory for `dataset` (TFDS's default when None).
    folder: an image folder with one sub-folder per class; split 80/10/10 into train,
      validation and test by a hash of each file's path (as the builders split), bad files
      skipped.
    train_on_held_out: allow `shards` of a validation or test split (by their TFDS names);
      that split is then used for training only, never also to validate or test.
  """

  shards: Optional[str] = None
  val_shards: Optional[str] = None
  test_shards: Optional[str] = None
  dataset_dir: Optional[str] = None
  dataset: Optional[str] = None
  data_dir: Optional[str] = None
  folder: Optional[str] = None
  train_on_held_out: bool = False

  def __post_init__(self):
    if (self.val_shards or self.test_shards) and not self.shards:
      raise ValueError("val_shards and test_shards go with shards.")
    if self.data_dir and not self.dataset:
      raise ValueError("data_dir goes with dataset.")
    given = [n for n in ("shards", "dataset_dir", "dataset", "folder") if getattr(self, n)]
    if len(given) != 1:
      raise ValueError("Give one data source: one of shards, dataset_dir, dataset or "
                       f"folder. Received: {', '.join(given) or 'none'}")


@dataclasses.dataclass(frozen=True)
class InputLayout:
  """How the input is batched and divided among training processes.

  Attributes:
    batch_size: images per global batch (per-replica batch times replicas); tf.distribute
      splits each one over the replicas.
    workers: training processes reading this input (multi-worker training).
    worker_index: this process's index among them.
    data_service: a tf.data service dispatcher (grpc://HOST:PORT) the training split's
      pipeline runs on, or None.
    lost_worker_timeout: with `data_service`, an epoch that has delivered batches ends when
      none comes for this many seconds (a lost worker's files are then missed); None
      waits for the service to end it.
  """

  batch_size: int = 32
  workers: int = 1
  worker_index: int = 0
  data_service: Optional[str] = None
  lost_worker_timeout: Optional[float] = None

  @property
  def multi_worker(self) -> bool:
    return self.workers > 1


@dataclasses.dataclass
class TrainingData:
  """The splits of one source, ready for `model.fit`.

  Attributes:
    class_names: label order.
    counts: split -> examples per class (a split with no examples is left out).
    train: (epoch seed, batches to skip=0) -> training batches for that epoch; skipped
      batches (resuming mid-epoch) are dropped before decoding where the source allows.
    evaluation: split -> batches for evaluation (records: in a fixed order, unshuffled).
    image_size: (height, width) of the batches.
    channels: channels of the batches.
    train_shard_policy: how the training split is divided among workers ("FILE",
      "DATA"); None with a single worker.
    files_digest: a hash of which files each split reads (record files: names and sizes;
      a folder: the images' paths in each split).
    record_files: split -> the record files it reads (none for a folder).
    named: split -> evaluation batches of `(images, labels, file_names)`, file names from
      the records (None for a folder).
    fingerprint: what identifies the data (class names, counts per split and class, the
      files digest), for checking that a resumed run reads the same data.
  """

  class_names: list
  counts: dict
  train: Callable[[int], tf.data.Dataset]
  evaluation: dict
  image_size: Tuple[int, int]
  channels: int
  train_shard_policy: Optional[str] = None

  files_digest: str = ""
  record_files: dict = dataclasses.field(default_factory=dict)
  named: Optional[Callable[[str], tf.data.Dataset]] = None

  @property
  def fingerprint(self) -> dict:
    return {"class_names": list(self.class_names),
            "counts": {split: list(c) for split, c in sorted(self.counts.items())},
            "files": self.files_digest}


def load(source: DataSource, layout: InputLayout = InputLayout(), *, seed: int = 0,
         image_size: Optional[Sequence[int]] = None, channels: Optional[int] = None,
         deterministic: bool = False) -> TrainingData:
  """The splits `source` names, batched as `layout` says, at `image_size`/`channels`
  (default: the stored size and channels of raw records, else 100x100 grayscale).

  Raises:
    FileNotFoundError: nothing matches a glob, or a dataset is not built.
    ValueError: the source is inconsistent (several splits in one glob, no training
      examples, fewer than 2 classes); `verify.CorruptDatasetError` names a shard whose
      records do not read.
  """
  shape = (tuple(image_size) if image_size else None, channels)
  if source.folder:
    data = _folder_data(source.folder, shape, seed, layout)
  else:
    files, features = _record_files(source)
    # Counting the labels reads every record: a corrupt one is named here, in one line.
    with verify.naming_corrupt_shard([f for split in files.values() for f in split]):
      data = _record_data(files, features, shape, seed, deterministic, layout)
  if len(data.class_names) < 2:
    raise ValueError(f"Training needs at least 2 classes; the data has "
                     f"{len(data.class_names)}: {data.class_names}.")
  return data


# ------------------------------------------------------------------------------ records


def _record_files(source: DataSource) -> tuple[dict, tfds.features.FeaturesDict]:
  """Split -> record files, and the features that describe them."""
  if source.shards:
    files = {"train": _glob(source.shards, "shards")}
    trained_on = _check_one_split(files["train"], "shards")
    if trained_on in HELD_OUT and not source.train_on_held_out:
      raise ValueError(
          f"shards {source.shards!r} are the {trained_on} split: a model trained on them would "
          f"be validated or tested on the files it learned. Point shards at the train split, or "
          f"allow training on them (--train-on-held-out; they are then used for nothing else).")
    check_one_dataset(files["train"])
    given = {"train": "shards"}
    for split, pattern, name in (("validation", source.val_shards, "val_shards"),
                                 ("test", source.test_shards, "test_shards")):
      if pattern:
        files[split], given[split] = _glob(pattern, name), name
      elif split != trained_on and (found := _siblings(files["train"], split)):
        files[split], given[split] = found, f"the {split} shards beside shards"
    _check_disjoint(files, given)
    check_one_dataset([f for split_files in files.values() for f in split_files])
    return files, schema.load_features(os.path.dirname(files["train"][0]))
  if source.dataset:
    folder = tfds_dataset_dir(source.dataset, source.data_dir)
  else:
    folder = os.path.expanduser(source.dataset_dir)
  if not tf.io.gfile.exists(os.path.join(folder, "dataset_info.json")):
    raise FileNotFoundError(f"{source.dataset or source.dataset_dir} is not a built dataset "
                            "folder (no dataset_info.json).")
  builder = tfds.builder_from_directory(folder)
  splits = builder.info.splits
  files = {s: [os.fspath(p) for p in splits[s].filepaths] for s in SPLITS if s in splits}
  if "train" not in files:
    raise ValueError(f"{source.dataset or source.dataset_dir} has no train split.")
  return files, builder.info.features


def _record_data(files_by_split: dict, feats, shape, seed: int, deterministic: bool,
                 layout: InputLayout) -> TrainingData:
  """A `TrainingData` over record files, batched and divided among workers per `layout`."""
  class_names = schema.class_names_of(feats)
  storage = schema.storage_of(feats)
  size = shape[0] or (tuple(storage.size) if storage.size else transform.DEFAULT_IMAGE_SIZE)
  channels = shape[1] or storage.channels
  # uint8 out: the model rescales (and augments) on the device.
  base = PipelineConfig(image_size=size, channels=channels, batch_size=layout.batch_size,
                        seed=seed, deterministic=deterministic, augment=False,
                        normalize="none", label_mode="int", num_classes=len(class_names))
  counts = {}
  for split, files in files_by_split.items():
    per_class = _label_counts(files, len(class_names))
    if sum(per_class):
      counts[split] = per_class
  if "train" not in counts:
    raise ValueError("The training split has no examples.")

  counted = {}  # split -> its shards with their record counts, read once

  def batches(split: str, config: PipelineConfig, training: bool) -> tf.data.Dataset:
    policy = _shard_policy(split, files_by_split[split], layout)
    files = sharding.shard_files(files_by_split[split], layout.worker_index, layout.workers,
                                 policy)
    if policy == sharding.AutoShardPolicy.DATA:
      # Each worker keeps every n-th batch: all must read the same batches in one order.
      config = dataclasses.replace(config, deterministic=True)
    # A worker's share of the batches is not known ahead (its epoch ends by running out),
    # nor are the batches of a tf.data service, whose workers each batch the files they get.
    split_up = layout.multi_worker or (training and bool(layout.data_service))
    # Otherwise the batch count is known: Keras then shows progress against it.
    if not split_up:
      if split not in counted:
        counted[split] = record_counts(files)
      files = counted[split]
    dataset = from_shards(files, config, training=training, exact_cardinality=not split_up)
    if layout.multi_worker:
      return dataset.with_options(sharding.input_options(policy))
    if training and layout.data_service:
      # The epoch ends after its examples, or when a lost worker stops it short.
      return service.through_service(
          dataset, layout.data_service, examples=sum(counts["train"]),
          batch_size=config.batch_size, lost_worker_timeout=layout.lost_worker_timeout)
    return dataset

  policy = _shard_policy("train", files_by_split["train"], layout)
  return TrainingData(
      class_names=class_names,
      counts=counts,
      train=lambda epoch_seed, skip=0: batches(
          "train", dataclasses.replace(base, seed=epoch_seed, skip_batches=skip), True),
      evaluation={split: batches(split, base, False) for split in counts},
      image_size=tuple(size),
      channels=channels,
      train_shard_policy=policy.name if layout.multi_worker else None,
      files_digest=_digest({split: [(os.path.basename(f), tf.io.gfile.stat(f).length)
                                    for f in files] for split, files in files_by_split.items()}),
      record_files=dict(files_by_split),
      named=lambda split: from_shards(
          record_counts(files_by_split[split]), dataclasses.replace(base, file_names=True),
          training=False),
  )


def _digest(value) -> str:
  """A stable hash of a JSON-able value."""
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _shard_policy(split: str, files: Sequence[str],
                  layout: InputLayout) -> sharding.AutoShardPolicy:
  """The training split by file when there are enough files; evaluation splits always by
  DATA, so every worker also holds each split whole, for the predictions behind the
  pictures."""
  if not layout.multi_worker:
    return sharding.AutoShardPolicy.OFF
  if split != "train":
    return sharding.AutoShardPolicy.DATA
  return sharding.shard_policy(len(files), layout.workers)


def _glob(pattern: str, name: str) -> list[str]:
  files = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
  if not files:
    raise FileNotFoundError(f"{name} {pattern!r} matches no files.")
  return files


def _siblings(train_files: Sequence[str], split: str) -> list[str]:
  """The files of `split` next to TFDS-named training shards (`<name>-train.tfrecord*`)."""
  named = {records.shard_name(f) for f in train_files}
  if len(named) != 1 or None in named:
    return []
  ((prefix, _, file_format),) = named
  pattern = os.path.join(os.path.dirname(train_files[0]), f"{prefix}-{split}.{file_format}*")
  return sorted(tf.io.gfile.glob(pattern))


def _check_one_split(files: Sequence[str], name: str) -> Optional[str]:
  """The one split the TFDS names of `files` give (None for other names)."""
  splits = sorted({s.split for s in map(records.shard_name, files) if s})
  if len(splits) > 1:
    raise ValueError(f"{name} matches files of several splits ({', '.join(splits)}); "
                     "point it at one split.")
  return splits[0] if splits else None


def _check_disjoint(files: dict, given: dict) -> None:
  """No file in two splits: evaluation must never read a file the model trained on."""
  def same(path):
    return os.path.realpath(path) if "://" not in path else path

  owner = {}
  for split, paths in files.items():
    for path in paths:
      other = owner.setdefault(same(path), split)
      if other != split:
        raise ValueError(
            f"{given[other]} and {given[split]} both match {path}: each split must have files "
            f"of its own, or the {split} metrics would be measured on {other} files.")


def _label_counts(files: Sequence[str], num_classes: int) -> list[int]:
  """Examples per class, from the records' labels alone (no image is decoded)."""
  spec = {schema.LABEL: tf.io.FixedLenFeature([], tf.int64)}
  labels = records.in_order(files, 4096).map(
      lambda serialized: tf.io.parse_example(serialized, spec)[schema.LABEL])
  counts = np.zeros(num_classes, dtype=np.int64)
  for batch in labels.as_numpy_iterator():
    counts += np.bincount(batch, minlength=num_classes)[:num_classes]
  return [int(c) for c in counts]


# ------------------------------------------------------------------------------ folder


def _folder_data(folder: str, shape, seed: int, layout: InputLayout) -> TrainingData:
  folder = os.path.expanduser(folder)
  if not filesystems.isdir(folder):
    raise FileNotFoundError(f"{folder} is not a folder.")
  if layout.data_service:
    raise ValueError("A tf.data service reads record shards, not a folder: build the "
                     "folder first (the image_folder builder), then read the dataset.")
  size = shape[0] or transform.DEFAULT_IMAGE_SIZE
  channels = shape[1] or DEFAULT_CHANNELS
  # Each file's split from a hash of its path (the builders' rule), so validation and test
  # hold the same files whatever the run seed; the seed orders the training split only,
  # reshuffled by the loader each epoch (no per-epoch seeds).
  splits = image_dataset_from_directory(
      folder, labels="inferred", label_mode="int",
      color_mode="grayscale" if channels == 1 else "rgb", batch_size=layout.batch_size,
      image_size=size, shuffle=True, seed=seed, split_percent=file_splits.DEFAULT_SPLIT_PERCENT,
      fast_decode=True)  # the one transform's policy, as prediction applies
  class_names = list(splits["train"].class_names)
  files = {split: [filesystems.relative(p, folder) for p in dataset.file_paths]
           for split, dataset in splits.items()}
  counts = {}
  for split, paths in files.items():
    per_class = [0] * len(class_names)
    for path in paths:  # labels are the top-level sub-folders
      per_class[class_names.index(path.split("/")[0])] += 1
    if sum(per_class):
      counts[split] = per_class
  if "train" not in counts:
    raise ValueError(f"{folder} has no images.")
  policy = None
  if layout.multi_worker:
    # Image files, not shards: every worker reads the folder and keeps its share of the
    # batches, in the same order everywhere (the loader's order is fixed by the seed).
    policy = sharding.AutoShardPolicy.DATA
    options = sharding.input_options(policy)
    splits = {split: dataset.with_options(options) for split, dataset in splits.items()}
  train = splits["train"]
  return TrainingData(class_names=class_names, counts=counts,
                      train=lambda epoch_seed, skip=0: train.skip(skip) if skip else train,
                      evaluation={split: splits[split] for split in counts},
                      image_size=tuple(size), channels=channels,
                      train_shard_policy=None if policy is None else policy.name,
                      files_digest=_digest({split: sorted(paths) for split, paths in files.items()}))
