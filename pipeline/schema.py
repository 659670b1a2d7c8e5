"""The one feature schema shared by the dataset writer (builders) and reader (pipeline).

Records are `tf.train.Example`s written by TFDS with three features:

* `image`: encoded JPEG/PNG bytes, or raw uint8 pixels (`height*width*channels` bytes)
  for fixed-size storage, which needs no decode at read time;
* `label`: int64 class index (a `tfds.features.ClassLabel`);
* `image/filename`: the file's path relative to the source root.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

IMAGE = "image"
LABEL = "label"
FILENAME = "image/filename"

ENCODINGS = ("jpeg", "png", "raw")
CHANNELS = (1, 3)


@dataclasses.dataclass(frozen=True)
class ImageStorage:
  """How images are stored in the records.

  Attributes:
    encoding: "jpeg" or "png" (encoded bytes) or "raw" (uint8 pixels).
    channels: 1 (grayscale) or 3 (RGB).
    size: (height, width). Required for "raw" (every image has this size); for
      "jpeg"/"png" it is unknown (None) because sizes vary per image.
  """

  encoding: str = "jpeg"
  channels: int = 3
  size: Optional[Tuple[int, int]] = None

  def __post_init__(self):
    if self.encoding not in ENCODINGS:
      raise ValueError(
          f"encoding must be one of {ENCODINGS}. Received: encoding={self.encoding!r}"
      )
    if self.channels not in CHANNELS:
      raise ValueError(
          f"channels must be 1 or 3. Received: channels={self.channels!r}"
      )
    if self.encoding == "raw":
      if self.size is None or len(self.size) != 2 or min(self.size) <= 0:
        raise ValueError(
            "raw storage needs a positive (height, width) size. "
            f"Received: size={self.size!r}"
        )

  @property
  def is_raw(self) -> bool:
    return self.encoding == "raw"


def features(storage: ImageStorage, class_names: Sequence[str]) -> tfds.features.FeaturesDict:
  """The TFDS features a builder writes for `storage`."""
  if storage.is_raw:
    image = tfds.features.Tensor(
        shape=(*storage.size, storage.channels),
        dtype=np.uint8,
        encoding=tfds.features.Encoding.BYTES,
    )
  else:
    image = tfds.features.Image(
        shape=(None, None, storage.channels), encoding_format=storage.encoding
    )
  return tfds.features.FeaturesDict({
      IMAGE: image,
      LABEL: tfds.features.ClassLabel(names=list(class_names)),
      FILENAME: tfds.features.Text(),
  })


def storage_of(feats: tfds.features.FeaturesDict) -> ImageStorage:
  """Reads the storage back from a dataset's features (e.g. `info.features`)."""
  image = feats[IMAGE]
  channels = int(image.shape[-1])
  if isinstance(image, tfds.features.Image):
    return ImageStorage(encoding=image.encoding_format or "png", channels=channels)
  return ImageStorage(encoding="raw", channels=channels, size=tuple(int(d) for d in image.shape[:2]))


def class_names_of(feats: tfds.features.FeaturesDict) -> list[str]:
  return list(feats[LABEL].names)


def load_features(dataset_dir: str) -> tfds.features.FeaturesDict:
  """Loads the features a built dataset folder declares in its `features.json`."""
  path = os.path.join(dataset_dir, "features.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f"{dataset_dir} is not a built dataset folder: it has no features.json."
    )
  return tfds.features.FeatureConnector.from_config(dataset_dir)


def parse_spec() -> dict:
  """`tf.io.parse_example` spec of a record: every feature is a scalar."""
  return {
      IMAGE: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
  }

