"""A drop-in for `keras.utils.image_dataset_from_directory` that skips bad files.

Same arguments, same returned structure (`class_names` and `file_paths` attributes), same
errors for bad arguments, so existing code switches by changing one import. Beyond Keras:

* files are found, checked and decoded by the image-file layer (`petpipe.images`), as the
  builders and prediction find, check and decode them: files that cannot be decoded
  (empty, foreign, cut off, too large) are found by a header check before the first epoch,
  skipped, and reported through the dataset's `skipped_files` (paths) and `skip_reasons`
  (path -> reason) and one printed line (`pipeline.folder_files`);
* `fast_decode` gives the one transform's pixels, the ones `petpipe predict` feeds;
* `cache_dir` decodes each subset once into raw records and streams those from then on
  (`pipeline.folder_cache`).
"""

from __future__ import annotations

import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from petpipe.images import files
from petpipe.images import filesystems
from petpipe.images import sources
# Keras' own argument checks, directory indexing and train/validation split (a copy of
# Keras' private module), so that the same arguments index the same files in the same order
# and fail with the same errors.
from petpipe.pipeline import folder_cache
from petpipe.pipeline import file_splits
from petpipe.pipeline import folder_files
from petpipe.pipeline import keras_folder_index
from petpipe.pipeline import label_files

