# Copied from keras-team/keras (Keras 3.x; taken from the installed Keras 3.15.1): the file
# `utils/dataset_utils.py` of the `keras` package's private `src` folder, plus
# `standardize_data_format` from `backend/config.py` in the same folder.
# Copyright The Keras team. Licensed under the Apache License, Version 2.0:
# http://www.apache.org/licenses/LICENSE-2.0
#
# Changes from the original (kept minimal, so that the same arguments index the same files in
# the same order and fail with the same messages as `keras.utils.image_dataset_from_directory`):
# * only `index_directory`, `iter_valid_files`, `index_subdirectory`,
#   `get_training_or_validation_split` and `check_validation_split_arg` are kept; their bodies
#   are unchanged except as listed here;
# * Keras' private `file_utils.is_remote_path` and `io_utils.print_msg` are replaced by the
#   small `_is_remote_path` and `_print_msg` below (same behaviour; the latter uses the public
#   `keras.config.is_interactive_logging_enabled`, and drops Keras' fallback for terminals
#   that cannot encode Unicode: these messages are ASCII);
# * remote paths use `tf.io.gfile` from TensorFlow directly instead of Keras' lazy module;
# * files are found with `petpipe.images.files.walk` instead of `os.walk`, and its junk rules
#   apply: named pipes, sockets and devices, names that are not UTF-8, symlink loops,
#   hidden files (`._x.jpg`) and junk folders (`__MACOSX`, `.thumbnails`) are left out and
#   recorded in the `left_out` list that `index_directory` and `iter_valid_files` now take,
#   junk folders are never classes, and with `follow_links` each real folder is read once
#   (the class folders are walked one after the other, sharing what they visited);
# * `standardize_data_format` reads the public `keras.config.image_data_format()`;
# * formatted to this project's 2-space indentation.
"""Keras' directory indexing and train/validation split, without Keras' private modules.

`keras.utils.image_dataset_from_directory` lists files, checks split arguments and splits
with these helpers; `folder_loader` uses the same code so that it finds the same files, in
the same order, and rejects the same arguments with the same errors. They live here, as a
copy, because Keras' private module paths move between releases (keras-cv broke that way).
"""

from __future__ import annotations

from multiprocessing.pool import ThreadPool
import os
import re
import sys

from absl import logging
import keras
import numpy as np

from petpipe.images import files


def standardize_data_format(data_format):
  if data_format is None:
    return keras.config.image_data_format()
  data_format = str(data_format).lower()
  if data_format not in {"channels_first", "channels_last"}:
    raise ValueError(
        "The `data_format` argument must be one of "
        "{'channels_first', 'channels_last'}. "
        f"Received: data_format={data_format}"
    )
  return data_format


def _is_remote_path(filepath) -> bool:
  """True for the remote locations Keras reads through `tf.io.gfile` (GCS, HDFS, URLs...)."""
  return bool(re.match(r"^(/cns|/cfs|/gcs|/hdfs|/readahead|/placer|/tfhub|.*://).*$",
                       str(filepath)))


def _print_msg(message) -> None:
  """Prints to stdout, or logs when Keras' interactive logging is off, as Keras does."""
  if keras.config.is_interactive_logging_enabled():
    sys.stdout.write(f"{message}\n")
    sys.stdout.flush()
  else:
    logging.info(message)


