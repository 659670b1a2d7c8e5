"""The builder config shared by `image_folder` and `pet_images` (a `--config` JSON)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Optional, Sequence, Union

import tensorflow_datasets as tfds
from PIL import Image

from petpipe.builders import quality
from petpipe.builders import splits as splits_lib
from petpipe.builders import verdict_store
from petpipe.images import validation
from petpipe.pipeline import label_files
from petpipe.pipeline import schema

BALANCE_MODES = ("undersample", "none")
DUPLICATE_MODES = ("skip_conflicts", "keep", "drop")
DEFAULT_MAX_FILE_BYTES = 64 * 2**20
DEFAULT_SPLIT_PERCENT = splits_lib.DEFAULT_SPLIT_PERCENT
# A config name is one folder name under --data_dir: no separators, no "." or "..".
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _size_pair(image_size) -> tuple[int, int]:
  if _is_int(image_size):
    return (image_size, image_size)
  return tuple(image_size)


def _check_fields(cls, args, kwargs) -> None:
  """Unknown fields (a close match suggested) and a missing name, as one-line ValueErrors."""
  valid = [f.name for f in dataclasses.fields(cls) if f.init]
  for key in kwargs:
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1)
      meant = f" (did you mean {close[0]!r}?)" if close else ""
      raise ValueError(f"Unknown config field {key!r}{meant}. Valid fields: {', '.join(valid)}. "
                       f"Received: {key}={kwargs[key]!r}")
  # (No arguments at all is pickle's and copy's way to make an instance: left alone.)
  if kwargs and not args and "name" not in kwargs:
    raise ValueError('name is required: the config\'s folder name under the dataset, e.g. '
                     '{"name": "gray64", ...}. Valid fields: ' + ", ".join(valid))


def _check_types(config) -> None:
  """`--config` JSON gives any JSON type: each field must have its own (one-line error)."""

  def fail(name, expected):
    raise ValueError(f"{name} must be {expected}. Received: {name}={getattr(config, name)!r}")

  if not isinstance(config.name, str) or not _NAME.match(config.name):
    fail("name", "letters, digits, '_', '-' or '.' (no path separators), not starting with '.' or '-'")
  if config.root is not None and not isinstance(config.root, str):
    fail("root", "a path string")
  if config.labels is not None and not label_files.is_label_file(config.labels):
    fail("labels", "the path of a .csv or .jsonl label file")
  if config.pre_split is not None and not isinstance(config.pre_split, bool):
    fail("pre_split", "true, false or null")
  names = config.class_names
  if names is not None and (isinstance(names, str) or not isinstance(names, (list, tuple))
                            or not all(isinstance(n, str) and n for n in names)):
    fail("class_names", "a list of folder names")
  if names is not None and len(set(names)) != len(names):
    fail("class_names", "a list of distinct folder names")
  if not isinstance(config.encoding, str):
    fail("encoding", "a string")
  size = config.image_size
  if size is not None and not _is_int(size) and not (
      isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(s) for s in size)):
    fail("image_size", "an int or a [height, width] pair of ints")
  for name in ("channels", "jpeg_quality", "min_side", "max_pixels", "max_file_bytes",
               "min_classes"):
    if not _is_int(getattr(config, name)):
      fail(name, "an int")
  if not _is_number(config.max_skipped_fraction) or not 0 <= config.max_skipped_fraction <= 1:
    fail("max_skipped_fraction", "a number from 0 to 1")
  for name in ("balance", "duplicates"):
    if not isinstance(getattr(config, name), str):
      fail(name, "a string")
  split = config.split_percent
  if split is None:
    pass
  elif isinstance(split, dict):
    if not all(k in splits_lib.SPLITS and _is_number(v) for k, v in split.items()):
      fail("split_percent", f"numbers keyed by {splits_lib.SPLITS}")
  elif isinstance(split, str) or not isinstance(split, (list, tuple)) or not all(_is_number(p) for p in split):
    fail("split_percent", "three numbers (train, validation, test)")
  if config.reuse is not None and not isinstance(config.reuse, str):
    fail("reuse", "the path of a previous build's dataset folder")
  if config.reuse_check not in verdict_store.REUSE_CHECKS:
    fail("reuse_check", " or ".join(repr(c) for c in verdict_store.REUSE_CHECKS))
  for name in ("follow_links", "allow_empty_classes", "near_duplicates"):
    if not isinstance(getattr(config, name), bool):
      fail(name, "true or false")


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
    split_percent: (train, validation, test) percentages summing to 100;
      default (None) 80/10/10. Refused for a pre-split root (`root/train`,
      `root/validation` or `val`/`valid`, `root/test`), whose folders are the splits.
    min_side: images with a smaller width or height are skipped.
    max_pixels: images whose header declares more pixels are skipped.
    follow_links: follow symlinked sub-folders.
    allow_empty_classes: build even when a class ends with no usable image
      (by default that fails, naming the class).
    max_file_bytes: files (or zip members) larger than this are skipped with
      a reason before being read whole.
    duplicates: what to do with files of identical bytes (same sha256), which
      always land in one split together: "skip_conflicts" (default: groups
      spanning several classes are skipped, others kept), "keep" (all kept,
      conflicts too) or "drop" (one file per group kept, conflicts skipped).
    labels: a CSV or JSONL label file (columns `file_name`, relative to `root`,
      and `label`; a relative path is taken relative to `root`): labels come
      from it instead of folder names; files it does not name are ignored.
    pre_split: whether the sub-folders of `root` are the splits; None (default)
      decides by their names, False reads `train/`, `test/` as class folders.
    min_classes: a build with fewer classes fails, naming what it found (default 2: a
      root that is one wrapper folder, such as the Kaggle zip's `PetImages/`, is one class).
    max_skipped_fraction: a build in which a larger share of the image files is unusable
      fails, naming the most common reasons (default 0.5: a wrong root, a broken copy).
    reuse: a previous build's dataset folder whose verdicts are reused for unchanged files
      (default: the newest build of any config of this dataset from the same source and
      limits, the one `--overwrite` replaces included); local builds only.
    reuse_check: "stamp" (a file is unchanged when its path, size and modification time
      are) or "sha256" (its bytes are hashed and compared too).
  """

  root: Optional[str] = None
  class_names: Optional[Sequence[str]] = None
  encoding: str = "jpeg"
  image_size: Union[int, Sequence[int], None] = None
  channels: int = 3
  jpeg_quality: int = 95
  balance: str = "undersample"
  split_percent: Optional[Sequence[float]] = None
  min_side: int = 8
  max_pixels: int = Image.MAX_IMAGE_PIXELS
  follow_links: bool = False
  allow_empty_classes: bool = False
  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
  duplicates: str = "skip_conflicts"
  near_duplicates: bool = False
  labels: Optional[str] = None
  pre_split: Optional[bool] = None
  min_classes: int = quality.DEFAULT_MIN_CLASSES
  max_skipped_fraction: float = quality.DEFAULT_MAX_SKIPPED_FRACTION
  reuse: Optional[str] = None
  reuse_check: str = "stamp"

  def __new__(cls, *args, **kwargs):
    # Before the dataclass's __init__, whose TypeError ("unexpected keyword argument")
    # names neither the valid fields nor the one meant.
    _check_fields(cls, args, kwargs)
    return super().__new__(cls)

  def __post_init__(self):
    _check_types(self)
    if isinstance(self.class_names, list):
      self.class_names = tuple(self.class_names)
    if isinstance(self.split_percent, dict):
      self.split_percent = tuple(self.split_percent.get(s, 0) for s in splits_lib.SPLITS)
    if self.split_percent is not None:
      self.split_percent = tuple(float(p) for p in self.split_percent)
    split = self.percentages
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 100) > 1e-6:
      raise ValueError(
          "split_percent must be three non-negative (train, validation, test) "
          f"percentages summing to 100. Received: split_percent={self.split_percent}"
      )
    if self.duplicates not in DUPLICATE_MODES:
      raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}. Received: duplicates={self.duplicates!r}")
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
    if self.min_side < 1 or self.max_pixels < 1 or self.max_file_bytes < 1 or self.min_classes < 1:
      raise ValueError(
          "min_side, max_pixels, max_file_bytes and min_classes must be positive. Received: "
          f"min_side={self.min_side}, max_pixels={self.max_pixels}, "
          f"max_file_bytes={self.max_file_bytes}, min_classes={self.min_classes}"
      )
    self.storage  # validates encoding, channels and raw size

  @property
  def percentages(self) -> tuple[float, float, float]:
    """(train, validation, test) percentages: `split_percent`, or 80/10/10 when not given."""
    return DEFAULT_SPLIT_PERCENT if self.split_percent is None else self.split_percent

  @property
  def storage(self) -> schema.ImageStorage:
    size = _size_pair(self.image_size) if self.encoding == "raw" and self.image_size is not None else None
    return schema.ImageStorage(encoding=self.encoding, channels=self.channels, size=size)

  @property
  def max_side(self) -> Optional[int]:
    return None if self.encoding == "raw" else self.image_size

  @property
  def limits(self) -> validation.Limits:
    return validation.Limits(max_pixels=self.max_pixels, min_side=self.min_side,
                             max_file_bytes=self.max_file_bytes, near_duplicates=self.near_duplicates)


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
