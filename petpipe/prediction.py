"""Classifies image files, or folders of them, with a model trained by petpipe.

  for result in predict_files("outputs/demo/model.keras", ["cat.jpg", "more_pets/"]):
    print(result.path, result.label, result.probability, result.error)

The class names and the preprocessing come from `classes.json` beside the model (written
with the model by training). Each image is made exactly as the training pipeline feeds the
model: files are found, checked and decoded by the image-file layer (`petpipe.images`) as
the builders and the folder loader do (the same extensions, the same limits on size read
before a file is read whole, the same format policy and Pillow rescue), then made by
`images.transform` with the saved `Preprocessing` (or, for a model saved without one, the
default policy at the model's input size), rounded to uint8 as `normalize="none"` ships it.
A file that cannot be read is one result with an `error`, not an exception: one bad file
does not stop the others. Models load in Keras's safe mode unless `unsafe=True`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Iterable, Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from petpipe.images import errors
from petpipe.images import files
from petpipe.images import filesystems
from petpipe.images import pixels
from petpipe.images import quiet
from petpipe.images import transform
from petpipe.images import validation
from petpipe.models import head

CLASSES_FILE = "classes.json"


class UnreadableImage(ValueError):
  """A file that is not a decodable image; its message is the one-line reason."""


class UnsafeModelError(ValueError):
  """A model that Keras's safe mode refuses to load (it holds Python code, e.g. a Lambda)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
  """What became of one file.

  Attributes:
    path: the file, as given or found in a given folder.
    label: the most probable class name (None when `error` is set).
    probability: its probability.
    error: the one-line reason the file could not be classified, else None.
  """

  path: str
  label: Optional[str] = None
  probability: Optional[float] = None
  error: Optional[str] = None


def natural_key(path: str) -> tuple:
  """Sorts as people count: `Dog/2.jpg` before `Dog/10.jpg` (numbers compared as numbers)."""
  return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
               for part in re.split(r"(\d+)", path))


def found_files(paths: Iterable[str]) -> Iterator[tuple[str, str]]:
  """(path, reason it is left out, or "") for the files given, each folder replaced by the
  image files under it, folder by folder in natural order (`natural_key`; `files.walk`:
  named pipes, names that are not UTF-8 and symlink loops are left out with their reason)."""
  for path in paths:
    path = os.fspath(path)
    if not filesystems.isdir(path):
      yield path, ""
      continue
    left_out = []
    for root, folders, names in files.walk(path, left_out=left_out):
      folders.sort(key=natural_key)  # the walk enters them in this order
      found = [(os.path.join(root, n), "") for n in names if files.has_image_extension(n)]
      found += [(p, reason) for p, reason, is_folder in left_out
                if not is_folder and files.has_image_extension(p)]
      left_out.clear()
      yield from sorted(found, key=lambda item: natural_key(item[0]))


def write_csv(results: Iterable[Prediction], path: str) -> list[Prediction]:
  """Writes one row per result (path, label, probability, error) to a CSV file at `path`
  (any file system TensorFlow knows); returns the results."""
  results = list(results)
  with tf.io.gfile.GFile(path, "w") as f:
    writer = csv.DictWriter(f, fieldnames=[field.name for field in dataclasses.fields(Prediction)],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataclasses.asdict(r) for r in results)
  return results


def load_image(path: str, preprocessing: transform.Preprocessing,
               limits: validation.Limits = validation.READER_LIMITS) -> np.ndarray:
  """`path` as the model's uint8 input (height, width, channels); raises `UnreadableImage`
  with the reason a build would skip it for."""
  try:
    with filesystems.open_read(path) as f:
      data = files.read_bounded(f, limits.max_file_bytes)
  except OSError as e:
    raise UnreadableImage(validation.unreadable(e)) from None
  if data is None:
    raise UnreadableImage(f"too_large: more than max_file_bytes={limits.max_file_bytes}")
  found = validation.check_bytes(data, limits)
  if found.reason:
    raise UnreadableImage(found.reason)
  try:
    with quiet.decoding():  # libjpeg's warnings on files it still decodes
      image = transform.transform_bytes(data, preprocessing, found.header, found.decoder)
  except (tf.errors.OpError, OSError, ValueError) as e:
    raise UnreadableImage(f"undecodable: {errors.one_line(e)}") from None
  return pixels.to_uint8(image).numpy()


def read_classes(model_path: str, classes_path: Optional[str] = None) -> Optional[dict]:
  """The contents of classes.json (beside the model unless given); None if there is none.

  Raises:
    FileNotFoundError: `classes_path` was given and does not exist.
    ValueError: the file is not a JSON object.
  """
  path = classes_path or os.path.join(os.path.dirname(os.fspath(model_path)), CLASSES_FILE)
  if not tf.io.gfile.exists(path):
    if classes_path:
      raise FileNotFoundError(2, f"{classes_path} does not exist.", classes_path)
    return None
  try:
    classes = json.loads(filesystems.read_bytes(path))
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None
  if not isinstance(classes, dict):
    raise ValueError(f"{path} must hold a JSON object. Received: {type(classes).__name__}")
  return classes


