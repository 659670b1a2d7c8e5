"""The one typed, frozen config that describes an input pipeline.

The command line (or a test) fills a `PipelineConfig`; nothing else in the pipeline reads flags,
so a config printed next to a result says exactly how that result's data was fed.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

from petpipe.images import transform

NORMALIZE_MODES = ("0-1", "-1-1", "none")
LABEL_MODES = ("int", "categorical", "binary")
CHANNELS = (1, 3)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How to turn stored examples into `(images, labels)` batches.

  Attributes:
    image_size: (height, width) of the images delivered; an int means a square.
    channels: 1 (grayscale) or 3 (RGB) channels delivered, whatever is stored.
    batch_size: examples per batch.
    shuffle_buffer: examples held by the shuffle buffer when training (0 or 1 turns it
      off). It bounds memory: the buffer holds serialized records, not decoded images.
    seed: seed of every random choice (file order, shuffle buffer, augmentation).
      Together with `deterministic=True` it makes the order reproducible.
    deterministic: keep the element order fixed through parallel steps. Off by default
      because out-of-order delivery keeps a slow file or image from stalling a batch.
    augment: random flip, crop/zoom and small rotation; applied only when training.
    normalize: "0-1" or "-1-1" deliver float32 in that range; "none" delivers uint8 so
      that the model normalises on the accelerator (4x fewer bytes to copy).
    label_mode: "int" (int32, shape (B,)), "categorical" (float32 one-hot, shape
      (B, num_classes)) or "binary" (float32, shape (B, 1)), as in Keras.
    num_classes: number of classes; filled from the dataset's metadata when None.
    cache: "none", "memory", or a file path prefix for `tf.data.Dataset.cache`. Opt-in
      because a cache of a dataset larger than RAM (or disk) must not happen silently.
    repeat: repeat the data forever (epochs are then counted by `steps_per_epoch`).
    drop_remainder: drop the last partial batch so that every batch has `batch_size`.
    skip_batches: batches left out at the start (resuming in the middle of an epoch): their
      serialized records are read and dropped before any parsing or decoding.
    file_names: also deliver each example's file name (its path in the source, the
      records' `image/filename`): batches of `(images, labels, file_names)`.
  """

  image_size: Union[int, Tuple[int, int]] = transform.DEFAULT_IMAGE_SIZE
  channels: int = 1
  batch_size: int = 32
  shuffle_buffer: int = 1024
  seed: Optional[int] = None
  deterministic: bool = False
  augment: bool = False
  normalize: str = "0-1"
  label_mode: str = "int"
  num_classes: Optional[int] = None
  cache: str = "none"
  repeat: bool = False
  drop_remainder: bool = False
  skip_batches: int = 0
  file_names: bool = False

  def __post_init__(self):
    size = self.image_size
    if _is_int(size):
      size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
        or not all(_is_int(d) and d > 0 for d in size)):
      raise ValueError(
          "image_size must be a positive int or a (height, width) tuple of 2 positive "
          f"ints. Received: image_size={self.image_size!r}"
      )
    object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
    if self.channels not in CHANNELS:
      raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels!r}")
    if not _is_int(self.batch_size) or self.batch_size <= 0:
      raise ValueError(
          f"batch_size must be a positive int. Received: batch_size={self.batch_size!r}"
      )
    if not _is_int(self.shuffle_buffer) or self.shuffle_buffer < 0:
      raise ValueError(
          "shuffle_buffer must be an int >= 0. "
          f"Received: shuffle_buffer={self.shuffle_buffer!r}"
      )
    if self.seed is not None and not _is_int(self.seed):
      raise ValueError(f"seed must be an int or None. Received: seed={self.seed!r}")
    if self.normalize not in NORMALIZE_MODES:
      raise ValueError(
          f"normalize must be one of {NORMALIZE_MODES}. "
          f"Received: normalize={self.normalize!r}"
      )
    if self.label_mode not in LABEL_MODES:
      raise ValueError(
          f"label_mode must be one of {LABEL_MODES}. "
          f"Received: label_mode={self.label_mode!r}"
      )
    if self.num_classes is not None and (not _is_int(self.num_classes)
                                         or self.num_classes <= 0):
      raise ValueError(
          "num_classes must be a positive int or None. "
          f"Received: num_classes={self.num_classes!r}"
      )
    if self.label_mode == "binary" and self.num_classes not in (None, 2):
      raise ValueError(
          'label_mode="binary" needs exactly 2 classes. '
          f"Received: num_classes={self.num_classes!r}"
      )
    if not isinstance(self.cache, str) or not self.cache:
      raise ValueError(
          'cache must be "none", "memory" or a file path. '
          f"Received: cache={self.cache!r}"
      )
    if not _is_int(self.skip_batches) or self.skip_batches < 0:
      raise ValueError(
          f"skip_batches must be an int >= 0. Received: skip_batches={self.skip_batches!r}")
    for name in ("deterministic", "augment", "repeat", "drop_remainder"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool. Received: {name}={getattr(self, name)!r}")

  @property
  def shuffles(self) -> bool:
    return self.shuffle_buffer > 1


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)
