"""Turns a validated file into what the records store, per the storage config.

Pixels are made by the one image transform (`pipeline.transform`): the decode, channel
conversion and resize that the input pipeline and prediction apply too.
"""

from __future__ import annotations

import functools
import threading
from typing import Optional

import tensorflow as tf

from petpipe.builders import validation
from petpipe.pipeline import ops
from petpipe.pipeline import schema
from petpipe.pipeline import transform


def _fit_within(height: int, width: int, max_side: int) -> tuple[int, int]:
  scale = max_side / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def _encode(image: tf.Tensor, encoding: str, jpeg_quality: int) -> bytes:
  if encoding == "png":
    return tf.io.encode_png(image).numpy()
  return tf.io.encode_jpeg(image, quality=jpeg_quality, optimize_size=False).numpy()


def decode(
    data: bytes, verdict: validation.Verdict, channels: int,
    size: Optional[tuple[int, int]] = None,
) -> tf.Tensor:
  """Decodes to uint8 `channels` as `transform.decode_bytes` does (JPEGs at the largest DCT
  scale still covering `size`; CMYK JPEGs and other formats to RGB, then luma).

  A REPAIRED file (libjpeg warns on it) decodes at full size through
  `validation.decode_quietly`, which keeps the warning off the console; a file only
  Pillow reads (`pillow_decoded`) is decoded by Pillow.
  """
  if verdict.status == validation.REPAIRED:
    return validation.decode_quietly(data, channels)
  if verdict.reason.startswith(validation.PILLOW_DECODED):
    # TensorFlow cannot read it: Pillow's pixels, as a lossless PNG, take the one transform.
    data = tf.io.encode_png(validation.pillow_decode(data)).numpy()
    return transform.decode_bytes(data, channels, size, image_format="PNG",
                                  image_shape=(verdict.height, verdict.width))
  return transform.decode_bytes(data, channels, size, image_format=verdict.format,
                                image_shape=(verdict.height, verdict.width))


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
  byte; everything else is decoded once, resized if needed (the transform's resize,
  rounded to uint8), and re-encoded.
  """
  if stored_as_is(verdict, storage, max_side):
    return data
  size = None
  if storage.is_raw:
    size = tuple(storage.size)
  elif max_side is not None and max(verdict.width, verdict.height) > max_side:
    size = _fit_within(verdict.height, verdict.width, max_side)
  if storage.is_raw and _graph_decodable(verdict):
    return _raw_pixels(tuple(size), storage.channels, _ENCODINGS[verdict.format])(
        tf.constant(data)).numpy()
  image = decode(data, verdict, storage.channels, size)
  if size is not None:
    image = ops.normalize(transform.resize(image, size), "none")
  if storage.is_raw:
    return image.numpy()
  return _encode(image, storage.encoding, jpeg_quality)


# The graph entry of the one transform takes JPEGs as "jpeg" and the formats
# `tf.io.decode_image` reads as "png".
_ENCODINGS = {"JPEG": "jpeg", "PNG": "png", "GIF": "png", "BMP": "png"}
_TRACE_LOCK = threading.Lock()


def _graph_decodable(verdict: validation.Verdict) -> bool:
  """Files whose pixels `transform.transform_encoded` makes exactly as `decode` does: all but
  the ones libjpeg warns on (decoded quietly) and the ones only Pillow reads."""
  return (verdict.format in _ENCODINGS and verdict.status != validation.REPAIRED
          and not verdict.reason.startswith(validation.PILLOW_DECODED))


def _raw_pixels(size: tuple[int, int], channels: int, encoding: str):
  """One compiled call per image (the transform's graph entry, rounded to uint8) instead of
  a dozen eager ops, each holding the GIL: raw builds encode about twice as fast."""
  with _TRACE_LOCK:  # traced once per storage, not once per thread
    return _traced(size, channels, encoding)


@functools.lru_cache(maxsize=None)
def _traced(size: tuple[int, int], channels: int, encoding: str):
  preprocessing = transform.Preprocessing(size, channels)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
  def pixels(encoded):
    return ops.normalize(transform.transform_encoded(encoded, preprocessing, encoding), "none")

  pixels.get_concrete_function()
  return pixels
