"""Turns a validated file into what the records store, per the storage config."""

from __future__ import annotations

import tensorflow as tf

from petpipe.builders import validation
from petpipe.pipeline import schema


def _fit_within(height: int, width: int, max_side: int) -> tuple[int, int]:
  scale = max_side / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
  # Anti-aliased bilinear: shrinking 500 px photos to 100 px without aliasing.
  resized = tf.image.resize(image, size, method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _encode(image: tf.Tensor, encoding: str, jpeg_quality: int) -> bytes:
  if encoding == "png":
    return tf.io.encode_png(image).numpy()
  return tf.io.encode_jpeg(image, quality=jpeg_quality, optimize_size=False).numpy()


def decode(data: bytes, verdict: validation.Verdict, channels: int) -> tf.Tensor:
  """Decodes to `channels`; libjpeg converts YCbCr/gray JPEGs to grayscale itself.

  Other formats (and CMYK JPEGs) decode to RGB first: BMP cannot decode to one
  channel and libjpeg cannot turn CMYK into grayscale.
  """
  if verdict.status == validation.REPAIRED:
    return validation.decode_quietly(data, channels)
  if channels == 3 or (verdict.format == "JPEG" and verdict.status != validation.TRANSCODED):
    return tf.io.decode_image(data, channels=channels, expand_animations=False)
  return tf.image.rgb_to_grayscale(tf.io.decode_image(data, channels=3, expand_animations=False))


def stored_as_is(verdict: validation.Verdict, storage: schema.ImageStorage, max_side: int | None) -> bool:
  """A clean JPEG that already fits is stored byte for byte (no decode)."""
  fits = max_side is None or max(verdict.width, verdict.height) <= max_side
  return storage.encoding == "jpeg" and verdict.status == validation.KEPT and fits


def encode(
    data: bytes,
    verdict: validation.Verdict,
    storage: schema.ImageStorage,
    max_side: int | None,
    jpeg_quality: int,
):
  """The stored value for one usable file: encoded bytes or a uint8 array.

  A clean JPEG whose stored form is "JPEG at its own size" is stored byte for
  byte; everything else is decoded once, resized if needed, and re-encoded.
  """
  if stored_as_is(verdict, storage, max_side):
    return data
  image = decode(data, verdict, storage.channels)
  if storage.is_raw:
    return _resize(image, storage.size).numpy()
  if max_side is not None and max(verdict.width, verdict.height) > max_side:
    image = _resize(image, _fit_within(verdict.height, verdict.width, max_side))
  return _encode(image, storage.encoding, jpeg_quality)