def load_model(model_path: str, unsafe: bool = False) -> keras.Model:
  """The saved model, in Keras's safe mode unless `unsafe`.

  Raises:
    FileNotFoundError: there is no file at `model_path`.
    UnsafeModelError: safe mode refused the file.
    ValueError: the file is not a loadable model.
  """
  model_path = os.fspath(model_path)
  if not filesystems.isfile(model_path):
    raise FileNotFoundError(2, f"{model_path} does not exist.", model_path)
  try:
    return keras.models.load_model(model_path, safe_mode=not unsafe)
  except (OSError, ValueError, TypeError) as e:
    error = UnsafeModelError if "safe_mode" in str(e) else ValueError
    raise error(f"cannot load {model_path}: {errors.one_line(e)}") from None


def preprocessing_for(model: keras.Model, classes: Optional[dict]) -> transform.Preprocessing:
  """The saved `Preprocessing` (classes.json "preprocessing"), else the default policy at
  the model's input size; raises ValueError if they disagree with the model's input."""
  _, height, width, channels = model.input_shape
  saved = (classes or {}).get("preprocessing")
  if saved is not None:
    preprocessing = transform.Preprocessing.from_dict(saved)
  else:
    size = (height, width)
    if None in size and classes and classes.get("image_size"):
      size = tuple(classes["image_size"])
    if None in size or channels is None:
      raise ValueError(
          "the model takes images of any size and classes.json has no preprocessing. "
          f"Received: input_shape={model.input_shape}")
    preprocessing = transform.Preprocessing(tuple(int(s) for s in size), int(channels))
  model_shape = (height, width, channels)
  wanted = (*preprocessing.image_size, preprocessing.channels)
  if any(m is not None and m != w for m, w in zip(model_shape, wanted)):
    raise ValueError(
        f"the preprocessing makes {wanted} images but the model takes {model_shape}. "
        f"Received: preprocessing={preprocessing.to_dict()}")
  return preprocessing


def class_names_for(classes: Optional[dict], num_classes: int) -> list[str]:
  """Names from classes.json; class numbers without one; ValueError if the counts differ."""
  if not classes or "class_names" not in classes:
    return [str(i) for i in range(num_classes)]
  names = list(classes["class_names"])
  if len(names) != num_classes:
    raise ValueError(
        f"classes.json names {len(names)} classes but the model predicts {num_classes}.")
  return names


class Predictor:
  """A loaded model with its class names and preprocessing; `predict` classifies files."""

  def __init__(self, model: keras.Model, class_names: Sequence[str],
               preprocessing: transform.Preprocessing):
    self.model = model
    self.class_names = list(class_names)
    self.preprocessing = preprocessing

  @classmethod
  def load(cls, model_path: str, classes_path: Optional[str] = None,
           unsafe: bool = False) -> "Predictor":
    """Loads the model and its classes.json (see `load_model`, `read_classes`)."""
    model = load_model(model_path, unsafe)
    classes = read_classes(model_path, classes_path)
    units = model.output_shape[-1]
    names = class_names_for(classes, 2 if units == 1 else units)
    return cls(model, names, preprocessing_for(model, classes))

  def predict(self, paths: Iterable[str], batch_size: int = 32) -> Iterator[Prediction]:
    """One `Prediction` per image file of `paths` (folders walked), in order."""
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    for chunk in _chunks(found_files(paths), batch_size):
      loaded = {}
      failed = {}
      for path, reason in chunk:
        try:
          if reason:
            raise UnreadableImage(reason)
          loaded[path] = load_image(path, self.preprocessing)
        except UnreadableImage as e:
          failed[path] = str(e)
      rows = {}
      if loaded:
        probabilities = head.probabilities(
            self.model.predict_on_batch(np.stack(list(loaded.values()))))
        rows = dict(zip(loaded, probabilities))
      for path, _ in chunk:
        if path in failed:
          yield Prediction(path, error=failed[path])
        else:
          best = int(rows[path].argmax())
          yield Prediction(path, self.class_names[best], float(rows[path][best]))


def predict_files(
    model_path: str,
    paths: Iterable[str],
    *,
    classes_path: Optional[str] = None,
    batch_size: int = 32,
    unsafe: bool = False,
) -> Iterator[Prediction]:
  """Classifies `paths` (files, or folders walked in sorted order) with a saved model.

  The model and classes.json are loaded (and every argument checked) before this returns;
  the images are then read and classified lazily, `batch_size` at a time.

  Raises:
    FileNotFoundError: the model, or a given `classes_path`, does not exist.
    UnsafeModelError: the model needs `unsafe=True`.
    ValueError: the model or classes.json cannot be used, or a bad argument.
  """
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
  predictor = Predictor.load(model_path, classes_path, unsafe)
  return predictor.predict(paths, batch_size)


def _chunks(items: Iterator, size: int) -> Iterator[list]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk
