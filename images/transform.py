"""The one image transform: decode -> channels -> resize, for builders, tf.data and prediction.

Applied wherever a model's pixels are made (stored raw pixels, `make_dataset` on JPEG/PNG
shards, the folder loader's `fast_decode`, prediction on files), so that a served model
sees the pixels it was trained on:

* Decode and channels: the format policy of `decode` (a JPEG at the largest DCT scale still
  covering the target, gray inside libjpeg; other formats to RGB, then rounded BT.601 luma;
  Pillow for what TensorFlow rejects or misreads).
* Resize: one plain `tf.image.resize(method="bilinear", antialias=False)`; `antialias=True`
  was measured to cost more than the decode itself (see PERFORMANCE.md). Float32 in
  [0, 255] out; consumers that ship uint8 round with `pixels.to_uint8`.

Entries: `transform_file` (graph, for `tf.data` maps and compiled calls), `transform_encoded`
(graph, for the JPEG/PNG records the builders write) and `transform_bytes` (eager, for
prediction) run the same ops, so the same bytes give the same pixels. `Preprocessing` names
the settings; it is saved in `classes.json` beside a trained model, and prediction applies
exactly it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from petpipe.images import decode
from petpipe.images import headers
from petpipe.images import pixels

# The size models get when neither the data nor the user fixes one (the tutorial's).
DEFAULT_IMAGE_SIZE = (100, 100)
RESIZE_METHODS = (
    "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
)
# Methods that return their input unchanged at the same size (the others smooth it).
_IDENTITY_AT_SAME_SIZE = ("bilinear", "nearest", "area")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How a model's input pixels are made from an image file; saved beside a trained model.

  `to_dict()` is JSON-serialisable and is what `classes.json` holds under "preprocessing";
  prediction rebuilds it with `from_dict` and applies exactly it.

  Attributes:
    image_size: (height, width) of the model's input; an int means a square.
    channels: 1 (grayscale) or 3 (RGB).
    resize: the `tf.image.resize` method.
    antialias: the `tf.image.resize` antialias flag.
    jpeg_dct_scaling: decode JPEGs at the largest DCT scale still covering `image_size`.
  """

  image_size: Tuple[int, int]
  channels: int
  resize: str = "bilinear"
  antialias: bool = False
  jpeg_dct_scaling: bool = True

  def __post_init__(self):
    size = self.image_size
    if isinstance(size, int):
      size = (size, size)
    if (not isinstance(size, (list, tuple)) or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
      raise ValueError(
          "image_size must be a positive int or (height, width). "
          f"Received: image_size={self.image_size!r}")
    object.__setattr__(self, "image_size", tuple(size))
    if self.channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels!r}")
    if self.resize not in RESIZE_METHODS:
      raise ValueError(
          f"resize must be one of {RESIZE_METHODS}. Received: resize={self.resize!r}")
    for name in ("antialias", "jpeg_dct_scaling"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool. Received: {name}={getattr(self, name)!r}")

  def to_dict(self) -> dict[str, Any]:
    """{"image_size": [h, w], "channels", "resize", "antialias", "jpeg_dct_scaling"}."""
    return {
        "image_size": list(self.image_size),
        "channels": self.channels,
        "resize": self.resize,
        "antialias": self.antialias,
        "jpeg_dct_scaling": self.jpeg_dct_scaling,
    }

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "Preprocessing":
    """The inverse of `to_dict`; unknown keys are an error (a newer policy, not this one)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ValueError(
          f"preprocessing has unknown keys {unknown}; known: {sorted(fields)}. "
          f"Received: {dict(values)!r}")
    values = dict(values)
    if isinstance(values.get("image_size"), list):
      values["image_size"] = tuple(values["image_size"])
    try:
      return cls(**values)
    except TypeError as e:  # a required key is missing
      raise ValueError(f"preprocessing needs image_size and channels. Received: {values!r}") from e


def resize(
    images: tf.Tensor,
    size: Sequence[int],
    method: str = "bilinear",
    antialias: bool = False,
    fit: str = "stretch",
) -> tf.Tensor:
  """The one resize: (..., H, W, C) -> float32 [0, 255] at `size`, per `fit` (see
  `decode.FITS`).

  An image already at `size` is only cast when `method` returns it unchanged anyway, so
  the shortcut gives the same pixels as the resize (eagerly and inside tf.data alike).
  """
  decode.check_fit(fit)
  size = tuple(size)
  if fit == "crop":
    images = pixels.center_crop_to_aspect(images, size)
  if fit == "pad":
    resized = tf.image.resize_with_pad(images, size[0], size[1], method=method,
                                       antialias=antialias)
  elif tuple(images.shape[-3:-1]) == size and method in _IDENTITY_AT_SAME_SIZE:
    resized = images
  else:
    resized = tf.image.resize(images, size, method=method, antialias=antialias)
  return tf.cast(resized, tf.float32)


def _target(preprocessing: Preprocessing) -> Optional[Tuple[int, int]]:
  """The size a JPEG's DCT scale must cover, or None to decode at full size."""
  return preprocessing.image_size if preprocessing.jpeg_dct_scaling else None


def transform_file(encoded: tf.Tensor, preprocessing: Preprocessing, decoder: str,
                   fit: str = "stretch") -> tf.Tensor:
  """The graph entry for files: encoded bytes -> float32 (H, W, C) in [0, 255], decoded by
  `decoder` (one of `decode.DECODERS`), fitted per `fit`."""
  image = decode.decode(encoded, preprocessing.channels, decoder, _target(preprocessing), fit)
  return resize(image, preprocessing.image_size, preprocessing.resize, preprocessing.antialias,
                fit)


def transform_encoded(
    encoded: tf.Tensor,
    preprocessing: Preprocessing,
    encoding: str = "jpeg",
    stored_channels: Optional[int] = None,
) -> tf.Tensor:
  """The graph entry for records: JPEG or PNG bytes -> float32 (H, W, C) in [0, 255].

  Args:
    encoded: one encoded image, a scalar string tensor.
    preprocessing: the settings.
    encoding: the records' storage, "jpeg" or "png".
    stored_channels: channels the images are known to hold, if known: gray PNG records
      decode straight to one channel (a gray image's luma is itself).
  """
  if encoding not in ("jpeg", "png"):
    raise ValueError(f'encoding must be "jpeg" or "png". Received: encoding={encoding!r}')
  if encoding == "png" and stored_channels == 1:
    image = tf.io.decode_png(encoded, channels=preprocessing.channels)
    return resize(image, preprocessing.image_size, preprocessing.resize,
                  preprocessing.antialias)
  return transform_file(encoded, preprocessing, decode.JPEG if encoding == "jpeg" else decode.IMAGE)


def transform_bytes(
    data: bytes,
    preprocessing: Preprocessing,
    header: Optional[headers.ImageHeader] = None,
    decoder: Optional[str] = None,
) -> tf.Tensor:
  """The eager entry: file bytes -> float32 (H, W, C) in [0, 255], the pixels
  `transform_file` gives for the same bytes and decoder.

  Args:
    data: the file's bytes.
    preprocessing: the settings.
    header: the file's header, when the caller has read it already.
    decoder: one of `decode.DECODERS`; default: the policy's for the header.

  Raises:
    headers.BadImageError: the bytes are not an image (when `header` is not given).
    tf.errors.OpError, OSError, ValueError: the decoder cannot decode them.
  """
  header = header or headers.parse(data)
  decoder = decoder or decode.decoder_for(header)
  image = decode.decode_bytes(data, preprocessing.channels, decoder, _target(preprocessing),
                              header)
  return resize(image, preprocessing.image_size, preprocessing.resize, preprocessing.antialias)