def index_directory(
    directory,
    labels,
    formats,
    class_names=None,
    shuffle=True,
    seed=None,
    follow_links=False,
    verbose=True,
    left_out=None,
):
  """List all files in `directory`, with their labels.

  Args:
      directory: Directory where the data is located.
          If `labels` is `"inferred"`, it should contain
          subdirectories, each containing files for a class.
          Otherwise, the directory structure is ignored.
      labels: Either `"inferred"`
          (labels are generated from the directory structure),
          `None` (no labels),
          or a list/tuple of integer labels of the same size as the number
          of valid files found in the directory.
          Labels should be sorted according
          to the alphanumeric order of the image file paths
          (obtained via `os.walk(directory)` in Python).
      formats: Allowlist of file extensions to index
          (e.g. `".jpg"`, `".txt"`).
      class_names: Only valid if `labels="inferred"`. This is the explicit
          list of class names (must match names of subdirectories). Used
          to control the order of the classes
          (otherwise alphanumerical order is used).
      shuffle: Whether to shuffle the data. Defaults to `True`.
          If set to `False`, sorts the data in alphanumeric order.
      seed: Optional random seed for shuffling.
      follow_links: Whether to visits subdirectories pointed to by symlinks.
      verbose: Whether the function prints number of files found and classes.
          Defaults to `True`.
      left_out: a list that receives (path, reason, is_folder) for every file
          and folder left out (see `petpipe.images.files.walk`).

  Returns:
      tuple (file_paths, labels, class_names).
      - file_paths: list of file paths (strings).
      - labels: list of matching integer labels (same length as file_paths)
      - class_names: names of the classes corresponding to these labels, in
      order.
  """
  if _is_remote_path(directory):
    import tensorflow as tf

    os_module = tf.io.gfile
    path_module = tf.io.gfile
  else:
    os_module = os
    path_module = os.path

  if labels == "inferred":
    subdirs = []
    for subdir in sorted(os_module.listdir(directory)):
      if path_module.isdir(path_module.join(directory, subdir)):
        if not files.is_junk(subdir.rstrip("/")) and files.is_utf8(subdir):
          if subdir.endswith("/"):
            subdir = subdir[:-1]
          subdirs.append(subdir)
    if class_names is not None:
      if not set(class_names).issubset(set(subdirs)):
        raise ValueError(
            "The `class_names` passed did not match the "
            "names of the subdirectories of the target directory. "
            f"Expected: {subdirs} (or a subset of it), "
            f"but received: class_names={class_names}"
        )
      subdirs = class_names  # Keep provided order.
  else:
    # In the explicit/no-label cases, index from the parent directory down.
    subdirs = [""]
    if class_names is not None:
      if labels is None:
        raise ValueError(
            "When `labels=None` (no labels), argument `class_names` "
            "cannot be specified."
        )
      else:
        raise ValueError(
            "When argument `labels` is specified, argument "
            "`class_names` cannot be specified (the `class_names` "
            "will be the sorted list of labels)."
        )
  class_names = subdirs
  class_indices = dict(zip(class_names, range(len(class_names))))

  # Build an index of the files
  # in the different class subfolders.
  pool = ThreadPool(1 if follow_links else None)
  results = []
  filenames = []
  dirpaths = [path_module.join(directory, subdir) for subdir in subdirs]
  visited = {}
  for top in (directory, *dirpaths):
    if not _is_remote_path(top) and (key := files.folder_key(top)) is not None:
      visited.setdefault(key, top)

  for dirpath in dirpaths:
    results.append(
        pool.apply_async(
            index_subdirectory,
            (dirpath, class_indices, follow_links, formats, left_out, visited),
        )
    )
  labels_list = []
  for res in results:
    partial_filenames, partial_labels = res.get()
    labels_list.append(partial_labels)
    filenames += partial_filenames

  if labels == "inferred":
    # Inferred labels.
    i = 0
    labels = np.zeros((len(filenames),), dtype="int32")
    for partial_labels in labels_list:
      labels[i : i + len(partial_labels)] = partial_labels
      i += len(partial_labels)
  elif labels is None:
    class_names = None
  else:
    # Manual labels.
    if len(labels) != len(filenames):
      raise ValueError(
          "Expected the lengths of `labels` to match the number "
          "of files in the target directory. len(labels) is "
          f"{len(labels)} while we found {len(filenames)} files "
          f"in directory {directory}."
      )
    class_names = [str(label) for label in sorted(set(labels))]
  if verbose:
    if labels is None:
      _print_msg(f"Found {len(filenames)} files.")
    else:
      _print_msg(
          f"Found {len(filenames)} files belonging "
          f"to {len(class_names)} classes."
      )
  pool.close()
  pool.join()
  file_paths = [path_module.join(directory, fname) for fname in filenames]

  if shuffle:
    # Shuffle globally to erase macro-structure
    if seed is None:
      seed = np.random.randint(1e6)
    rng = np.random.RandomState(seed)
    rng.shuffle(file_paths)
    if labels is not None:
      rng = np.random.RandomState(seed)
      rng.shuffle(labels)
  return file_paths, labels, class_names