INTERPOLATIONS = (
    "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
)
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_SKIPPED_SHOWN = 10


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
    split_percent=None,
):
  """Generates a `tf.data.Dataset` from image files in a directory, like Keras does.

  Takes the arguments of `keras.utils.image_dataset_from_directory` (see its documentation)
  and returns the same: batches of float32 `(images, labels)` (or images alone when
  `labels`/`label_mode` is None) with `class_names` and `file_paths` attributes, or a list
  `[train, validation]` for `subset="both"`.

  Differences: files that cannot be decoded are skipped and listed in `skipped_files` and
  `skip_reasons` instead of failing mid-epoch (`file_paths` lists only the files read), as
  are what the image-file layer leaves out (named pipes, names that are not UTF-8, symlink
  loops, junk such as `__MACOSX/` and `._x.jpg`, files beside the class folders); WebP files
  are indexed, and GIF, BMP, WebP and CMYK files are read rather than failing; only
  `format="tf"` is supported. By default the pixels are Keras's: full-size decode, then
  `tf.image.resize` with `interpolation`.

  Args:
    labels: beyond Keras's "inferred", None or a list, the path of a CSV or JSONL label
      file (columns `file_name`, relative to `directory`, and `label`; a relative path is
      taken relative to `directory`). Class names are its sorted labels, or `class_names`.
      Files it does not name (or whose label is not in `class_names`) are left out and
      listed in `skip_reasons`; names without a file are in the datasets' `missing_files`.
    cache_dir: if given, each subset's files are decoded once, as `fast_decode` decodes
      them, and written as raw records into `cache_dir` (outside `directory`), then
      streamed from there without decoding (`pipeline.folder_cache`). An entry is keyed by
      the subset's files (paths, labels, sizes, times) and the settings, so a changed
      folder is written again; it holds 1 or 3 channels (not `color_mode="rgba"`).
    fast_decode: if True, every file takes the one transform (`images.transform`) that
      builds and prediction apply: each JPEG decodes at the largest DCT scale (1/2, 1/4,
      1/8) at which it still covers `image_size` (after the crop or pad asked for), other
      formats to RGB then rounded BT.601 luma for grayscale, and the resized pixels are
      rounded to whole values as the records hold them: much less decode work for large
      photos, and the pixels a model trained on a folder later gets from `predict`. Not for
      `color_mode="rgba"` or `interpolation="nearest"`, which keep Keras's decode.
    split_percent: instead of `validation_split` and `subset`, (train, validation, test)
      percentages: returns {"train": ..., "validation": ..., "test": ...} (splits without
      files left out), each file's split fixed by a hash of its path relative to
      `directory` (the builders' rule, `pipeline.file_splits`), so the validation and test
      files depend on the folder alone, never on `seed`; they come in path order, the
      training split shuffled as `shuffle` and `seed` say.
  """
  # Beyond Keras: a label file path (`label_files`) names each file's label.
  label_file = labels if label_files.is_label_file(labels) else None
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
  if split_percent is not None and (validation_split or subset):
    raise ValueError("split_percent replaces validation_split and subset. Received: "
                     f"split_percent={split_percent}, validation_split={validation_split}, "
                     f"subset={subset}")
  if pad_to_aspect_ratio and crop_to_aspect_ratio:
    raise ValueError(
        "Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio`"
        " can be set to `True`."
    )

  user_seed = seed
  if seed is None:
    seed = np.random.randint(1e6)
  if cache_dir is not None:
    _check_cache_dir(directory, cache_dir, color_mode)
  left_out, missing = {}, []
  if label_file is not None:
    image_paths, labels, class_names, left_out, missing = _index_label_file(
        directory, label_file, class_names, shuffle, seed, follow_links, verbose)
    if not label_mode:
      labels = None
  else:
    walked, inferred = [], labels == "inferred"
    image_paths, labels, class_names = keras_folder_index.index_directory(
        directory,
        labels,
        formats=files.IMAGE_EXTENSIONS,
        class_names=class_names,
        shuffle=shuffle,
        seed=seed,
        follow_links=follow_links,
        verbose=verbose,
        left_out=walked,
    )
    left_out = _left_out(directory, walked, inferred)
  if label_mode == "binary" and len(class_names) != 2:
    raise ValueError(
        'When passing `label_mode="binary"`, there must be exactly 2 '
        f"class_names. Received: class_names={class_names}"
    )
  data_format = keras_folder_index.standardize_data_format(data_format=data_format)
  options = folder_files.LoadOptions(
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
  if split_percent is not None:
    named = _stable_splits(directory, image_paths, labels, split_percent)
    if "train" not in named:
      raise ValueError(_no_images_message(directory, "training"))
  else:
    subsets = ["training", "validation"] if subset == "both" else [subset]
    named = {name: keras_folder_index.get_training_or_validation_split(
        image_paths, labels, validation_split, name) for name in subsets}
  datasets = []
  for name, (paths, subset_labels) in named.items():
    if not paths:
      raise ValueError(_no_images_message(directory, name if subset == "both" else None))
    shuffled = shuffle and name in ("train", "training", None)
    datasets.append(_subset(directory, name, paths, subset_labels, options, shuffled, seed,
                            cache_dir))
  skipped = {**left_out, **{p: r for ds in datasets for p, r in ds.skip_reasons.items()}}
  if skipped:
    _report_skipped(skipped, len(image_paths) + len(left_out), verbose)
  for dataset in datasets:
    dataset.class_names = class_names
    # What was left out before the files were checked is listed with the files skipped.
    dataset.skip_reasons = {**left_out, **dataset.skip_reasons}
    dataset.skipped_files = sorted(dataset.skip_reasons)
    if label_file is not None:
      dataset.missing_files = missing
  if split_percent is not None:
    return dict(zip(named, datasets))
  return datasets if subset == "both" else datasets[0]


def _stable_splits(directory, paths, labels, percent) -> dict:
  """{split: (paths, labels)} by `file_splits.split_of` of each path relative to `directory`;
  evaluation splits in path order (the training split keeps the index's order)."""
  by_split = {}
  for i, path in enumerate(paths):
    rel = os.path.relpath(path, directory).replace(os.sep, "/")
    by_split.setdefault(file_splits.split_of(rel, percent), []).append(i)
  named = {}
  for split in file_splits.SPLITS:
    order = by_split.get(split, [])
    if split != "train":
      order = sorted(order, key=lambda i: paths[i])
    if order:
      named[split] = ([paths[i] for i in order],
                      None if labels is None else [labels[i] for i in order])
  return named


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
  walked = []
  found, _, _ = keras_folder_index.index_directory(
      directory, None, formats=files.IMAGE_EXTENSIONS, shuffle=False, follow_links=follow_links,
      verbose=False, left_out=walked)
  paths, labels, left_out, present = [], [], _left_out(directory, walked, False), set()
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


def _left_out(directory, walked, inferred: bool) -> dict:
  """{path: reason} of what indexing left out: files with an image name and folders (their
  path ends in "/") that `files.walk` left out, and, when labels come from the class
  folders, the image files beside them."""
  reasons = {}
  for path, reason, is_folder in walked:
    if is_folder:
      reasons[path.rstrip("/") + "/"] = reason
    elif files.has_image_extension(path):
      reasons[path] = reason
  if inferred:
    top = []
    walker = files.walk(os.fspath(directory), follow_links=True, left_out=top)
    _, _, names = next(walker, ("", [], []))
    walker.close()
    for name in names:
      if files.has_image_extension(name):
        reasons[os.path.join(directory, name)] = sources.NOT_IN_CLASS_FOLDER
    reasons.update({path: reason for path, reason, is_folder in top
                    if not is_folder and files.has_image_extension(path)})
  return dict(sorted(reasons.items()))


def _check_cache_dir(directory, cache_dir, color_mode) -> None:
  if color_mode == "rgba":
    raise ValueError('cache_dir stores 1 or 3 channels. Received: color_mode="rgba"')

  def real(path):  # a symlink into the folder (or a folder reached through one) is inside too
    return os.path.realpath(path) if filesystems.is_local(path) else filesystems.absolute(path)

  inside = os.path.join(real(os.fspath(directory)), "")
  if os.path.join(real(os.fspath(cache_dir)), "").startswith(inside):
    raise ValueError(
        f"cache_dir must lie outside the folder being read: its entries would become files "
        f"or classes of it. Received: cache_dir={cache_dir!r} inside directory={directory!r}")


def _subset(directory, name, paths, labels, options, shuffle, seed, cache_dir) -> tf.data.Dataset:
  """The dataset of one subset's files: checked, then decoded per file, or from the cache."""
  checks, reasons = folder_files.check(paths)
  keep = [i for i, p in enumerate(paths) if p not in reasons]
  good = [paths[i] for i in keep]
  good_labels = None if labels is None else [labels[i] for i in keep]
  if cache_dir is not None:
    cached = folder_cache.read(directory, name or "all", good, good_labels, checks, options,
                               cache_dir, shuffle, seed)
    ds, delivered = cached.dataset, cached.file_paths
    reasons.update(cached.skip_reasons)
  else:
    ds = folder_files.dataset(good, good_labels, checks, options, shuffle=shuffle, seed=seed)
    delivered = good
  ds.file_paths = delivered
  ds.skip_reasons = {p: reasons[p] for p in paths if p in reasons}
  return ds


def _report_skipped(reasons: dict, total: int, verbose: bool) -> None:
  shown = "; ".join(f"{p} ({r})" for p, r in list(reasons.items())[:_SKIPPED_SHOWN])
  more = f"; and {len(reasons) - _SKIPPED_SHOWN} more" if len(reasons) > _SKIPPED_SHOWN else ""
  message = f"Skipped {len(reasons)} of {total} files: {shown}{more}"
  if verbose:
    print(message)  # as Keras prints "Found N files ..."
  else:
    logging.warning(message)


def _no_images_message(directory, which: Optional[str]) -> str:
  prefix = {None: "No images", "training": "No training images",
            "validation": "No validation images"}[which]
  return f"{prefix} found in directory {directory}. Allowed formats: {files.IMAGE_EXTENSIONS}"
