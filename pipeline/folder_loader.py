"""A drop-in for `keras.utils.image_dataset_from_directory` that skips bad files.

Same arguments, same returned structure (`class_names` and `file_paths` attributes), same
errors for bad arguments, so existing code switches by changing one import. Beyond Keras:

* files that cannot be decoded (empty, foreign, cut off, CMYK for grayscale, too large) are
  found by a header check before the first epoch, skipped, and reported through the
  dataset's `skipped_files` (paths) and `skip_reasons` (path -> reason) and a log line;
* `cache_dir` converts the folder once, with the image_folder builder, into resized raw
  shards, and streams those from then on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Optional, Sequence

from absl import logging
import numpy as np
from PIL import Image
from PIL import BmpImagePlugin  # noqa: F401  (opens BMP without loading every plugin)
from PIL import WebPImagePlugin  # noqa: F401  (opens WebP without loading every plugin)
import tensorflow as tf

from petpipe.pipeline import filesystems
from petpipe.pipeline import image_headers
from petpipe.pipeline import input_pipeline
# Keras' own argument checks, directory indexing and train/validation split (a copy of
# Keras' private module), so that the same arguments index the same files in the same order
# and fail with the same errors.
from petpipe.pipeline import keras_folder_index
from petpipe.pipeline import label_files
from petpipe.pipeline import ops
from petpipe.pipeline import reading
from petpipe.pipeline import transform
from petpipe.pipeline.config import PipelineConfig
from petpipe.pipeline.input_pipeline import plain

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
INTERPOLATIONS = (
    "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
)
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_SKIPPED_SHOWN = 10
# TensorFlow's in-memory file system: transcoded copies of files the fast decoder cannot read.
_TRANSCODED_DIR = "ram://petpipe_transcoded"
# More files than this needing transcoding: decode them all with `ops.decode_any` instead.
_MAX_TRANSCODED = 64


def image_dataset_from_directory(
    directory,
    labels="inferred",
    label_mode="int",
    class_names=None,
    color_mode="rgb",
    batch_size=32,
    image_size=(256, 256),
    shuffle=True,
    seed=None,
    validation_split=None,
    subset=None,
    interpolation="bilinear",
    follow_links=False,
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
    data_format=None,
    format="tf",
    verbose=True,
    cache_dir=None,
    fast_decode=False,
):
  """Generates a `tf.data.Dataset` from image files in a directory, like Keras does.

  Takes the arguments of `keras.utils.image_dataset_from_directory` (see its documentation)
  and returns the same: batches of float32 `(images, labels)` (or images alone when
  `labels`/`label_mode` is None) with `class_names` and `file_paths` attributes, or a list
  `[train, validation]` for `subset="both"`.

  Differences: files that cannot be decoded are skipped and listed in `skipped_files` and
  `skip_reasons` instead of failing mid-epoch (`file_paths` lists only the files read);
  GIF, BMP, WebP and CMYK files are read rather than failing; only `format="tf"` is
  supported. By default the pixels are Keras's: full-size decode, then `tf.image.resize`
  with `interpolation` (through `pipeline.transform`, with JPEG DCT scaling off).

  Args:
    labels: beyond Keras's "inferred", None or a list, the path of a CSV or JSONL label
      file (columns `file_name`, relative to `directory`, and `label`; a relative path is
      taken relative to `directory`). Class names are its sorted labels, or `class_names`.
      Files it does not name (or whose label is not in `class_names`) are left out and
      listed in `skip_reasons`; names without a file are in the datasets' `missing_files`.
    cache_dir: if given, the folder is converted once (image_folder builder, raw pixels at
      `image_size`, made by `pipeline.transform`'s policy: JPEGs decoded at a reduced DCT
      scale, plain bilinear resize) into `cache_dir`, and the shards are streamed
      from then on. The cache is keyed by the folder's file list, sizes and times, so a
      changed folder is rebuilt. It labels by sub-folder (`labels` "inferred" or None),
      holds 1 or 3 channels and the default resize only; the validation subset is the last
      `validation_split` of the stored records (the builder's stable order), not Keras'
      seeded pick, and files directly in `directory` are not included.
    fast_decode: if True, each JPEG decodes at the largest DCT scale (1/2, 1/4, 1/8) at which
      it still covers `image_size` (after the crop or pad asked for), chosen per image from
      its header, as `pipeline.transform` does for training: much less decode work for
      large photos, and smoother (less aliased) pixels that differ slightly from Keras.
      Not for `color_mode="rgba"` or `interpolation="nearest"`, which keep Keras's decode.
  """
  # Beyond Keras: a label file path (`label_files`) names each file's label.
  label_file = labels if label_files.is_label_file(labels) else None
  if label_file is not None and cache_dir is not None:
    raise ValueError('cache_dir needs labels="inferred" or None: the cache labels images by '
                     f"subfolder. Received: labels={labels!r}")
  # Argument checks in Keras' order with Keras' messages.
  if labels not in ("inferred", None) and label_file is None:
    if not isinstance(labels, (list, tuple)):
      raise ValueError(
          "`labels` argument should be a list/tuple of integer labels, "
          "of the same size as the number of image files in the target "
          "directory. If you wish to infer the labels from the "
          "subdirectory "
          'names in the target directory, pass `labels="inferred"`. '
          "If you wish to get a dataset that only contains images "
          f"(no labels), pass `labels=None`. Received: labels={labels}"
      )
    if class_names:
      raise ValueError(
          "You can only pass `class_names` if "
          f'`labels="inferred"`. Received: labels={labels}, and '
          f"class_names={class_names}"
      )
  if label_mode not in {"int", "categorical", "binary", None}:
    raise ValueError(
        '`label_mode` argument must be one of "int", '
        '"categorical", "binary", '
        f"or None. Received: label_mode={label_mode}"
    )
  if labels is None or label_mode is None:
    labels = None
    label_mode = None
  if color_mode not in _CHANNELS:
    raise ValueError(
        '`color_mode` must be one of {"rgb", "rgba", "grayscale"}. '
        f"Received: color_mode={color_mode}"
    )
  num_channels = _CHANNELS[color_mode]
  if isinstance(image_size, int):
    image_size = (image_size, image_size)
  elif not isinstance(image_size, (list, tuple)) or not len(image_size) == 2:
    raise ValueError(
        "Invalid `image_size` value. Expected a tuple of 2 integers. "
        f"Received: image_size={image_size}"
    )
  image_size = tuple(image_size)
  interpolation = interpolation.lower()
  if interpolation not in INTERPOLATIONS:
    raise ValueError(
        "Argument `interpolation` should be one of "
        f"{INTERPOLATIONS}. "
        f"Received: interpolation={interpolation}"
    )
  if format not in ("tf", "grain"):
    raise ValueError(
        '`format` should be either "tf" or "grain". '
        f"Received: format={format}"
    )
  if format == "grain":
    raise ValueError('Only format="tf" is supported here. Received: format=grain')
  keras_folder_index.check_validation_split_arg(validation_split, subset, shuffle, seed)
  if pad_to_aspect_ratio and crop_to_aspect_ratio:
    raise ValueError(
        "Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio`"
        " can be set to `True`."
    )

  labels_argument, user_seed = labels, seed
  if seed is None:
    seed = np.random.randint(1e6)
  left_out, missing = {}, []
  if label_file is not None:
    image_paths, labels, class_names, left_out, missing = _index_label_file(
        directory, label_file, class_names, shuffle, seed, follow_links, verbose)
    if not label_mode:
      labels = None
  else:
    image_paths, labels, class_names = keras_folder_index.index_directory(
        directory,
        labels,
        formats=ALLOWLIST_FORMATS,
        class_names=class_names,
        shuffle=shuffle,
        seed=seed,
        follow_links=follow_links,
        verbose=verbose,
    )
  if label_mode == "binary" and len(class_names) != 2:
    raise ValueError(
        'When passing `label_mode="binary"`, there must be exactly 2 '
        f"class_names. Received: class_names={class_names}"
    )
  data_format = keras_folder_index.standardize_data_format(data_format=data_format)
  options = _LoadOptions(
      image_size=image_size,
      num_channels=num_channels,
      label_mode=label_mode,
      num_classes=len(class_names) if class_names else 0,
      interpolation=interpolation,
      crop_to_aspect_ratio=crop_to_aspect_ratio,
      pad_to_aspect_ratio=pad_to_aspect_ratio,
      data_format=data_format,
      batch_size=batch_size,
      # An unseeded shuffle is random anyway, so its order need not be kept through the
      # parallel decode; a seeded or unshuffled order is reproducible, as in Keras.
      deterministic=not shuffle or user_seed is not None,
      fast_decode=bool(fast_decode),
  )
  subsets = ["training", "validation"] if subset == "both" else [subset]

  if cache_dir is not None:
    _check_cacheable(labels_argument, color_mode, options)
    datasets = _from_cache(
        directory, cache_dir, image_paths, class_names, options, shuffle, seed,
        validation_split, subsets, follow_links, verbose,
    )
  else:
    datasets = []
    for name in subsets:
      paths, subset_labels = keras_folder_index.get_training_or_validation_split(
          image_paths, labels, validation_split, name
      )
      if not paths:
        raise ValueError(_no_images_message(directory, name if subset == "both" else None))
      datasets.append(_from_files(paths, subset_labels, options,
                                  shuffle=shuffle and not (subset == "both"
                                                           and name == "validation"),
                                  seed=seed,
                                  verbose=verbose))
  for dataset in datasets:
    dataset.class_names = class_names
    if label_file is not None:
      # Files the label file leaves out are listed with the files skipped as unreadable.
      dataset.skip_reasons = {**left_out, **dataset.skip_reasons}
      dataset.skipped_files = sorted(dataset.skip_reasons)
      dataset.missing_files = missing
  return datasets if subset == "both" else datasets[0]


def _index_label_file(directory, label_file: str, class_names, shuffle, seed, follow_links,
                      verbose):
  """(paths, int labels, class names, {path: reason} left out, names without a file) of the
  image files under `directory` labelled by `label_file` (see `pipeline.label_files`).

  Files are indexed as Keras indexes them for a list of labels (every allowed file below
  `directory`, sorted, then shuffled with `seed`); those the label file does not name, or
  names with a label outside `class_names`, are left out with that reason.
  """
  parsed = label_files.read(label_files.resolve(label_file, os.fspath(directory)))
  names = parsed.class_names(class_names)
  index = {name: i for i, name in enumerate(names)}
  found, _, _ = keras_folder_index.index_directory(
      directory, None, formats=ALLOWLIST_FORMATS, shuffle=False, follow_links=follow_links,
      verbose=False)
  paths, labels, left_out, present = [], [], {}, set()
  for path in found:
    rel = os.path.relpath(path, directory).replace(os.sep, "/")
    present.add(rel)
    reason = parsed.reason_left_out(rel, index)
    if reason:
      left_out[path] = reason
    else:
      paths.append(path)
      labels.append(index[parsed.labels[rel]])
  missing = [n for n in parsed.missing(present)
             if not tf.io.gfile.exists(os.path.join(directory, *n.split("/")))]
  if missing:
    logging.warning("%d name(s) in %s have no file: %s", len(missing), parsed.path,
                    ", ".join(missing[:_SKIPPED_SHOWN]))
  if verbose:
    print(f"Found {len(paths)} files belonging to {len(names)} classes "
          f"({len(left_out)} left out by the labels file).")
  labels = np.asarray(labels, np.int32)
  if shuffle:
    # As Keras shuffles: paths and labels with two generators of the same seed.
    np.random.RandomState(seed).shuffle(paths)
    np.random.RandomState(seed).shuffle(labels)
  return paths, labels, names, left_out, missing


@dataclasses.dataclass(frozen=True)
class _LoadOptions:
  """The settings every image of one call is loaded with (see the public arguments)."""

  image_size: tuple
  num_channels: int
  label_mode: Optional[str]
  num_classes: int
  interpolation: str
  crop_to_aspect_ratio: bool
  pad_to_aspect_ratio: bool
  data_format: str
  batch_size: Optional[int]
  deterministic: bool
  fast_decode: bool = False


def _check_cacheable(labels, color_mode, options) -> None:
  """The cache holds raw pixels resized bilinearly, labelled by subfolder: refuse the rest."""
  if isinstance(labels, (list, tuple)):
    raise ValueError(
        'cache_dir needs labels="inferred" or None: the cache labels images by subfolder. '
        "Received: labels=[...]"
    )
  if color_mode == "rgba":
    raise ValueError('cache_dir stores 1 or 3 channels. Received: color_mode="rgba"')
  for name, default in (("interpolation", "bilinear"), ("crop_to_aspect_ratio", False),
                        ("pad_to_aspect_ratio", False)):
    if getattr(options, name) != default:
      raise ValueError(
          f"cache_dir stores images resized with the default {name}={default!r}. "
          f"Received: {name}={getattr(options, name)!r}"
      )


def _from_cache(directory, cache_dir, image_paths, class_names, options, shuffle, seed,
                validation_split, subsets, follow_links, verbose) -> list[tf.data.Dataset]:
  """Builds (once) raw shards of the folder with the image_folder builder and streams them."""
  # Imported here: only this path needs the builders.
  from petpipe.builders import folder_builder
  from petpipe.builders.folder_builder import FolderConfig
  from petpipe.builders.image_folder.image_folder_dataset_builder import Builder

  from petpipe.builders import sources as sources_lib

  height, width = options.image_size
  channels = options.num_channels
  # The cache is fresh while every file the builder reads is unchanged (WebP too).
  class_dirs = list(class_names) if class_names else sources_lib.subfolders(os.fspath(directory))
  read = [os.path.join(directory, *c.path.split("/"))
          for c in sources_lib.FolderSource(os.fspath(directory), class_dirs, follow_links).candidates()]
  config = FolderConfig(
      name=_cache_name(directory, read, class_names, options),
      root=os.fspath(directory),
      class_names=list(class_names) if class_names else None,
      encoding="raw",
      image_size=height if height == width else (height, width),
      channels=channels,
      balance="none",
      split_percent=(100, 0, 0),
      follow_links=follow_links,
      # As Keras: every class folder is a class (`train/`, `test/` too), and every readable
      # file is delivered.
      pre_split=False,
      allow_empty_classes=True,
      duplicates="keep",
  )
  builder = Builder(config=config, data_dir=os.fspath(cache_dir))
  builder.download_and_prepare()
  dataset_dir = os.fspath(builder.data_dir)
  info = reading.dataset_info(dataset_dir)
  # The builder lists every file it did not store, with its reason, in its manifest.
  listed = set(image_paths)
  skip_reasons = {}
  for row in folder_builder.read_manifest(dataset_dir):
    path = os.path.join(directory, *row["path"].split("/"))
    if row["status"] == "skipped" and path in listed:
      skip_reasons[path] = row["reason"]
  if skip_reasons:
    _report_skipped(skip_reasons, len(image_paths), verbose)

  total = info.num_examples["train"]
  num_val = int(validation_split * total) if validation_split else 0
  splits = {None: "train", "training": f"train[:{total - num_val}]",
            "validation": f"train[{total - num_val}:]"}
  datasets = []
  for name in subsets:
    if splits[name] != "train" and (num_val == 0 or num_val == total):
      raise ValueError(_no_images_message(directory, name if len(subsets) > 1 else None))
    shards = reading.split_shards(dataset_dir, splits[name])
    shuffled = shuffle and not (len(subsets) > 1 and name == "validation")
    batch = options.batch_size or 32
    pipeline = PipelineConfig(
        image_size=options.image_size, channels=channels, batch_size=batch,
        shuffle_buffer=batch * 8 if shuffled else 0, seed=int(seed),
        deterministic=options.deterministic, normalize="none", label_mode="int",
    )
    ds = input_pipeline.make_dataset(shards, info.storage, pipeline, training=shuffled,
                                     num_classes=info.num_classes)
    ds = ds.map(plain(lambda images, labels: _keras_batch(images, labels, options)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
    if options.batch_size is None:
      ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(
          sum(s.take for s in input_pipeline.as_slices(shards))))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.file_paths = [os.path.join(directory, f)
                     for f in input_pipeline.read_filenames(shards)]
    ds.skipped_files = sorted(skip_reasons)
    ds.skip_reasons = dict(skip_reasons)
    datasets.append(ds)
  return datasets


def _keras_batch(images, labels, options):
  """uint8 batches from the shards -> what Keras delivers: float32 0-255, its label format."""
  images = tf.cast(images, tf.float32)
  if options.data_format == "channels_first":
    images = tf.transpose(images, (0, 3, 1, 2))
  if not options.label_mode:
    return images
  return images, ops.encode_labels(labels, options.label_mode, options.num_classes)


def _cache_name(directory, image_paths, class_names, options) -> str:
  """A config name that changes when the files, their sizes or times, or the settings do."""
  digest = hashlib.sha1()
  digest.update(filesystems.absolute(directory).encode())
  digest.update(repr(list(class_names or [])).encode())
  for path in sorted(image_paths):
    try:
      size, mtime_ns = filesystems.stat(path)
      digest.update(f"{path}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except OSError:  # a dangling symlink: its name still counts
      digest.update(f"{path}\0missing\n".encode("utf-8", "surrogateescape"))
  height, width = options.image_size
  return f"raw{height}x{width}c{options.num_channels}_{digest.hexdigest()[:12]}"


def _no_images_message(directory, which: Optional[str]) -> str:
  prefix = {None: "No images", "training": "No training images",
            "validation": "No validation images"}[which]
  return f"{prefix} found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS}"


def _from_files(paths, labels, options, shuffle, seed, verbose) -> tf.data.Dataset:
  """Checks the files' headers, then streams the good ones: read, decode, resize, batch."""
  headers, reasons = check_files(paths, options.num_channels)
  sources, any_format = _decodable_sources(headers, options.num_channels, reasons)
  keep = [i for i, p in enumerate(paths) if p not in reasons]
  good_paths = [paths[i] for i in keep]
  if reasons:
    _report_skipped(reasons, len(paths), verbose)
  if any_format:
    decode = _decoder_for(options, lambda encoded: ops.decode_any(encoded, options.num_channels))
  else:
    decode = _decoder_for(options, lambda encoded: ops.decode(encoded, options.num_channels))
  load = plain(lambda source: _load_image(source, decode, options))

  ds = tf.data.Dataset.from_tensor_slices([sources[p] for p in good_paths])
  if options.label_mode:
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(
        np.asarray([labels[i] for i in keep], np.int32))))
  if shuffle:
    buffer = options.batch_size * 8 if options.batch_size is not None else 1024
    ds = ds.shuffle(buffer_size=buffer, seed=seed)
  if options.label_mode:
    ds = ds.map(plain(lambda source, label: (load(source), label)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
  else:
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
  # A file that passed the checks but still fails to decode is dropped, with a warning.
  ds = ds.ignore_errors(log_warning=True)
  if options.batch_size is not None:
    ds = ds.batch(options.batch_size)
  # `ignore_errors` hides the length from tf.data; the header check above already left out
  # the files that cannot be read, so the count is known (as Keras's own loader states it).
  count = len(good_paths)
  if options.batch_size is not None:
    count = -(-count // options.batch_size)
  ds = ds.apply(tf.data.experimental.assert_cardinality(count))
  if options.label_mode:
    ds = ds.map(plain(lambda images, labels: (
        images, ops.encode_labels(labels, options.label_mode, options.num_classes))))
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(
      input_pipeline.pipeline_options(options.deterministic))
  ds.file_paths = good_paths
  ds.skipped_files = [p for p in paths if p in reasons]
  ds.skip_reasons = {p: reasons[p] for p in ds.skipped_files}
  return ds


def check_files(
    paths: Sequence[str], channels: int
) -> tuple[dict[str, image_headers.ImageHeader], dict[str, str]]:
  """Headers of the good files and reasons for the bad ones, found without decoding.

  Only files that look cut off (no end marker) are decoded, to tell truncation from
  harmless trailing bytes.
  """
  headers, reasons = {}, {}
  # One thread: ~15 us a file; Python threads contend for the GIL and were 4x slower.
  for path in paths:
    result = _header_or_reason(path)
    if isinstance(result, str):
      reasons[path] = result
      continue
    reason = None if result.complete else _decode_error(path, result, channels)
    if reason:
      reasons[path] = f"cut off: {reason}"
    else:
      headers[path] = result
  return headers, reasons


def _header_or_reason(path: str):
  try:
    return image_headers.read_header(path)
  except image_headers.BadImageError as e:
    return str(e)
  except OSError as e:
    return f"unreadable: {e}"


def _decode_error(path: str, header: image_headers.ImageHeader, channels: int) -> Optional[str]:
  """None if the file decodes, else the decoder's reason."""
  try:
    _decode_eagerly(path, header, channels)
  except tf.errors.OpError as e:
    return _short_error(e)
  except (OSError, ValueError) as e:  # Pillow, for WebP.
    return f"{type(e).__name__}: {e}"
  return None


def _decode_eagerly(path: str, header: image_headers.ImageHeader, channels: int) -> np.ndarray:
  """Any readable image file -> uint8 (H, W, 3 or 4), with Pillow for WebP and for the BMPs
  TensorFlow rejects or misreads (RLE, 1/4/8-bit palette, 16-bit)."""
  if header.needs_pillow or header.format == "webp":
    with filesystems.open_read(path) as f, \
        Image.open(f, formats=["BMP" if header.needs_pillow else "WEBP"]) as image:
      return np.asarray(image.convert("RGBA" if channels == 4 else "RGB"))
  data = tf.constant(filesystems.read_bytes(path))
  if channels == 4:
    return ops.decode_any(data, 4).numpy()
  # Every format TensorFlow reads decodes to RGB, also GIF, BMP and CMYK JPEG.
  return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def _decodable_sources(headers: dict, channels: int, reasons: dict) -> tuple[dict[str, str], bool]:
  """(path to read for each good file: itself, or an in-memory PNG of it; whether every
  file must take the slower any-format decode).

  The few files the fast decoder cannot turn into `channels` (GIF, BMP and CMYK JPEG for
  grayscale; WebP always) are transcoded once to PNG in TensorFlow's in-memory file system,
  so that one decode without control flow serves every file of the folder. When too many
  files need it to keep them in memory, every file takes `ops.decode_any` (which reads
  WebP too) and only the BMPs TensorFlow rejects or misreads are transcoded, by Pillow.
  """
  foreign = [path for path, header in headers.items()
             if header.format == "webp" or header.needs_pillow
             or (channels != 4 and header.format in ("gif", "bmp"))
             or (channels == 1 and header.format == "jpeg" and header.components == 4)]
  any_format = len(foreign) > _MAX_TRANSCODED
  if any_format:
    foreign = [path for path in foreign if headers[path].needs_pillow]
  sources = {path: path for path in headers}
  for path in foreign:
    try:
      image = _decode_eagerly(path, headers[path], channels)
      if channels == 1:
        image = np.round(image @ np.asarray(ops.LUMA_WEIGHTS, np.float32))[..., np.newaxis]
      # Uncompressed: encoding costs a copy, and there are at most `_MAX_TRANSCODED` of them.
      png = tf.io.encode_png(image.astype(np.uint8), compression=0)
    except (tf.errors.OpError, OSError, ValueError) as e:
      reasons[path] = f"cannot be transcoded: {e}"
      del headers[path], sources[path]
      continue
    key = hashlib.sha1(filesystems.absolute(path).encode()).hexdigest()
    sources[path] = f"{_TRANSCODED_DIR}/{key}.png"
    tf.io.gfile.makedirs(_TRANSCODED_DIR)
    with tf.io.gfile.GFile(sources[path], "wb") as f:
      f.write(png.numpy())
  return sources, any_format


def _short_error(error: tf.errors.OpError) -> str:
  """TensorFlow's error message without the op and function names around it."""
  message = (error.message or type(error).__name__).splitlines()[0]
  message = re.sub(r"^\{\{[^}]*\}\}\s*", "", message)
  return re.sub(r"\s*\[Op:\w+\].*$", "", message)


def _report_skipped(reasons: dict, total: int, verbose: bool) -> None:
  shown = "; ".join(f"{p} ({r})" for p, r in list(reasons.items())[:_SKIPPED_SHOWN])
  more = f"; and {len(reasons) - _SKIPPED_SHOWN} more" if len(reasons) > _SKIPPED_SHOWN else ""
  message = f"Skipped {len(reasons)} of {total} files that cannot be decoded: {shown}{more}"
  logging.warning(message)
  if verbose:
    print(message)


def _decoder_for(options, keras_decode):
  """`keras_decode` (Keras's full-size decode), or with `fast_decode` the JPEGs among the
  files at their largest DCT scale still covering the output (`transform.decode_jpeg`)."""
  channels = options.num_channels
  if channels == 4:
    # Neither JPEG nor GIF decoders make RGBA themselves (Keras fails on them here).
    return lambda encoded: ops.decode_any(encoded, channels)
  if not options.fast_decode or options.interpolation == "nearest":
    return keras_decode
  fit = _fit(options)

  def decode(encoded):
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: transform.decode_jpeg(encoded, channels, options.image_size, fit),
        lambda: keras_decode(encoded),
    )
    image.set_shape([None, None, channels])
    return image

  return decode


def _fit(options) -> str:
  if options.crop_to_aspect_ratio:
    return "crop"
  return "pad" if options.pad_to_aspect_ratio else "stretch"


def _load_image(path: tf.Tensor, decode, options) -> tf.Tensor:
  """Reads, decodes and resizes one image as Keras does (float32 0-255; uint8 for "nearest")."""
  image = decode(tf.io.read_file(path))
  size = options.image_size
  image = transform.resize(image, size, method=options.interpolation, fit=_fit(options))
  if options.interpolation == "nearest":
    image = tf.cast(image, tf.uint8)  # Keras keeps the decoded dtype for "nearest".
  if options.data_format == "channels_first":
    image = tf.transpose(image, (2, 0, 1))
    image.set_shape((options.num_channels, size[0], size[1]))
  else:
    image.set_shape((size[0], size[1], options.num_channels))
  return image