def iter_valid_files(directory, follow_links, formats, left_out=None, visited=None):
  left_out = [] if left_out is None else left_out

  def walk():
    for root, dirnames, fnames in files.walk(directory, follow_links, left_out, visited):
      left_out.extend((os.path.join(root, d), files.JUNK_REASON, True)
                      for d in dirnames if files.is_junk(d))
      dirnames[:] = [d for d in dirnames if not files.is_junk(d)]
      yield root, dirnames, fnames

  for root, _, fnames in sorted(walk(), key=lambda x: x[0]):
    for fname in sorted(fnames):
      if fname.lower().endswith(formats):
        if files.is_junk(fname):
          left_out.append((os.path.join(root, fname), files.JUNK_REASON, False))
        else:
          yield root, fname


def index_subdirectory(directory, class_indices, follow_links, formats, left_out=None,
                       visited=None):
  """Recursively walks directory and list image paths and their class index.

  Args:
      directory: string, target directory.
      class_indices: dict mapping class names to their index.
      follow_links: boolean, whether to recursively follow subdirectories
          (if False, we only list top-level images in `directory`).
      formats: Allowlist of file extensions to index (e.g. ".jpg", ".txt").

  Returns:
      tuple `(filenames, labels)`. `filenames` is a list of relative file
          paths, and `labels` is a list of integer labels corresponding
          to these files.
  """
  if _is_remote_path(directory):
    import tensorflow as tf

    path_module = tf.io.gfile
  else:
    path_module = os.path

  dirname = os.path.basename(directory)
  valid_files = iter_valid_files(directory, follow_links, formats, left_out, visited)
  labels = []
  filenames = []
  for root, fname in valid_files:
    labels.append(class_indices[dirname])
    absolute_path = path_module.join(root, fname)
    relative_path = path_module.join(
        dirname, os.path.relpath(absolute_path, directory)
    )
    filenames.append(relative_path)
  return filenames, labels


def get_training_or_validation_split(samples, labels, validation_split, subset):
  """Potentially restrict samples & labels to a training or validation split.

  Args:
      samples: List of elements.
      labels: List of corresponding labels.
      validation_split: Float, fraction of data to reserve for validation.
      subset: Subset of the data to return.
          Either `"training"`, `"validation"`, or `None`.
          If `None`, we return all of the data.

  Returns:
      tuple (samples, labels), potentially restricted to the specified subset.
  """
  if not validation_split:
    return samples, labels

  num_val_samples = int(validation_split * len(samples))
  if subset == "training":
    _print_msg(
        f"Using {len(samples) - num_val_samples} files for training."
    )
    samples = samples[:-num_val_samples]
    if labels is not None:
      labels = labels[:-num_val_samples]
  elif subset == "validation":
    _print_msg(f"Using {num_val_samples} files for validation.")
    samples = samples[-num_val_samples:]
    if labels is not None:
      labels = labels[-num_val_samples:]
  else:
    raise ValueError(
        '`subset` must be either "training" '
        f'or "validation", received: {subset}'
    )
  return samples, labels


def check_validation_split_arg(validation_split, subset, shuffle, seed):
  """Raise errors in case of invalid argument values.

  Args:
      validation_split: float between 0 and 1, fraction of data to reserve for
          validation.
      subset: One of `"training"`, `"validation"`, or `"both"`. Only used if
          `validation_split` is set.
      shuffle: Whether to shuffle the data. Either `True` or `False`.
      seed: random seed for shuffling and transformations.
  """
  if validation_split and not 0 < validation_split < 1:
    raise ValueError(
        "`validation_split` must be between 0 and 1, "
        f"received: {validation_split}"
    )
  if (validation_split or subset) and not (validation_split and subset):
    raise ValueError(
        "If `subset` is set, `validation_split` must be set, and inversely."
    )
  if subset not in ("training", "validation", "both", None):
    raise ValueError(
        '`subset` must be either "training", '
        f'"validation" or "both", received: {subset}'
    )
  if validation_split and shuffle and seed is None:
    raise ValueError(
        "If using `validation_split` and shuffling the data, you must "
        "provide a `seed` argument, to make sure that there is no "
        "overlap between the training and validation subset."
    )
