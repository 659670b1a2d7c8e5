"""Decoding: the format policy and the decoders, eagerly and inside a graph alike.

The format policy, once for the builders, the folder loader and prediction:

* JPEG (baseline, progressive, gray, CMYK) decodes with libjpeg (`tf.io.decode_jpeg`), at the
  largest DCT scale (ratio 1, 2, 4 or 8) at which both sides still cover the target size,
  chosen per image from its header. DCT scaling averages whole 8x8 blocks down, a box
  filter, so the bilinear step left shrinks by less than 2x and adds little aliasing.
  One channel is made inside libjpeg; a CMYK JPEG decodes to RGB, then luma.
* PNG, GIF (first frame) and BMP decode with `tf.io.decode_image` to RGB; WebP as stored
  (RGB or RGBA), alpha dropped. One channel is then rounded BT.601 luma (`pixels`).
* Pillow rescues what TensorFlow rejects or misreads but Pillow reads completely: BMPs its
  header marks (RLE, 1/4/8-bit palette, 16-bit; `headers.bmp_needs_pillow`), and files of
  other formats whose TensorFlow decode fails (validation and the folder loader's check
  try it first). Its RGB pixels then take the same luma and resize.
* Everything else is refused: other formats (`unsupported_format`), lossless JPEG, files
  that neither decoder reads whole.

A file's decoder (one of DECODERS) follows from its header (`decoder_for`), or is PILLOW
after a failed first decode; `decode` (graph) and `decode_bytes` (eager) run the same ops
for it, so the same bytes give the same pixels everywhere.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
from PIL import Image
import tensorflow as tf

from petpipe.images import headers
from petpipe.images import pixels

JPEG = "jpeg"  # libjpeg, at a DCT scale
IMAGE = "image"  # PNG, GIF, BMP: tf.io.decode_image to RGB
WEBP = "webp"  # tf.io.decode_image as stored, alpha dropped
PILLOW = "pillow"  # what TensorFlow rejects or misreads, read by Pillow
DECODERS = (JPEG, IMAGE, WEBP, PILLOW)

# DCT-domain scales libjpeg decodes at; TensorFlow exposes them as `ratio`.
JPEG_RATIOS = (1, 2, 4, 8)
# How an image meets a target of another aspect ratio: stretched (the default), centre
# cropped to the target's aspect first (Keras `crop_to_aspect_ratio`), or fitted inside and
# padded with zeros (Keras `pad_to_aspect_ratio`).
FITS = ("stretch", "crop", "pad")
_CMYK_COMPONENTS = 4


def decoder_for(header: headers.ImageHeader) -> str:
  """The decoder the policy picks from a file's header (PILLOW for the BMPs TensorFlow
  rejects or misreads)."""
  if header.needs_pillow:
    return PILLOW
  return {"jpeg": JPEG, "webp": WEBP}.get(header.format, IMAGE)


# ------------------------------------------------------------------------------ Pillow


def pillow_reads_completely(data: bytes) -> bool:
  """Whether Pillow decodes every pixel of the file (truncated data raises)."""
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
    return True
  except Exception:  # Pillow raises many types for bad data.
    return False


def pillow_rgb(data: bytes, channels: int = 3) -> np.ndarray:
  """uint8 (H, W, 3) RGB (or RGBA for 4 channels) of a file's first frame, through Pillow."""
  with Image.open(io.BytesIO(bytes(data))) as im:
    return np.asarray(im.convert("RGBA" if channels == 4 else "RGB"))


