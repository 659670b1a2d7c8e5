"""The training state kept during a run, so an interrupted run can continue.

Every few steps and after every epoch the weights (with the optimizer's state) go to a new
file named after the epoch and step, then `state.json` is replaced to point at it; only
then are older weight files removed. Both steps are atomic renames, so a kill -9 at any
moment leaves a consistent pair on disk: the last save, or the one before it.

(`keras.callbacks.BackupAndRestore` writes its weights and epoch number in place, one
after the other, and does not keep the per-epoch history or the random layers' state.)

The folder may be on any file system TensorFlow knows (`gs://`, `s3://`, `ram://`): files are
written locally first and copied there with `tf.io.gfile`, then renamed into place (on object
stores a rename is a copy: atomic per object, which is what a reader sees).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Optional

import keras
import tensorflow as tf

STATE = "state.json"
_WEIGHTS = "epoch-{epoch:04d}-step-{step:08d}.weights.h5"


def _is_local(path: str) -> bool:
  return "://" not in path


def write_json(path: str, value: Any) -> None:
  """Writes JSON to `path` atomically: readers see the old file or the new one (also when
  the disk is full: the partial copy is removed and OSError raised)."""
  if not _is_local(path):
    try:
      write_file(path, lambda local: _dump_json(local, value))
    except OSError as e:
      raise OSError(e.errno, f"cannot write {path} ({e.strerror or e}); the previous "
                    "version is kept") from None
    return
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(value, f, indent=2)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _remove(tmp)
    raise OSError(e.errno, f"cannot write {path} ({e.strerror or e}); the previous "
                  "version is kept") from None


def _dump_json(path: str, value: Any) -> None:
  with open(path, "w") as f:
    json.dump(value, f, indent=2)


def load(directory: str) -> Optional[dict]:
  """The saved state (with "epoch", "weights" and whatever `save` was given), or None."""
  path = os.path.join(directory, STATE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def save(model: keras.Model, directory: str, epoch: int, step: int = 0, **state: Any) -> None:
  """Records that `epoch` epochs and `step` steps of the next one are done, with the
  model's weights at that point."""
  tf.io.gfile.makedirs(directory)
  weights = _WEIGHTS.format(epoch=epoch, step=step)
  previous = (load(directory) or {}).get("weights")
  try:
    write_file(os.path.join(directory, weights), model.save_weights)
    write_json(os.path.join(directory, STATE),
               {**state, "epoch": epoch, "step": step, "weights": weights})
  except OSError as e:
    # A full disk: the state on disk stays the previous one, whole.
    if weights != previous:
      _remove(os.path.join(directory, weights))
    raise OSError(e.errno, f"cannot save the training state in {directory} "
                  f"({e.strerror or e}); the previous state is kept") from None
  for name in tf.io.gfile.listdir(directory):
    if name.endswith(".weights.h5") and name != weights:
      tf.io.gfile.remove(os.path.join(directory, name))


def write_file(path: str, write: Callable[[str], Any]) -> None:
  """Writes `path` atomically with `write(file_path)` (e.g. `model.save_weights`).

  `write` fills a file in a local temporary folder, which is then copied beside `path` and
  renamed over it. HDF5 writing straight onto a full disk crashed the process after
  "No space left on device"; a plain copy raises OSError instead, and the partial copy is
  removed, so `path` stays the previous version. A remote `path` gets the copy through
  `tf.io.gfile` (its errors raised as OSError).
  """
  partial = os.path.join(os.path.dirname(path), f"tmp-{os.path.basename(path)}")
  with tempfile.TemporaryDirectory(prefix="petpipe-save-") as local:
    staged = os.path.join(local, os.path.basename(path))
    write(staged)
    try:
      if _is_local(path):
        shutil.copyfile(staged, partial)
        os.replace(partial, path)
      else:
        _copy_remote(staged, partial, path)
    except OSError:
      _remove(partial)
      raise


def _copy_remote(staged: str, partial: str, path: str) -> None:
  try:
    # A leftover partial copy goes first: `ram://` appends to a file it overwrites.
    if tf.io.gfile.exists(partial):
      tf.io.gfile.remove(partial)
    tf.io.gfile.copy(staged, partial)
    tf.io.gfile.rename(partial, path, overwrite=True)
  except tf.errors.OpError as e:
    raise OSError(f"cannot write {path}: {(e.message or type(e).__name__).splitlines()[0]}") \
        from None


def _remove(path: str) -> None:
  try:
    if _is_local(path):
      os.remove(path)
    else:
      tf.io.gfile.remove(path)
  except (OSError, tf.errors.OpError):
    pass


def restore(model: keras.Model, directory: str, state: dict) -> None:
  """Loads the weights and optimizer state `state` points at into a compiled `model`."""
  if model.optimizer is not None and not model.optimizer.built:
    model.optimizer.build(model.trainable_variables)
  model.load_weights(os.path.join(directory, state["weights"]))
