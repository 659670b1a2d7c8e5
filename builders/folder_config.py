"""The builder config shared by `image_folder` and `pet_images` (a `--config` JSON)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import tensorflow_datasets as tfds
from PIL import Image

from petpipe.builders import splits as splits_lib
from petpipe.builders import validation
from petpipe.pipeline import schema

BALANCE_MODES = ("undersample", "none")


def _size_pair(image_size) -> tuple[int, int]:
  if isinstance(image_size, int):
    return (image_size, image_size)
  return tuple(int(s) for s in image_size)


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """How a folder of class sub-folders becomes records.

  Attributes:
    root: the folder holding one sub-folder per class, or a zip of it.
      `pet_images` takes it from `--manual_dir` instead.
    class_names: sub-folders to use, in label order; default: all, sorted.
    encoding: "jpeg" or "png" (encoded bytes) or "raw" (uint8 pixels, the
      fastest to read).
    image_size: for "raw", the fixed (height, width) (an int means square);
      for "jpeg"/"png", the maximum side (aspect kept); None keeps the original
      resolution and stores clean JPEGs byte for byte.
    channels: 1 (grayscale) or 3 (RGB).
    jpeg_quality: quality of every JPEG this builder encodes.
    balance: "undersample" (every class cut to the smallest class's count, per
      split) or "none".
    split_percent: (train, validation, test) percentages summing to 100.
    min_side: images with a smaller width or height are skipped.
    max_pixels: images whose header declares more pixels are skipped.
    follow_links: follow symlinked sub-folders.
  """

  root: Optional[str] = None
  class_names: Optional[Sequence[str]] = None
  encoding: str = "jpeg"
  image_size: Union[int, Sequence[int], None] = None
  channels: int = 3
  jpeg_quality: int = 95
  balance: str = "undersample"
  split_percent: Sequence[float] = (80, 10, 10)
  min_side: int = 8
  max_pixels: int = Image.MAX_IMAGE_PIXELS
  follow_links: bool = False

  def __post_init__(self):
    if isinstance(self.split_percent, dict):
      self.split_percent = tuple(self.split_percent.get(s, 0) for s in splits_lib.SPLITS)
    self.split_percent = tuple(float(p) for p in self.split_percent)
    if len(self.split_percent) != 3 or min(self.split_percent) < 0 or abs(sum(self.split_percent) - 100) > 1e-6:
      raise ValueError(
          "split_percent must be three non-negative (train, validation, test) "
          f"percentages summing to 100. Received: split_percent={self.split_percent}"
      )
    if self.balance not in BALANCE_MODES:
      raise ValueError(f"balance must be one of {BALANCE_MODES}. Received: balance={self.balance!r}")
    if not 1 <= int(self.jpeg_quality) <= 100:
      raise ValueError(f"jpeg_quality must be in [1, 100]. Received: jpeg_quality={self.jpeg_quality}")
    if self.image_size is not None:
      size = _size_pair(self.image_size) if self.encoding == "raw" else (self.image_size,)
      if not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            "image_size must be a positive int (or [height, width] for raw). "
            f"Received: image_size={self.image_size!r}"
        )
    if self.min_side < 1 or self.max_pixels < 1:
      raise ValueError(
          f"min_side and max_pixels must be positive. Received: min_side={self.min_side}, max_pixels={self.max_pixels}"
      )
    self.storage  # validates encoding, channels and raw size

  @property
  def storage(self) -> schema.ImageStorage:
    size = _size_pair(self.image_size) if self.encoding == "raw" and self.image_size is not None else None
    return schema.ImageStorage(encoding=self.encoding, channels=self.channels, size=size)

  @property
  def max_side(self) -> Optional[int]:
    return None if self.encoding == "raw" else self.image_size

  @property
  def limits(self) -> validation.Limits:
    return validation.Limits(max_pixels=self.max_pixels, min_side=self.min_side)


def storage_configs(description_prefix: str = "") -> list[FolderConfig]:
  """The standard storage configs both builders offer."""
  return [
      FolderConfig(
          name="original",
          description=f"{description_prefix}Original resolution RGB JPEG; clean JPEGs stored byte for byte.",
      ),
      FolderConfig(
          name="gray100",
          encoding="raw",
          image_size=100,
          channels=1,
          description=f"{description_prefix}Raw uint8 100x100 grayscale: no decode at read time.",
      ),
      FolderConfig(
          name="rgb160",
          encoding="raw",
          image_size=160,
          channels=3,
          description=f"{description_prefix}Raw uint8 160x160 RGB: no decode at read time.",
      ),
      FolderConfig(
          name="jpeg256",
          encoding="jpeg",
          image_size=256,
          channels=3,
          description=f"{description_prefix}RGB JPEG, longest side at most 256 px.",
      ),
  ]
