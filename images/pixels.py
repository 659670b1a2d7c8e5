"""Small pixel ops of the one transform: luma, rounding to uint8, the central crop.

Plain TensorFlow functions of tensors, so they run the same eagerly and inside `tf.data`.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

# ITU-R BT.601 luma, the weights libjpeg uses for its own RGB -> grayscale conversion.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_grayscale(images: tf.Tensor) -> tf.Tensor:
  """RGB -> one channel with libjpeg's weights, keeping the dtype (rounded for integers)."""
  luma = tf.reduce_sum(tf.cast(images, tf.float32) * tf.constant(LUMA_WEIGHTS), axis=-1,
                       keepdims=True)
  return cast_like(luma, images.dtype)


def to_uint8(images: tf.Tensor) -> tf.Tensor:
  """Pixels in [0, 255] as uint8, rounded to the nearest and saturated: what records hold,
  what the pipelines ship and what prediction feeds."""
  return cast_like(images, tf.uint8)


def cast_like(images: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  """Casts, rounding and saturating when going from floats to integers."""
  if dtype.is_integer and not images.dtype.is_integer:
    return tf.saturate_cast(tf.math.round(images), dtype)
  return tf.cast(images, dtype)


def center_crop_to_aspect(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
  """Crops the largest central window with the aspect ratio of `size` (Keras `smart_resize`)."""
  shape = tf.shape(images)
  height, width = shape[-3], shape[-2]
  crop_height = tf.cast(tf.cast(width * size[0], tf.float32) / size[1], tf.int32)
  crop_height = tf.maximum(tf.minimum(height, crop_height), 1)
  crop_width = tf.cast(tf.cast(height * size[1], tf.float32) / size[0], tf.int32)
  crop_width = tf.maximum(tf.minimum(width, crop_width), 1)
  top = (height - crop_height) // 2
  left = (width - crop_width) // 2
  return images[..., top:top + crop_height, left:left + crop_width, :]
