"""A small Xception-style network: the default for real photos.

Keras's "Image classification from scratch" example trains this layout on PetImages
(180x180 RGB) to about 96% validation accuracy: a strided conv entry, residual blocks of
separable convolutions that halve the resolution, global average pooling and dropout.
This version is scaled down (32..256 filters instead of 128..1024) to train on a CPU.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import keras
from keras import layers

from petpipe.models import head
from petpipe.models import preprocessing

# Keras's default (0.99) needs hundreds of steps before the moving statistics used at
# evaluation match the batches; 0.9 settles within an epoch of a small dataset.
BN_MOMENTUM = 0.9


def build(
    input_shape: Sequence[int],
    num_classes: int,
    entry_filters: int = 32,
    block_filters: Sequence[int] = (64, 128, 256),
    exit_filters: int = 256,
    dropout: float = 0.25,
    augment: Union[bool, Sequence[str]] = True,
    pixel_range: Tuple[float, float] = preprocessing.PIXEL_RANGE,
    seed: Optional[int] = None,
) -> keras.Model:
  """Entry conv, one residual separable-conv block per `block_filters`, exit conv, head."""
  inputs, x = preprocessing.stem(input_shape, augment=augment, pixel_range=pixel_range, seed=seed)
  x = layers.Conv2D(entry_filters, 3, strides=2, padding="same")(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
  x = layers.Activation("relu")(x)
  previous = x
  for width in block_filters:
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(width, 3, padding="same")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(width, 3, padding="same")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    # The shortcut is projected to the block's width and resolution.
    residual = layers.Conv2D(width, 1, strides=2, padding="same")(previous)
    x = layers.add([x, residual])
    previous = x
  x = layers.SeparableConv2D(exit_filters, 3, padding="same")(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
  x = layers.Activation("relu")(x)
  x = layers.GlobalAveragePooling2D()(x)
  if dropout:
    x = layers.Dropout(dropout, seed=seed)(x)
  return keras.Model(inputs, head.output(x, num_classes), name="xception")
