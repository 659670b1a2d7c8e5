"""The functions that own the order of the input pipelines: shards or files in, batches out.

Every reader of records (a glob of shards, a built dataset folder, a TFDS name) ends in
`make_dataset`, and the folder loader in `file_batches`, so the order of shuffling,
batching, parsing, decoding and normalising, and the options every pipeline runs with, are
decided here only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Callable, Optional, Sequence, Union

import tensorflow as tf

from petpipe.images import transform
from petpipe.pipeline import ops
from petpipe.pipeline import records
from petpipe.pipeline import schema
from petpipe.pipeline.config import PipelineConfig

AUTOTUNE = tf.data.AUTOTUNE
# Shards read at once: enough to mix classes that sit in different files and to hide
# read latency, few enough that read buffers stay small.
MAX_INTERLEAVE = 16
# The functions mapped here hold no Python control flow on tensors, so AutoGraph's source
# conversion is skipped: it costs ~0.3 s of tracing per pipeline and changes nothing.
plain = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class ShardSlice:
  """The records of one TFRecord shard to read: `take` records after the first `skip`.

  Attributes:
    path: the shard's path.
    skip: records skipped at the start.
    take: records read after those; -1 reads to the end.
  """

  path: str
  skip: int = 0
  take: int = -1


Shard = Union[str, os.PathLike, ShardSlice]


def as_slices(shards: Sequence) -> list[ShardSlice]:
  """Paths, `ShardSlice`s or TFDS `FileInstruction`s (filename/skip/take) -> `ShardSlice`s."""
  slices = []
  for shard in shards:
    if isinstance(shard, ShardSlice):
      slices.append(shard)
    elif hasattr(shard, "filename"):
      slices.append(ShardSlice(os.fspath(shard.filename), int(shard.skip), int(shard.take)))
    else:
      slices.append(ShardSlice(os.fspath(shard)))
  return slices


def make_dataset(
    shards: Sequence[Shard],
    storage: schema.ImageStorage,
    config: PipelineConfig,
    *,
    training: bool = True,
    num_classes: Optional[int] = None,
    exact_cardinality: bool = True,
) -> tf.data.Dataset:
  """Streams `(images, labels)` batches from TFRecord or ArrayRecord files written with
  `schema` (ArrayRecord splits are shuffled globally, by record index).

  Nothing here materialises the dataset: memory is bounded by the shuffle buffer of
  serialized records and a few batches in flight, unless `config.cache` asks otherwise.

  Args:
    shards: shard paths, `ShardSlice`s, or TFDS `FileInstruction`s (for split slicing).
    storage: how the records store images (`schema.storage_of(features)`).
    config: the pipeline's settings.
    training: shuffle and (if `config.augment`) augment; off for evaluation.
    num_classes: number of classes, used when `config.num_classes` is None.
    exact_cardinality: state the batch count when the shards' record counts are known;
      False for a dataset that will be split (a tf.data service, several workers), whose
      parts hold fewer batches.

  Returns:
    A dataset of `(images, labels)`: images (B, H, W, C) float32, or uint8 when
    `config.normalize == "none"`, with H, W and C static (`config.image_size` and
    `config.channels`) in `element_spec` whatever the storage; labels as
    `config.label_mode` says. When every shard's record count is known (`ShardSlice.take`,
    TFDS file instructions) and the data is not repeated, its cardinality is the exact
    number of batches, so Keras shows real progress.
  """
  slices = as_slices(shards)
  if not slices:
    raise ValueError(f"shards must name at least one TFRecord file. Received: shards={shards!r}")
  num_classes = config.num_classes or num_classes
  if config.label_mode == "categorical" and not num_classes:
    raise ValueError(
        'label_mode="categorical" needs the number of classes. '
        f"Received: num_classes={num_classes!r}"
    )
  if config.label_mode == "binary" and num_classes not in (None, 2):
    raise ValueError(
        f'label_mode="binary" needs exactly 2 classes. Received: num_classes={num_classes!r}'
    )
  shuffle = training and config.shuffles
  deterministic = config.deterministic

  if records.format_of([s.path for s in slices]) == records.ARRAY_RECORD:
    ds = _indexed_batches(slices, config, shuffle)
  else:
    ds = _streamed_batches(slices, config, shuffle)
  # Skip (resuming mid-epoch) still-serialized batches: the records are read, never decoded.
  if config.skip_batches:
    ds = ds.skip(config.skip_batches)
  if not storage.is_raw:
    # Encoded images differ in size: parsed in batches, decoded one by one in parallel, re-batched.
    # Each image takes the one transform prediction also applies (JPEG scale chosen per image).
    preprocessing = transform.Preprocessing(config.image_size, config.channels)
    ds = ds.map(plain(functools.partial(_parse_batch, file_names=config.file_names)),
                num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.unbatch().map(
        plain(lambda image, *rest: (transform.transform_encoded(
            image, preprocessing, storage.encoding, storage.channels), *rest)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    ).batch(config.batch_size, drop_remainder=config.drop_remainder)
  augment = training and config.augment

  def finish(batch, seed):
    # Raw records need no decode, only a reshape of the whole batch (a resize only if sizes
    # differ); with no per-image work, calls per batch are the cost, so all is one call.
    if storage.is_raw:
      images, labels, *names = _parse_batch(batch, config.file_names)
      images, labels = _raw_batch(images, labels, storage, config)
    else:
      images, labels, *names = batch
    # Augment (training only) decoded batches, with per-batch seeds drawn from `config.seed`.
    if augment:
      images = ops.augment(images, seed)
    # Every image is `config.image_size` by now (raw reshaped or resized, encoded resized), but
    # augmentation's ops lose the static sides: restate them, so Keras can build on the spec.
    images = tf.ensure_shape(images, [None, *config.image_size, config.channels])
    # Normalise and encode labels last, so that "none" ships uint8 to the accelerator.
    return (ops.normalize(images, config.normalize),
            ops.encode_labels(labels, config.label_mode, num_classes), *names)

  # Per-batch augmentation seeds, skipped along with the batches so a resumed epoch matches.
  seeds = (tf.data.Dataset.random(seed=config.seed).batch(2, drop_remainder=True)
           .skip(config.skip_batches) if augment
           else tf.data.Dataset.from_tensors(tf.zeros([2], tf.int64)).repeat())
  ds = tf.data.Dataset.zip((ds, seeds)).map(
      plain(finish), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  batches = None if config.repeat or not exact_cardinality else batch_count(
      [s.take for s in slices], config.batch_size, config.drop_remainder, config.skip_batches)
  return _finished(ds, batches, deterministic)


def file_batches(
    files: tf.data.Dataset,
    load: Callable,
    *,
    count: int,
    batch_size: Optional[int],
    shuffle_buffer: int = 0,
    seed: Optional[int] = None,
    deterministic: bool = False,
    finish: Optional[Callable] = None,
) -> tf.data.Dataset:
  """Streams batches from image files (the folder loader's pipeline).

  Args:
    files: one element per file (its path and what `load` needs besides, e.g. its label).
    load: an element -> the decoded, resized example, run on files in parallel.
    count: how many files `files` holds (the length `ignore_errors` hides from tf.data).
    batch_size: examples per batch; None delivers single examples.
    shuffle_buffer: files held by the shuffle buffer (0 or 1: no shuffle).
    seed: the shuffle's seed.
    deterministic: keep the order through the parallel decode.
    finish: a batch -> what is delivered (e.g. labels in their final format).
  """
  ds = files
  # Shuffle paths, not decoded images: the buffer stays small in bytes.
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=seed)
  # Each file is read, decoded and resized by itself, files in parallel.
  ds = ds.map(plain(load), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  # A file that passed the header check but still fails to decode is dropped, with a warning.
  ds = ds.ignore_errors(log_warning=True)
  if batch_size is not None:
    ds = ds.batch(batch_size)
  if finish is not None:
    ds = ds.map(plain(finish), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  return _finished(ds, count if batch_size is None else -(-count // batch_size), deterministic)


def _finished(ds: tf.data.Dataset, batches: Optional[int], deterministic: bool) -> tf.data.Dataset:
  """The last steps of every pipeline: the stated length, prefetch, and the options."""
  if batches is not None:
    # Stated, not guessed: tf.data cannot see through interleave or `ignore_errors`, and an
    # epoch that ends early or late fails loudly instead of training silently on other data.
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
  # Prefetch so the next batches are prepared while the model trains on this one.
  ds = ds.prefetch(AUTOTUNE)
  return ds.with_options(pipeline_options(deterministic))


def _streamed_batches(slices: Sequence[ShardSlice], config: PipelineConfig,
                      shuffle: bool) -> tf.data.Dataset:
  """Batches of serialized records streamed from TFRecord files."""
  deterministic = config.deterministic
  files = _shard_list(slices)
  # Shuffle the file list first: it is tiny, and mixes the data beyond what the buffer holds.
  if shuffle:
    files = files.shuffle(len(slices), seed=config.seed, reshuffle_each_iteration=True)
  # Interleave shards in parallel so reads overlap; out of order unless asked for determinism.
  ds = _interleave(files, len(slices), deterministic)
  # Cache (opt-in) serialized records: as small as the shards, and each epoch still reshuffles.
  if config.cache == "memory":
    ds = ds.cache()
  elif config.cache != "none":
    # Keyed by what it holds: `Dataset.cache(file)` reuses any existing file whatever wrote it.
    ds = ds.cache(cache_path(config.cache, slices))
  # Shuffle serialized records, not decoded images: the bounded buffer stays small in bytes.
  if shuffle:
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
  # Repeat after shuffling so that each epoch is seen whole before the next one starts.
  if config.repeat:
    ds = ds.repeat()
  # Batch before parsing: one `parse_example` per batch costs far less than one per record.
  ds = ds.batch(config.batch_size, drop_remainder=config.drop_remainder)
  return ds


def _indexed_batches(slices: Sequence[ShardSlice], config: PipelineConfig,
                     shuffle: bool) -> tf.data.Dataset:
  """Batches of serialized records read by index from ArrayRecord files."""
  if config.cache != "none":
    raise ValueError("cache is for TFRecord streams; ArrayRecord files are read by index "
                     f"already. Received: cache={config.cache!r}")
  source = records.IndexedRecords(sorted({os.fspath(s.path) for s in slices}))
  indices = source.indices(slices)
  ds = tf.data.Dataset.from_tensor_slices(indices)
  # A true global shuffle: all of the split's indices (8 bytes each), not a window of records.
  if shuffle:
    ds = ds.shuffle(len(indices), seed=config.seed, reshuffle_each_iteration=True)
  # Repeat after shuffling so that each epoch is seen whole before the next one starts.
  if config.repeat:
    ds = ds.repeat()
  # Batch indices, then read each batch's records at once.
  ds = ds.batch(config.batch_size, drop_remainder=config.drop_remainder)
  return ds.map(source.read, num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)


def cache_path(prefix: str, shards: Sequence[Shard]) -> str:
  """`prefix` + a key of the records cached: shard paths, slices, sizes and modification times.

  One `cache=` prefix then serves train, validation and test (and rebuilt shards) each with its
  own file, instead of `Dataset.cache` returning whatever an earlier pipeline cached there.
  """
  h = hashlib.sha256()
  for s in as_slices(shards):
    try:
      stat = tf.io.gfile.stat(s.path)
      stamp = f"{stat.length}:{stat.mtime_nsec}"
    except tf.errors.OpError:
      stamp = "missing"
    path = s.path if "://" in s.path else os.path.abspath(s.path)
    h.update(f"{path}\0{s.skip}\0{s.take}\0{stamp}\n".encode("utf-8", "surrogateescape"))
  return f"{prefix}.{h.hexdigest()[:16]}"


def batch_count(records: Sequence[int], batch_size: int, drop_remainder: bool = False,
                skip_batches: int = 0) -> Optional[int]:
  """Batches in an epoch over shards holding `records` each; None when a count is unknown
  (-1)."""
  if any(r < 0 for r in records):
    return None
  total = sum(records)
  batches = total // batch_size if drop_remainder else -(-total // batch_size)
  return max(batches - skip_batches, 0)


def pipeline_options(deterministic: bool) -> tf.data.Options:
  """The tf.data options every pipeline of this project runs with."""
  options = tf.data.Options()
  # Order through parallel steps is fixed only when asked: out of order never waits on a slow image.
  options.deterministic = deterministic
  # Let tf.data tune parallelism and buffer sizes (AUTOTUNE) within its RAM budget.
  options.autotune.enabled = True
  # A private pool: the model's own inter-op threads neither starve nor get starved by input.
  options.threading.private_threadpool_size = os.cpu_count() or 1
  # One thread per op: parallelism comes from parallel map/interleave, not from splitting ops.
  options.threading.max_intra_op_parallelism = 1
  # Fuse the successive per-batch maps into one function call per batch.
  options.experimental_optimization.map_fusion = True
  return options


def read_filenames(shards: Sequence[Shard]) -> list[str]:
  """The `image/filename` of every record, in the order an unshuffled pipeline reads them."""
  slices = as_slices(shards)
  files = _shard_list(slices)
  spec = {schema.FILENAME: schema.parse_spec()[schema.FILENAME]}
  names = _interleave(files, len(slices), deterministic=True).batch(1024).map(
      plain(lambda serialized: tf.io.parse_example(serialized, spec)[schema.FILENAME]))
  return [name.decode() for batch in names.as_numpy_iterator() for name in batch]


def _shard_list(slices: Sequence[ShardSlice]) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices((
      [s.path for s in slices],
      tf.constant([s.skip for s in slices], tf.int64),
      tf.constant([s.take for s in slices], tf.int64),
  ))


def _interleave(files: tf.data.Dataset, count: int, deterministic: bool) -> tf.data.Dataset:
  return files.interleave(
      plain(_read_slice),
      cycle_length=min(count, MAX_INTERLEAVE),
      num_parallel_calls=AUTOTUNE,
      deterministic=deterministic,
  )


def _read_slice(path: tf.Tensor, skip: tf.Tensor, take: tf.Tensor) -> tf.data.Dataset:
  return tf.data.TFRecordDataset(path).skip(skip).take(take)


def _parse_batch(serialized: tf.Tensor, file_names: bool = False) -> tuple:
  """(images, labels), and the file names with `file_names`."""
  keys = (schema.IMAGE, schema.LABEL, schema.FILENAME)[:3 if file_names else 2]
  spec = schema.parse_spec()
  parsed = tf.io.parse_example(serialized, {k: spec[k] for k in keys})
  return tuple(parsed[k] for k in keys)


def _raw_batch(
    encoded: tf.Tensor, labels: tf.Tensor, storage: schema.ImageStorage, config: PipelineConfig
) -> tuple[tf.Tensor, tf.Tensor]:
  """Raw records -> (B, H, W, C): uint8 when stored at the config's size, float32 if resized."""
  images = ops.convert_channels(ops.decode_raw(encoded, storage), config.channels)
  if tuple(storage.size) != tuple(config.image_size):
    images = transform.resize(images, config.image_size)
  return images, labels