def pillow_graph(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
  image = tf.numpy_function(lambda data: pillow_rgb(data, channels), [encoded], tf.uint8,
                            stateful=False)
  image.set_shape([None, None, channels])
  return image


# ------------------------------------------------------------------------------ JPEG scale


def ratio_for_size(height: int, width: int, size: Optional[Sequence[int]]) -> int:
  """Largest DCT scale (1, 2, 4 or 8) at which a height x width JPEG still covers `size`
  (1 when `size` is None: full size)."""
  ratio = 1
  for r in JPEG_RATIOS[1:] if size is not None else ():
    # libjpeg's scaled size is ceil(size / r).
    if -(-height // r) >= size[0] and -(-width // r) >= size[1]:
      ratio = r
  return ratio


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
    # The window `pixels.center_crop_to_aspect` keeps.
    return (tf.maximum(tf.minimum(height, tf.cast(w * size[0] / size[1], tf.int32)), 1),
            tf.maximum(tf.minimum(width, tf.cast(h * size[1] / size[0], tf.int32)), 1))
  # "pad": scaled by 1/m to fit inside the target, so any scale up to m keeps it covered.
  m = tf.maximum(h / size[0], w / size[1])
  return (tf.maximum(tf.cast(size[0] * m, tf.int32), 1),
          tf.maximum(tf.cast(size[1] * m, tf.int32), 1))


def check_fit(fit: str) -> None:
  if fit not in FITS:
    raise ValueError(f"fit must be one of {FITS}. Received: fit={fit!r}")


# ------------------------------------------------------------------------------ decoders


def jpeg_at(encoded: tf.Tensor, channels: int, ratio: int = 1) -> tf.Tensor:
  """A JPEG -> uint8, `ratio` times smaller via the DCT; `channels=1` of a colour JPEG is made
  inside libjpeg, which skips the chroma planes."""
  image = tf.io.decode_jpeg(encoded, channels=channels, ratio=ratio)
  image.set_shape([None, None, channels])
  return image


def _cmyk_to_gray(encoded, ratio: int) -> tf.Tensor:
  # libjpeg cannot make one channel of CMYK: RGB first, then luma.
  return pixels.to_grayscale(jpeg_at(encoded, 3, ratio))


def decode_jpeg(encoded: tf.Tensor, channels: int, size: Optional[Sequence[int]] = None,
                fit: str = "stretch") -> tf.Tensor:
  """One JPEG -> uint8 (H, W, channels), in graph ops; per-image DCT scale if `size` is given.

  One `switch_case` picks the ratio (and, for one channel, the CMYK conversion) from the
  header, so only one decode runs per image.
  """
  check_fit(fit)
  if size is None and channels == 3:
    return jpeg_at(encoded, 3)
  shape = tf.image.extract_jpeg_shape(encoded)
  ratios = JPEG_RATIOS if size is not None else (1,)
  index = _ratio_index(shape[0], shape[1], size, fit) if size is not None else tf.constant(0)
  branches = [(lambda r=r: jpeg_at(encoded, channels, r)) for r in ratios]
  if channels == 1:
    branches += [(lambda r=r: _cmyk_to_gray(encoded, r)) for r in ratios]
    index += tf.where(tf.equal(shape[2], _CMYK_COMPONENTS), len(ratios), 0)
  image = tf.switch_case(index, branches)
  image.set_shape([None, None, channels])
  return image


def _rgb(encoded: tf.Tensor, decoder: str) -> tf.Tensor:
  """RGB uint8 (H, W, 3) of a non-JPEG file by its decoder."""
  if decoder == PILLOW:
    return pillow_graph(encoded)
  if decoder == WEBP:
    # TensorFlow reads WebP only with the channel count it stores; alpha is dropped.
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)[..., :3]
  else:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode(encoded: tf.Tensor, channels: int, decoder: str,
           size: Optional[Sequence[int]] = None, fit: str = "stretch") -> tf.Tensor:
  """One file's bytes -> uint8 (H, W, channels) by `decoder` (one of DECODERS), in graph
  ops. `size` (the target) sets a JPEG's DCT scale; other formats decode at full size."""
  if decoder not in DECODERS:
    raise ValueError(f"decoder must be one of {DECODERS}. Received: decoder={decoder!r}")
  if decoder == JPEG:
    return decode_jpeg(encoded, channels, size, fit)
  image = _rgb(encoded, decoder)
  return image if channels == 3 else pixels.to_grayscale(image)


def decode_bytes(data: bytes, channels: int, decoder: str,
                 size: Optional[Sequence[int]] = None,
                 header: Optional[headers.ImageHeader] = None) -> tf.Tensor:
  """The eager decode: the pixels `decode` gives for the same bytes and decoder.

  A JPEG's ratio comes from `header` (read from the bytes when not given), in Python.

  Raises:
    tf.errors.OpError: TensorFlow cannot decode the bytes.
    OSError, ValueError: Pillow cannot (for PILLOW).
  """
  if decoder != JPEG:
    if decoder == PILLOW:
      image = tf.constant(pillow_rgb(data))
      return image if channels == 3 else pixels.to_grayscale(image)
    return decode(tf.constant(data), channels, decoder, size)
  header = header or headers.parse(data)
  ratio = ratio_for_size(header.height, header.width, size)
  if channels == 1 and header.components == _CMYK_COMPONENTS:
    return _cmyk_to_gray(data, ratio)
  return jpeg_at(tf.constant(data), channels, ratio)
