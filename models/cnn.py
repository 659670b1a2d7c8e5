"""The tutorial's convnet: Conv -> Pool -> Conv -> Pool -> Dense -> output.

The tutorial's layout, narrower by default (32 and 64 filters instead of 256 and 256) so
it trains in seconds per epoch on a CPU; pass `filters` to widen it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import keras
from keras import layers

from petpipe.models import head
from petpipe.models import preprocessing


def build(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (32, 64),
    dense: int = 64,
    dropout: float = 0.0,
    augment: Union[bool, Sequence[str]] = False,
    pixel_range: Tuple[float, float] = preprocessing.PIXEL_RANGE,
    seed: Optional[int] = None,
) -> keras.Model:
  """One 3x3 conv + 2x2 max-pool block per entry of `filters`, then a dense layer."""
  inputs, x = preprocessing.stem(input_shape, augment=augment, pixel_range=pixel_range, seed=seed)
  for width in filters:
    x = layers.Conv2D(width, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
  x = layers.Flatten()(x)
  x = layers.Dense(dense, activation="relu")(x)
  if dropout:
    x = layers.Dropout(dropout, seed=seed)(x)
  return keras.Model(inputs, head.output(x, num_classes), name="cnn")
