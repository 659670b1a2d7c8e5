"""The one image transform: decode -> channels -> resize, for builders, tf.data and prediction.

Policy, chosen once and applied wherever a model's pixels are made (stored raw pixels,
`make_dataset` on JPEG/PNG shards, prediction on files), so that a served model sees the
pixels it was trained on:

* Decode: a JPEG decodes at the largest DCT scale (ratio 1, 2, 4 or 8 of
  `tf.io.decode_jpeg`) at which both sides still cover the target size, chosen per image from
  its header. DCT scaling averages whole 8x8 blocks down, a box filter, so the bilinear step
  left shrinks by less than 2x and adds little aliasing; `antialias=True` was measured to
  cost more than the decode itself (see PERFORMANCE.md). Other formats decode at full size.
* Channels: a JPEG converts inside libjpeg (`channels=1|3`); a CMYK JPEG (which libjpeg
  cannot make gray) and every other format decode to RGB, then `ops.to_grayscale` (rounded
  BT.601 luma) makes one channel.
* Resize: one plain `tf.image.resize(method="bilinear", antialias=False)`; float32 in
  [0, 255] out. Consumers that ship uint8 round with `ops.normalize(x, "none")`.

Two entries run the same ops with the same ratio, so the same bytes give the same pixels:
`transform_bytes` (eager; the ratio from a header size known in Python) for builders and
prediction, `transform_encoded` (graph; the ratio from `tf.image.extract_jpeg_shape` and
a `tf.switch_case`) for `tf.data`. `Preprocessing` names the policy's settings; it is saved
in `classes.json` beside a trained model, and prediction applies exactly it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from petpipe.pipeline import image_headers
from petpipe.pipeline import ops

# DCT-domain scales libjpeg decodes at; TensorFlow exposes them as `ratio`.
JPEG_RATIOS = (1, 2, 4, 8)
# How an image meets a target of another aspect ratio: stretched (the default), centre
# cropped to the target's aspect first (Keras `crop_to_aspect_ratio`), or fitted inside and
# padded with zeros (Keras `pad_to_aspect_ratio`).
FITS = ("stretch", "crop", "pad")
RESIZE_METHODS = (
    "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
)
# Methods that return their input unchanged at the same size (the others smooth it).
_IDENTITY_AT_SAME_SIZE = ("bilinear", "nearest", "area")
_CMYK_COMPONENTS = 4


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


def ratio_for_size(height: int, width: int, size: Sequence[int]) -> int:
  """Largest DCT scale (1, 2, 4 or 8) at which a height x width JPEG still covers `size`."""
  ratio = 1
  for r in JPEG_RATIOS[1:]:
    # libjpeg's scaled size is ceil(size / r).
    if -(-height // r) >= size[0] and -(-width // r) >= size[1]:
      ratio = r
  return ratio


def jpeg_ratio(encoded: tf.Tensor, size: Sequence[int], fit: str = "stretch") -> tf.Tensor:
  """`ratio_for_size` of one encoded JPEG, read from its header only (microseconds)."""
  shape = tf.image.extract_jpeg_shape(encoded)
  return tf.gather(JPEG_RATIOS, _ratio_index(shape[0], shape[1], size, fit))


def _ratio_index(height: tf.Tensor, width: tf.Tensor, size: Sequence[int], fit: str) -> tf.Tensor:
  """Index into JPEG_RATIOS of the largest scale covering `size` (after `fit`), in graph ops.

  ceil(h / r) >= s holds exactly when r <= (h - 1) // (s - 1): one division per side and a
  table lookup, a dozen scalar ops per image instead of a comparison per ratio (each graph
  op costs microseconds per image inside tf.data).
  """
  height, width = _needed_size(height, width, size, fit)
  largest = tf.minimum(_largest_ratio(height, size[0]), _largest_ratio(width, size[1]))
  return tf.gather(_INDEX_OF_LARGEST_RATIO, tf.clip_by_value(largest, 0, JPEG_RATIOS[-1]))


# Index into JPEG_RATIOS of the largest ratio <= k, for k = 0..8 (0: the image is smaller
# than the target, decoded at full size).
_INDEX_OF_LARGEST_RATIO = tuple(
    max(i for i, r in enumerate(JPEG_RATIOS) if r <= max(k, 1)) for k in range(JPEG_RATIOS[-1] + 1))


def _largest_ratio(side: tf.Tensor, target: int) -> tf.Tensor:
  """The largest integer r with ceil(side / r) >= target (any r when target is 1)."""
  if target <= 1:
    return tf.constant(JPEG_RATIOS[-1], tf.int32)
  return (side - 1) // (target - 1)


def _needed_size(height: tf.Tensor, width: tf.Tensor, size: Sequence[int], fit: str):
  """The full-size pixels that must stay covered: the whole image, its crop, or its fit."""
  if fit == "stretch":
    return height, width
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  if fit == "crop":
    # The window `ops.center_crop_to_aspect` keeps.
    return (tf.maximum(tf.minimum(height, tf.cast(w * size[0] / size[1], tf.int32)), 1),
            tf.maximum(tf.minimum(width, tf.cast(h * size[1] / size[0], tf.int32)), 1))
  # "pad": scaled by 1/m to fit inside the target, so any scale up to m keeps it covered.
  m = tf.maximum(h / size[0], w / size[1])
  return (tf.maximum(tf.cast(size[0] * m, tf.int32), 1),
          tf.maximum(tf.cast(size[1] * m, tf.int32), 1))


def decode_jpeg(
    encoded: tf.Tensor, channels: int, size: Optional[Sequence[int]] = None,
    fit: str = "stretch",
) -> tf.Tensor:
  """One JPEG -> uint8 (H, W, channels), in graph ops; per-image DCT scale if `size` is given.

  Without `size` it decodes at full size. One `switch_case` picks the ratio (and, for one
  channel, the CMYK conversion) from the header, so only one decode runs per image.
  """
  _check_fit(fit)
  if size is None and channels == 3:
    return ops.decode_jpeg(encoded, 3)
  shape = tf.image.extract_jpeg_shape(encoded)
  ratios = JPEG_RATIOS if size is not None else (1,)
  index = _ratio_index(shape[0], shape[1], size, fit) if size is not None else tf.constant(0)
  branches = [(lambda r=r: ops.decode_jpeg(encoded, channels, r)) for r in ratios]
  if channels == 1:
    # libjpeg cannot make one channel of CMYK: those decode to RGB, then take luma.
    branches += [(lambda r=r: _cmyk_to_gray(encoded, r)) for r in ratios]
    index += tf.where(tf.equal(shape[2], _CMYK_COMPONENTS), len(ratios), 0)
  image = tf.switch_case(index, branches)
  image.set_shape([None, None, channels])
  return image


def _cmyk_to_gray(encoded, ratio: int) -> tf.Tensor:
  return ops.to_grayscale(ops.decode_jpeg(encoded, 3, ratio))


def decode_other(
    encoded: tf.Tensor, channels: int, stored_channels: Optional[int] = None
) -> tf.Tensor:
  """PNG, GIF or BMP -> uint8 (H, W, channels): RGB first, then `ops.to_grayscale` for one.

  `stored_channels=1` (e.g. PNG shards written in grayscale) decodes straight to what that
  conversion gives: a gray image's luma is itself.
  """
  if channels == 3 or stored_channels == 1:
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  else:
    image = ops.to_grayscale(tf.io.decode_image(encoded, channels=3, expand_animations=False))
  image.set_shape([None, None, channels])
  return image


def resize(
    images: tf.Tensor,
    size: Sequence[int],
    method: str = "bilinear",
    antialias: bool = False,
    fit: str = "stretch",
) -> tf.Tensor:
  """The one resize: (..., H, W, C) -> float32 [0, 255] at `size`, per `fit` (see FITS).

  An image already at `size` is only cast when `method` returns it unchanged anyway, so
  the shortcut gives the same pixels as the resize (eagerly and inside tf.data alike).
  """
  _check_fit(fit)
  size = tuple(size)
  if fit == "crop":
    images = ops.center_crop_to_aspect(images, size)
  if fit == "pad":
    resized = tf.image.resize_with_pad(images, size[0], size[1], method=method,
                                       antialias=antialias)
  elif tuple(images.shape[-3:-1]) == size and method in _IDENTITY_AT_SAME_SIZE:
    resized = images
  else:
    resized = tf.image.resize(images, size, method=method, antialias=antialias)
  return tf.cast(resized, tf.float32)


def transform_encoded(
    encoded: tf.Tensor,
    preprocessing: Preprocessing,
    encoding: str = "jpeg",
    stored_channels: Optional[int] = None,
) -> tf.Tensor:
  """The graph entry (for `tf.data` maps): encoded bytes -> float32 (H, W, C) in [0, 255].

  Args:
    encoded: one encoded image, a scalar string tensor.
    preprocessing: the policy's settings.
    encoding: "jpeg" for JPEGs, "png" for PNG/GIF/BMP.
    stored_channels: channels the images are known to hold, if known (see `decode_other`).
  """
  size = preprocessing.image_size
  if encoding == "jpeg":
    image = decode_jpeg(encoded, preprocessing.channels,
                        size if preprocessing.jpeg_dct_scaling else None)
  elif encoding == "png":
    image = decode_other(encoded, preprocessing.channels, stored_channels)
  else:
    raise ValueError(f'encoding must be "jpeg" or "png". Received: encoding={encoding!r}')
  return resize(image, size, preprocessing.resize, preprocessing.antialias)


def decode_bytes(
    data: bytes,
    channels: int,
    size: Optional[Sequence[int]] = None,
    *,
    image_format: Optional[str] = None,
    image_shape: Optional[Sequence[int]] = None,
) -> tf.Tensor:
  """The eager decode: file bytes -> uint8 (H, W, channels), exactly as `decode_jpeg` and
  `decode_other` decode them inside a graph.

  Args:
    data: the file's bytes (JPEG, PNG, GIF or BMP).
    channels: 1 or 3.
    size: the target size a JPEG's DCT scale must cover; None decodes at full size.
    image_format: "jpeg", "png", ... (any case) if known; else sniffed from the bytes.
    image_shape: (height, width) from the header if known; else read from the bytes.

  Raises:
    tf.errors.OpError: the bytes do not decode.
  """
  image_format = (image_format or image_headers.sniff_format(data[:16]) or "").lower()
  if image_format != "jpeg":
    return decode_other(tf.constant(data), channels)
  components = None
  if image_shape is None or channels == 1:
    height, width, components = (int(v) for v in tf.image.extract_jpeg_shape(data).numpy())
    image_shape = image_shape or (height, width)
  ratio = 1 if size is None else ratio_for_size(*image_shape, size)
  if channels == 1 and components == _CMYK_COMPONENTS:
    return _cmyk_to_gray(data, ratio)
  return ops.decode_jpeg(tf.constant(data), channels, ratio)


def transform_bytes(
    data: bytes,
    preprocessing: Preprocessing,
    *,
    image_format: Optional[str] = None,
    image_shape: Optional[Sequence[int]] = None,
) -> tf.Tensor:
  """The eager entry (builders, prediction): file bytes -> float32 (H, W, C) in [0, 255].

  Gives the pixels `transform_encoded` gives for the same bytes. `image_format` and
  `image_shape` are the header's, when the caller has read it already (see `decode_bytes`).
  """
  size = preprocessing.image_size
  image = decode_bytes(data, preprocessing.channels,
                       size if preprocessing.jpeg_dct_scaling else None,
                       image_format=image_format, image_shape=image_shape)
  return resize(image, size, preprocessing.resize, preprocessing.antialias)


def transform_rgb(rgb: Any, preprocessing: Preprocessing) -> tf.Tensor:
  """Already decoded uint8 RGB (H, W, 3) pixels (from another decoder, e.g. Pillow for
  WebP) -> float32 (H, W, C) in [0, 255], with the policy's channel rule and resize."""
  image = tf.convert_to_tensor(rgb, tf.uint8)
  if preprocessing.channels == 1:
    image = ops.to_grayscale(image)
  return resize(image, preprocessing.image_size, preprocessing.resize, preprocessing.antialias)


def _check_fit(fit: str) -> None:
  if fit not in FITS:
    raise ValueError(f"fit must be one of {FITS}. Received: fit={fit!r}")
