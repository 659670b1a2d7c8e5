"""Small, named preprocessing ops of the pipelines: Keras's decode, raw records, channels,
normalise, augment, encode labels.

Each op is a plain TensorFlow function of tensors, so it runs the same eagerly and inside
`tf.data` (the tests run every op both ways). Images are (H, W, C) or batches (B, H, W, C);
decoders return uint8, the augmentations return float32 in [0, 255], and `normalize` makes
the delivered dtype and range. The decode -> channels -> resize policy that builders,
pipelines and prediction share is `images.transform`.
"""

from __future__ import annotations

import math


import tensorflow as tf

from petpipe.images import pixels
from petpipe.pipeline import schema

ZOOM_MIN_SCALE = 0.8
MAX_ROTATION_DEGREES = 10.0


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
  """Decodes a JPEG or PNG (also GIF/BMP for 3 channels) to uint8 (H, W, channels).

  One op, no control flow: inside a `tf.data` map, control flow costs more per image than
  a 250-500 px JPEG takes to decode at a smaller scale saves.
  """
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  image.set_shape([None, None, channels])
  return image


def decode_any(encoded: tf.Tensor, channels: int) -> tf.Tensor:
  """Decodes JPEG, PNG, GIF (first frame), BMP or WebP to 1, 3 or 4 channels, whatever is stored.

  Slower than `decode` (control flow), but also turns grayscale GIF/BMP/CMYK JPEG into one
  channel and any image into RGBA, which the decoders refuse to do themselves.
  """
  # `decode_image` reads WebP only with the channel count it stores: its own op reads any.
  is_webp = tf.strings.regex_full_match(tf.strings.substr(encoded, 0, 12), "(?s)RIFF.{4}WEBP")
  image = tf.cond(
      is_webp,
      lambda: tf.io.decode_webp(encoded)[0],
      lambda: tf.io.decode_image(encoded, channels=0, expand_animations=False),
  )
  return to_channels(image, channels)


def decode_raw(encoded: tf.Tensor, storage: schema.ImageStorage) -> tf.Tensor:
  """Reshapes raw uint8 records, one string or a batch of them, to (..., H, W, C) uint8.

  Vectorised over the batch: raw storage needs no per-image decode at all.
  """
  pixels = tf.io.decode_raw(encoded, tf.uint8)
  shape = tf.concat([tf.shape(encoded), [*storage.size, storage.channels]], axis=0)
  image = tf.reshape(pixels, shape)
  image.set_shape([*encoded.shape, *storage.size, storage.channels])
  return image


def to_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
  """Converts uint8 images with 1-4 channels (gray, gray+alpha, RGB, RGBA) to 1, 3 or 4.

  For images whose channel count is known only at run time (any file format); alpha is
  dropped for 1 and 3 channels and made opaque when added for 4.
  """
  count = tf.shape(images)[-1]
  has_alpha = tf.equal(count % 2, 0)
  color = tf.cond(has_alpha, lambda: images[..., :-1], lambda: images)
  is_rgb = tf.equal(tf.shape(color)[-1], 3)
  if channels == 1:
    images = tf.cond(is_rgb, lambda: pixels.to_grayscale(color), lambda: color[..., :1])
  else:
    rgb = tf.cond(is_rgb, lambda: color[..., :3], lambda: tf.repeat(color[..., :1], 3, axis=-1))
    if channels == 4:
      opaque = tf.fill(tf.shape(images[..., :1]), tf.constant(255, images.dtype))
      rgb = tf.concat([rgb, tf.cond(has_alpha, lambda: images[..., -1:], lambda: opaque)], -1)
    images = rgb
  images.set_shape([*images.shape[:-1], channels])
  return images


def convert_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
  """Like `to_channels` for images whose channel count is known statically (raw storage)."""
  stored = images.shape[-1]
  if stored == channels:
    return images
  if channels == 1:
    return pixels.to_grayscale(images)
  return tf.repeat(images, 3, axis=-1)


def normalize(images: tf.Tensor, mode: str) -> tf.Tensor:
  """Maps [0, 255] pixels to float32 "0-1" or "-1-1", or to uint8 for "none"."""
  if mode == "none":
    return pixels.to_uint8(images)
  images = tf.cast(images, tf.float32)
  if mode == "0-1":
    return images / 255.0
  if mode == "-1-1":
    return images / 127.5 - 1.0
  raise ValueError(f'mode must be one of "0-1", "-1-1", "none". Received: mode={mode!r}')


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Mirrors each image of a batch left-right with probability 1/2."""
  flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < 0.5
  return tf.where(flip[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[2]),
                  images)


def random_zoom(images: tf.Tensor, seed: tf.Tensor,
                min_scale: float = ZOOM_MIN_SCALE) -> tf.Tensor:
  """Crops a random square-ish window of each image (sides `min_scale`..1) back to full size."""
  batch = tf.shape(images)[0]
  scale_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  scale = tf.random.stateless_uniform([batch, 1], scale_seed, minval=min_scale, maxval=1.0)
  offset = tf.random.stateless_uniform([batch, 2], offset_seed) * (1.0 - scale)
  boxes = tf.concat([offset, offset + scale], axis=1)
  return tf.image.crop_and_resize(
      tf.cast(images, tf.float32), boxes, tf.range(batch), images.shape[1:3]
  )


def random_rotate(images: tf.Tensor, seed: tf.Tensor,
                  max_degrees: float = MAX_ROTATION_DEGREES) -> tf.Tensor:
  """Rotates each image of a batch by a random angle in [-max_degrees, max_degrees]."""
  shape = tf.shape(images)
  batch = shape[0]
  height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  limit = max_degrees * math.pi / 180.0
  angle = tf.random.stateless_uniform([batch], seed, minval=-limit, maxval=limit)
  cos, sin = tf.cos(angle), tf.sin(angle)
  cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
  # Maps each output pixel back to the input pixel it samples, rotating about the centre.
  transforms = tf.stack([
      cos, -sin, cx - cos * cx + sin * cy,
      sin, cos, cy - sin * cx - cos * cy,
      tf.zeros_like(angle), tf.zeros_like(angle),
  ], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(images, tf.float32),
      transforms=transforms,
      output_shape=shape[1:3],
      fill_value=0.0,
      interpolation="BILINEAR",
      fill_mode="REFLECT",
  )


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Training augmentation of a batch: flip, crop/zoom, small rotation; float32 out."""
  flip_seed, zoom_seed, rotate_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3)
  )
  images = random_flip(tf.cast(images, tf.float32), flip_seed)
  images = random_zoom(images, zoom_seed)
  return random_rotate(images, rotate_seed)


def encode_labels(labels: tf.Tensor, label_mode: str, num_classes: int) -> tf.Tensor:
  """Class indices -> Keras label formats: int32 (B,), one-hot (B, K) or binary (B, 1)."""
  labels = tf.cast(labels, tf.int32)
  if label_mode == "int":
    return labels
  if label_mode == "categorical":
    return tf.one_hot(labels, num_classes, dtype=tf.float32)
  if label_mode == "binary":
    return tf.cast(labels, tf.float32)[..., tf.newaxis]
  raise ValueError(
      'label_mode must be one of "int", "categorical", "binary". '
      f"Received: label_mode={label_mode!r}"
  )
