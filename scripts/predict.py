"""Classifies image files, or folders of them, with a model saved by `scripts/train.py`.

  python scripts/predict.py --model outputs/demo/model.keras cat.jpg more_pets/

Prints `path: label (probability)` per image, in the order given (folders sorted,
recursively). A file that cannot be read or decoded is reported as `path: error: reason`
on stderr and skipped: the exit code is 0 when at least one image was classified, and 1
when none was (so a script notices a run that classified nothing).

The class names come from `classes.json` beside the model (written by train.py), the
image size and channels from the model's input. Images are decoded with TensorFlow and
resized as the builders resize them (anti-aliased bilinear); what TensorFlow cannot
decode (CMYK JPEG, for one) is tried with Pillow, as the builders do. The model is loaded in
Keras's safe mode unless --unsafe is given.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Iterator, Optional, Sequence

import click
import numpy as np
from PIL import Image

# TensorFlow's C++ start-up chatter is not the user's business (set before importing it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from petpipe.models import head  # noqa: E402
from petpipe.pipeline import ops  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# TensorFlow refuses to decode more than 2^29 bytes of pixels; check the header first so
# a decompression bomb is refused before anything is allocated.
MAX_DECODED_BYTES = 2**29


class UnreadableImage(Exception):
  """A file that is not a decodable image; its message is the one-line reason."""


def image_files(paths: Sequence[str]) -> Iterator[str]:
  """The files given, with each folder replaced by the image files under it (sorted)."""
  for path in paths:
    if os.path.isdir(path):
      for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
          if name.lower().endswith(IMAGE_EXTENSIONS):
            yield os.path.join(root, name)
    else:
      yield path


def _tf_reason(error: tf.errors.OpError) -> str:
  # "{{function_node ...}} Unknown image file format. ... [Op:DecodeImage] name: "
  text = re.sub(r"\{\{[^}]*\}\}", "", error.message)
  text = re.sub(r"\[Op:[^\]]*\].*", "", text, flags=re.S)
  return " ".join(text.split()) or type(error).__name__


def _decode_with_pillow(data: bytes, channels: int) -> Optional[np.ndarray]:
  """What TensorFlow cannot decode but Pillow can (CMYK JPEG, WebP, ...), or None."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("L" if channels == 1 else "RGB")).reshape(
          image.height, image.width, channels)
  except (OSError, ValueError, Image.DecompressionBombError):
    return None


def load_image(path: str, size: Sequence[int], channels: int) -> np.ndarray:
  """`path` as float32 pixels in [0, 255], shape (height, width, channels)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
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
  if width * height * max(channels, 3) > MAX_DECODED_BYTES:
    raise UnreadableImage(f"image too large to decode ({width}x{height})")
  try:
    image = ops.decode(tf.constant(data), channels)
  except tf.errors.OpError as e:
    image = _decode_with_pillow(data, channels)
    if image is None:
      raise UnreadableImage(_tf_reason(e)) from None
  resized = tf.image.resize(image, size, method="bilinear", antialias=True)
  return tf.clip_by_value(tf.round(resized), 0, 255).numpy()


def class_names_for(model_path: str, classes_path: Optional[str], num_classes: int) -> list[str]:
  """Names from classes.json (next to the model unless given); numbers if there is none."""
  path = classes_path or os.path.join(os.path.dirname(model_path), "classes.json")
  if not os.path.exists(path):
    if classes_path:
      raise click.BadParameter(f"{classes_path} does not exist.", param_hint="--classes")
    return [str(i) for i in range(num_classes)]
  with open(path) as f:
    names = json.load(f)["class_names"]
  if len(names) != num_classes:
    raise click.ClickException(
        f"{path} names {len(names)} classes but the model predicts {num_classes}.")
  return list(names)


def _num_classes(model: keras.Model) -> int:
  units = model.output_shape[-1]
  return 2 if units == 1 else units


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_path", default=os.path.join("outputs", "demo", "model.keras"),
              show_default=True, type=click.Path(dir_okay=False), help="A saved .keras model.")
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False),
              help="classes.json with the class names. [default: beside the model]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--unsafe", is_flag=True,
              help="Allow unsafe deserialisation (Lambda layers); only for trusted files.")
def main(paths: tuple, model_path: str, classes_path: Optional[str], batch_size: int,
         unsafe: bool):
  """Prints the predicted label and its probability for each image in PATHS."""
  if not os.path.isfile(model_path):
    raise click.BadParameter(f"{model_path} does not exist.", param_hint="--model")
  try:
    model = keras.models.load_model(model_path, safe_mode=not unsafe)
  except (OSError, ValueError, TypeError) as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "safe_mode" in str(e):
      message += " Pass --unsafe if you trust the file."
    raise click.ClickException(f"cannot load {model_path}: {message}") from None
  _, height, width, channels = model.input_shape
  names = class_names_for(model_path, classes_path, _num_classes(model))

  classified = failed = 0
  for chunk in _chunks(image_files(paths), batch_size):
    good, images = [], []
    for path in chunk:
      try:
        images.append(load_image(path, (height, width), channels))
        good.append(path)
      except UnreadableImage as e:
        click.echo(f"{path}: error: {e}", err=True)
        failed += 1
    if not good:
      continue
    probabilities = head.probabilities(model.predict_on_batch(np.stack(images)))
    for path, row in zip(good, probabilities):
      best = int(row.argmax())
      click.echo(f"{path}: {names[best]} ({row[best]:.3f})")
    classified += len(good)
  if not classified:
    raise click.ClickException(
        f"no image classified ({failed} unreadable)." if failed else "no image files found.")


if __name__ == "__main__":
  main()
