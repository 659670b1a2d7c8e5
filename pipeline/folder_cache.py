"""The folder loader's `cache_dir`: a subset's decoded pixels, written once as raw records.

The first call decodes the subset's good files as `fast_decode` does (the one transform,
rounded to uint8) and writes them, with their labels and paths, into one TFRecord file of
the project's schema under `cache_dir`; later calls stream those records through
`make_dataset`, which needs no decode. An entry is keyed by everything that changes what
it holds: each file's path, label, size and modification time, the image size, channels,
resize method and fit, and the format of this cache. Entries are written to a temporary
folder and renamed into place (a killed or concurrent call never leaves a half entry), and
a new entry replaces the older ones of the same folder, subset and settings, so the cache
holds one entry per use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from typing import Sequence

import numpy as np
import tensorflow as tf

from petpipe.images import errors
from petpipe.images import filesystems
from petpipe.images import quiet
from petpipe.images import transform
from petpipe.images import validation
from petpipe.pipeline import folder_files
from petpipe.pipeline import input_pipeline
from petpipe.pipeline import ops
from petpipe.pipeline import schema
from petpipe.pipeline.config import PipelineConfig

# Bumped whenever the pixels a cache entry holds would change.
FORMAT = 1
_RECORDS = "records.tfrecord"
_INDEX = "index.json"


@dataclasses.dataclass
class Cached:
  """A subset read from its cache entry.

  Attributes:
    dataset: batches as Keras delivers them.
    file_paths: the files it holds, in the entry's order.
    skip_reasons: {path: reason} of the files that failed to decode while it was written.
  """

  dataset: tf.data.Dataset
  file_paths: list
  skip_reasons: dict


def read(directory: str, subset: str, paths: Sequence[str], labels, checks: dict,
         options: folder_files.LoadOptions, cache_dir: str, shuffle: bool, seed: int) -> Cached:
  """The subset's dataset from its cache entry under `cache_dir`, written first if need be."""
  fast = dataclasses.replace(options, fast_decode=True)
  prefix, key = _names(directory, subset, paths, labels, fast)
  entry = os.path.join(os.fspath(cache_dir), f"{prefix}-{key}")
  if not tf.io.gfile.exists(os.path.join(entry, _INDEX)):
    _write(entry, paths, labels, checks, fast)
    _remove_older(os.fspath(cache_dir), prefix, entry)
  with tf.io.gfile.GFile(os.path.join(entry, _INDEX)) as f:
    index = json.load(f)
  height, width = options.image_size
  storage = schema.ImageStorage("raw", options.num_channels, (height, width))
  batch = options.batch_size or 32
  config = PipelineConfig(image_size=(height, width), channels=options.num_channels,
                          batch_size=batch, shuffle_buffer=batch * 8 if shuffle else 0,
                          seed=int(seed), deterministic=options.deterministic,
                          normalize="none", label_mode="int")
  shard = input_pipeline.ShardSlice(os.path.join(entry, _RECORDS), 0, len(index["paths"]))
  ds = input_pipeline.make_dataset([shard], storage, config, training=shuffle,
                                   num_classes=max(options.num_classes, 1))
  ds = ds.map(input_pipeline.plain(lambda images, labels: _as_keras(images, labels, options)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
  if options.batch_size is None:
    ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(index["paths"])))
  return Cached(ds, index["paths"], index["skipped"])


def _as_keras(images, labels, options: folder_files.LoadOptions):
  """uint8 batches from the records -> what Keras delivers: float32 0-255, its label format."""
  images = tf.cast(images, tf.float32)
  if options.data_format == "channels_first":
    images = tf.transpose(images, (0, 3, 1, 2))
  if not options.label_mode:
    return images
  return images, ops.encode_labels(labels, options.label_mode, options.num_classes)


def _names(directory: str, subset: str, paths: Sequence[str], labels,
           options: folder_files.LoadOptions) -> tuple[str, str]:
  """(the entry's use: folder, subset and settings; the key of what it holds)."""
  settings = json.dumps({"format": FORMAT, "directory": filesystems.absolute(directory),
                         "subset": subset, "size": list(options.image_size),
                         "channels": options.num_channels, "resize": options.interpolation,
                         "fit": options.fit, "labelled": bool(options.label_mode)})
  key = hashlib.sha256(settings.encode())
  labels = [0] * len(paths) if labels is None or not options.label_mode else labels
  for path, label, stat in zip(paths, labels, filesystems.stats(list(paths))):
    stamp = "missing" if stat is None else f"{stat[0]}\0{stat[1]}"
    key.update(f"{path}\0{int(label)}\0{stamp}\n".encode("utf-8", "surrogateescape"))
  return hashlib.sha256(settings.encode()).hexdigest()[:12], key.hexdigest()[:16]


def _write(entry: str, paths: Sequence[str], labels, checks: dict,
           options: folder_files.LoadOptions) -> None:
  """Decodes the files in order and writes the entry (a temporary folder renamed into place)."""
  parent = os.path.dirname(entry)
  tmp = os.path.join(parent, f".{os.path.basename(entry)}.{uuid.uuid4().hex[:8]}.tmp")
  tf.io.gfile.makedirs(tmp)
  stored = dataclasses.replace(options, batch_size=64, deterministic=True,
                               data_format="channels_last")
  ds = folder_files.dataset(paths, labels, checks, stored, shuffle=False, seed=0,
                            with_paths=True)
  storage = schema.ImageStorage("raw", options.num_channels, tuple(options.image_size))
  features = schema.features(storage, [str(i) for i in range(max(options.num_classes, 1))])
  written = []
  try:
    with tf.io.TFRecordWriter(os.path.join(tmp, _RECORDS)) as writer:
      for batch in ds.as_numpy_iterator():
        images, names = batch[0], batch[-1]
        batch_labels = batch[1] if options.label_mode else np.zeros(len(names), np.int64)
        for image, label, name in zip(images, batch_labels, names):
          path = name.decode("utf-8", "surrogateescape")
          written.append(path)
          writer.write(features.serialize_example({
              schema.IMAGE: image.astype(np.uint8), schema.LABEL: int(label),
              schema.FILENAME: path}))
    done = set(written)
    skipped = {p: _decode_error(p, checks[p], options) for p in paths if p not in done}
    with tf.io.gfile.GFile(os.path.join(tmp, _INDEX), "w") as f:
      json.dump({"paths": written, "skipped": skipped}, f)
    try:
      tf.io.gfile.rename(tmp, entry)
    except tf.errors.OpError:  # another process wrote the same entry first
      if not tf.io.gfile.exists(os.path.join(entry, _INDEX)):
        raise
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)


def _decode_error(path: str, found: validation.FileCheck, options) -> str:
  """Why a file that passed its check did not decode in the pipeline (decoded again, eagerly)."""
  preprocessing = transform.Preprocessing(tuple(options.image_size), options.num_channels)
  try:
    with quiet.decoding():
      transform.transform_bytes(filesystems.read_bytes(path), preprocessing, found.header,
                                found.decoder)
  except (tf.errors.OpError, OSError, ValueError) as e:
    return f"undecodable: {errors.one_line(e)}"
  return "undecodable: the decoder failed on it in the pipeline"


def _remove_older(cache_dir: str, prefix: str, keep: str) -> None:
  for path in tf.io.gfile.glob(os.path.join(cache_dir, f"{prefix}-*")):
    if os.path.basename(path.rstrip("/")) != os.path.basename(keep):
      tf.io.gfile.rmtree(path)
