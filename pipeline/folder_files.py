"""The folder loader's files: checked once, then read, decoded and resized per file in tf.data.

Each file is checked before the first epoch by the image-file layer (`validation.check_file`:
its header, its limits, and the decoder the format policy gives it), so a bad file is
skipped with a reason instead of failing mid-epoch. Each good file then takes a route:

* with `fast_decode` (what `petpipe train --folder` uses), its decoder through the one
  transform (`images.transform`), rounded to uint8 values: the pixels a raw build stores
  and prediction feeds;
* by default, Keras's own decode (`tf.io.decode_image` with the channels asked for) for
  the files Keras reads, so the pixels are Keras's; the files Keras cannot read (WebP, GIF
  and BMP, CMYK for grayscale, the BMPs TensorFlow misreads) take their decoder at full
  size, then Keras's resize;
* for `color_mode="rgba"`, an any-format decode to four channels (Pillow's for BMPs that
  TensorFlow misreads).

A dataset whose files all take one route runs without per-image control flow.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from petpipe.images import decode
from petpipe.images import pixels
from petpipe.images import transform
from petpipe.images import validation
from petpipe.pipeline import input_pipeline
from petpipe.pipeline import ops

KERAS = "keras"  # Keras's decode: tf.io.decode_image with the channels asked for
RGBA = "rgba"  # any format to four channels
_KERAS_FORMATS = ("jpeg", "png")


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  """The settings every image of one call is loaded with (see the public arguments)."""

  image_size: tuple
  num_channels: int
  label_mode: Optional[str]
  num_classes: int
  interpolation: str
  crop_to_aspect_ratio: bool
  pad_to_aspect_ratio: bool
  data_format: str
  batch_size: Optional[int]
  deterministic: bool
  fast_decode: bool = False

  @property
  def fit(self) -> str:
    if self.crop_to_aspect_ratio:
      return "crop"
    return "pad" if self.pad_to_aspect_ratio else "stretch"

  @property
  def transformed(self) -> bool:
    """Pixels of the one transform (rounded), not Keras's."""
    return (self.fast_decode and self.num_channels != 4 and self.interpolation != "nearest")


def check(paths: Sequence[str], limits: validation.Limits = validation.READER_LIMITS):
  """{path: FileCheck} of the good files and {path: reason} of the others, in `paths` order."""
  checks, reasons = {}, {}
  # One thread: ~15 us a file from its header; Python threads contend for the GIL.
  for path in paths:
    found = validation.check_file(path, limits)
    if found.reason:
      reasons[path] = found.reason
    else:
      checks[path] = found
  return checks, reasons


def route(found: validation.FileCheck, options: LoadOptions) -> str:
  """How one good file is decoded under `options` (see the module docstring)."""
  if options.num_channels == 4:
    return decode.PILLOW if found.decoder == decode.PILLOW else RGBA
  if options.transformed:
    return found.decoder
  header = found.header
  cmyk_gray = options.num_channels == 1 and header.components == 4
  if header.format in _KERAS_FORMATS and not header.needs_pillow and not cmyk_gray:
    return KERAS
  return found.decoder


def load_function(routes: Sequence[str], options: LoadOptions):
  """(path, route index, ...) -> the decoded, resized image (float32, or uint8 for
  "nearest", as Keras delivers them), for files taking `routes`."""
  size, channels = options.image_size, options.num_channels
  # With `fast_decode`, a JPEG decodes at the largest DCT scale still covering the target.
  target = size if options.transformed else None

  def by(name):
    if name == KERAS:
      return lambda encoded: ops.decode(encoded, channels)
    if name == RGBA:
      return lambda encoded: ops.decode_any(encoded, 4)
    if name == decode.PILLOW and channels == 4:
      return lambda encoded: decode.pillow_graph(encoded, 4)
    return lambda encoded: decode.decode(encoded, channels, name, target, options.fit)

  decoders = [by(name) for name in routes]

  def load(path, index):
    encoded = tf.io.read_file(path)
    if len(decoders) == 1:
      image = decoders[0](encoded)
    else:
      image = tf.switch_case(index, [lambda d=d: d(encoded) for d in decoders])
    image.set_shape([None, None, channels])
    image = transform.resize(image, size, method=options.interpolation, fit=options.fit)
    if options.transformed:
      image = tf.cast(pixels.to_uint8(image), tf.float32)  # the pixels records hold
    elif options.interpolation == "nearest":
      image = tf.cast(image, tf.uint8)  # Keras keeps the decoded dtype for "nearest".
    if options.data_format == "channels_first":
      image = tf.transpose(image, (2, 0, 1))
      image.set_shape((channels, size[0], size[1]))
    else:
      image.set_shape((size[0], size[1], channels))
    return image

  return load


def dataset(paths: Sequence[str], labels, checks: dict, options: LoadOptions, *, shuffle: bool,
            seed: int, with_paths: bool = False) -> tf.data.Dataset:
  """Batches of the good files `paths` (all in `checks`), as Keras delivers them."""
  file_routes = [route(checks[p], options) for p in paths]
  routes = sorted(set(file_routes))
  index = np.asarray([routes.index(r) for r in file_routes], np.int32)
  load = load_function(routes or [KERAS], options)
  elements = [tf.constant(list(paths), tf.string), index]
  if options.label_mode:
    elements.append(np.asarray(labels, np.int32))

  def load_one(path, route_index, *rest):
    image = load(path, route_index)
    out = (image, *rest)
    return (*out, path) if with_paths else (out if len(out) > 1 else image)

  def finish(images, *rest):
    if not options.label_mode:
      return images
    return images, ops.encode_labels(rest[0], options.label_mode, options.num_classes)

  buffer = options.batch_size * 8 if options.batch_size is not None else 1024
  return input_pipeline.file_batches(
      tf.data.Dataset.from_tensor_slices(tuple(elements)), load_one, count=len(paths),
      batch_size=options.batch_size, shuffle_buffer=buffer if shuffle else 0, seed=seed,
      deterministic=options.deterministic, finish=None if with_paths else finish)
