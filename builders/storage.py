"""Turns a validated file into what the records store, per the storage config.

Pixels are made by the one image transform (`images.transform`): the decode, channel
conversion and resize that the input pipeline, the folder loader and prediction apply too.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import tensorflow as tf

from petpipe.images import decode as decode_lib
from petpipe.images import pixels
from petpipe.images import quiet
from petpipe.images import transform
from petpipe.images import validation
from petpipe.pipeline import schema


def _fit_within(height: int, width: int, max_side: int) -> tuple[int, int]:
  scale = max_side / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def _encode(image: tf.Tensor, encoding: str, jpeg_quality: int) -> bytes:
  if encoding == "png":
    return tf.io.encode_png(image).numpy()
  return tf.io.encode_jpeg(image, quality=jpeg_quality, optimize_size=False).numpy()


def decode(data: bytes, verdict: validation.Verdict, channels: int,
           size: tuple[int, int] | None = None) -> tf.Tensor:
  """Decodes to uint8 `channels` as the one transform does (`decode.decode_bytes`, with the
  decoder the verdict's format and reason give; JPEGs at the largest DCT scale still covering
  `size`); a REPAIRED file (libjpeg warns on it) with the warning kept off the console."""
  if verdict.status == validation.REPAIRED:
    return validation.decode_quietly(data, channels, verdict.decoder, size)
  return decode_lib.decode_bytes(data, channels, verdict.decoder, size)


def raw_preprocessing(storage: schema.ImageStorage) -> transform.Preprocessing | None:
  """The transform raw pixels are made with (None for encoded storage): validation of a raw
  build decodes by it, so that its pixels are the ones stored."""
  if not storage.is_raw:
    return None
  return transform.Preprocessing(tuple(storage.size), storage.channels)


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
  if storage.is_raw:
    quietly = verdict.status == validation.REPAIRED
    with quiet.decoding() if quietly else contextlib.nullcontext():
      return _raw_pixels(tuple(size), storage.channels, verdict.decoder)(tf.constant(data)).numpy()
  image = decode(data, verdict, storage.channels, size)
  if size is not None:
    image = pixels.to_uint8(transform.resize(image, size))
  return _encode(image, storage.encoding, jpeg_quality)


_TRACE_LOCK = threading.Lock()


def _raw_pixels(size: tuple[int, int], channels: int, decoder: str):
  """One compiled call per image (the transform's graph entry, rounded to uint8) instead of
  a dozen eager ops, each holding the GIL: raw builds encode about twice as fast."""
  with _TRACE_LOCK:  # traced once per storage and decoder, not once per thread
    return _traced(size, channels, decoder)


@functools.lru_cache(maxsize=64)
def _traced(size: tuple[int, int], channels: int, decoder: str):
  preprocessing = transform.Preprocessing(size, channels)  # as `raw_preprocessing`

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
  def raw(encoded):
    return pixels.to_uint8(transform.transform_file(encoded, preprocessing, decoder))

  raw.get_concrete_function()
  return raw
