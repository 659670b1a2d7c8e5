"""Writers of tiny test data: shards through `pipeline.schema`, a TFDS builder, image folders.

Every raw or PNG example `i` is an image filled with the value `i` (labels `i % 2`), so a
test can tell exactly which examples a pipeline delivered.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.pipeline import schema

CLASS_NAMES = ("Cat", "Dog")
NUM_EXAMPLES = 40
NUM_SHARDS = 4
SIZE = 16


def example_image(index: int, size: Sequence[int] = (SIZE, SIZE), channels: int = 1) -> np.ndarray:
  """The image of example `index`: every pixel is `index`."""
  return np.full((*size, channels), index, np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
  return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      buffer, "JPEG", quality=quality)
  return buffer.getvalue()


def write_shards(
    folder: str,
    storage: schema.ImageStorage,
    num_examples: int = NUM_EXAMPLES,
    num_shards: int = NUM_SHARDS,
    split: str = "train",
    with_features: bool = True,
) -> list[str]:
  """Writes examples 0..num_examples-1 round-robin into shards named as TFDS names them."""
  os.makedirs(folder, exist_ok=True)
  feats = schema.features(storage, CLASS_NAMES)
  if with_features:
    feats.save_config(folder)
  paths = [os.path.join(folder, f"tiny-{split}.tfrecord-{i:05d}-of-{num_shards:05d}")
           for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  for i in range(num_examples):
    if storage.is_raw:
      image = example_image(i, storage.size, storage.channels)
    else:
      size = (SIZE + i % 5, SIZE + 2 * (i % 3))  # Encoded images vary in size.
      pixels = example_image(i, size, storage.channels)
      image = png_bytes(pixels) if storage.encoding == "png" else jpeg_bytes(pixels)
    writers[i % num_shards].write(feats.serialize_example(
        {schema.IMAGE: image, schema.LABEL: i % 2, schema.FILENAME: f"{CLASS_NAMES[i % 2]}/{i}.png"}
    ))
  for writer in writers:
    writer.close()
  return paths


class TinyShards(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A real TFDS dataset written with the project's schema: raw 16x16x1, train and test."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="raw16")]
  STORAGE = schema.ImageStorage("raw", 1, (SIZE, SIZE))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=schema.features(self.STORAGE, CLASS_NAMES))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(0, NUM_EXAMPLES),
            "test": self._generate_examples(NUM_EXAMPLES, NUM_EXAMPLES + 10)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      yield i, {schema.IMAGE: example_image(i), schema.LABEL: i % 2,
                schema.FILENAME: f"{CLASS_NAMES[i % 2]}/{i}.png"}


def write_image_folder(root: str, per_class: int = 6, seed: int = 0) -> list[str]:
  """Cat/ and Dog/ with small random JPEGs and PNGs of 24-48 px; returns the paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for name in CLASS_NAMES:
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(per_class):
      height, width = (int(v) for v in rng.integers(24, 49, size=2))
      pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
      ext = "png" if i % 3 == 0 else "jpg"
      path = os.path.join(root, name, f"{i}.{ext}")
      with open(path, "wb") as f:
        f.write(png_bytes(pixels) if ext == "png" else jpeg_bytes(pixels))
      paths.append(path)
  return paths


BAD_FILES = {
    "Cat/empty.jpg": b"",
    "Cat/text.jpg": b"this is not an image",
    "Dog/cut_off.jpg": None,  # The first half of a good JPEG.
}
