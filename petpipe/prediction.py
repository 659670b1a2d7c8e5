"""Classifies image files, or folders of them, with a model trained by petpipe.

  for result in predict_files("outputs/demo/model.keras", ["cat.jpg", "more_pets/"]):
    print(result.path, result.label, result.probability, result.error)

The class names and the preprocessing come from `classes.json` beside the model (written
with the model by training). Each image is made exactly as the training pipeline feeds the
model: `pipeline.transform` with the saved `Preprocessing` (or, for a model saved without
one, the default policy at the model's input size), rounded to uint8 as
`normalize="none"` ships it. What TensorFlow cannot decode (WebP of some kinds, ...) is
decoded with Pillow to RGB and goes through the same channel rule and resize. A file that
cannot be read is one result with an `error`, not an exception: one bad file does not stop
the others. Models load in Keras's safe mode unless `unsafe=True`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from typing import Any, Iterable, Iterator, Optional, Sequence

import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from petpipe.models import head
from petpipe.pipeline import filesystems
from petpipe.pipeline import image_headers
from petpipe.pipeline import ops
from petpipe.pipeline import transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# TensorFlow refuses to decode more than 2^29 bytes of pixels; the header is checked first
# so that a decompression bomb is refused before anything is allocated.
MAX_DECODED_BYTES = 2**29
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


def image_files(paths: Iterable[str]) -> Iterator[str]:
  """The files given, with each folder replaced by the image files under it (sorted)."""
  for path in paths:
    path = os.fspath(path)
    if filesystems.isdir(path):
      for root, dirs, files in filesystems.walk(path):
        dirs.sort()
        for name in sorted(files):
          if name.lower().endswith(IMAGE_EXTENSIONS):
            yield os.path.join(root, name)
    else:
      yield path


def load_image(path: str, preprocessing: transform.Preprocessing) -> np.ndarray:
  """`path` as the model's uint8 input (height, width, channels); raises `UnreadableImage`."""
  try:
    data = filesystems.read_bytes(path)
  except OSError as e:
    raise UnreadableImage(e.strerror or str(e)) from None
  if not data:
    raise UnreadableImage("empty file")
  try:
    with Image.open(io.BytesIO(data)) as header:  # reads the header only
      width, height = header.size
  except Image.DecompressionBombError as e:
    raise UnreadableImage(f"image too large to decode: {e}") from None
  except (OSError, ValueError):
    width = height = 0  # not for Pillow: let TensorFlow say what is wrong with it
  if width * height * 3 > MAX_DECODED_BYTES:
    raise UnreadableImage(f"image too large to decode ({width}x{height})")
  try:
    # The JPEG header is read again by TensorFlow, as the tf.data entry reads it.
    pixels = transform.transform_bytes(
        data, preprocessing, image_format=image_headers.sniff_format(data[:16]))
  except tf.errors.OpError as e:
    rgb = _decode_with_pillow(data)
    if rgb is None:
      raise UnreadableImage(_tf_reason(e)) from None
    pixels = transform.transform_rgb(rgb, preprocessing)
  return ops.normalize(pixels, "none").numpy()


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
  if not os.path.isfile(model_path):
    raise FileNotFoundError(2, f"{model_path} does not exist.", model_path)
  try:
    return keras.models.load_model(model_path, safe_mode=not unsafe)
  except (OSError, ValueError, TypeError) as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    error = UnsafeModelError if "safe_mode" in str(e) else ValueError
    raise error(f"cannot load {model_path}: {message}") from None


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
    for chunk in _chunks(image_files(paths), batch_size):
      loaded = {}
      errors = {}
      for path in chunk:
        try:
          loaded[path] = load_image(path, self.preprocessing)
        except UnreadableImage as e:
          errors[path] = str(e)
      rows = {}
      if loaded:
        probabilities = head.probabilities(
            self.model.predict_on_batch(np.stack(list(loaded.values()))))
        rows = dict(zip(loaded, probabilities))
      for path in chunk:
        if path in errors:
          yield Prediction(path, error=errors[path])
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


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _tf_reason(error: tf.errors.OpError) -> str:
  # "{{function_node ...}} Unknown image file format. ... [Op:DecodeImage] name: "
  text = re.sub(r"\{\{[^}]*\}\}", "", error.message)
  text = re.sub(r"\[Op:[^\]]*\].*", "", text, flags=re.S)
  return " ".join(text.split()) or type(error).__name__


def _decode_with_pillow(data: bytes) -> Optional[Any]:
  """RGB pixels of what TensorFlow cannot decode but Pillow can, or None."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError):
    return None
