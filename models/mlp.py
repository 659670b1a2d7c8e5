"""The tutorial's first network: Flatten -> Dense 128 relu -> Dense 128 relu -> output.

A baseline: it sees pixels, not shapes, so it learns little from real photos.
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
    units: Sequence[int] = (128, 128),
    augment: Union[bool, Sequence[str]] = False,
    pixel_range: Tuple[float, float] = preprocessing.PIXEL_RANGE,
    seed: Optional[int] = None,
) -> keras.Model:
  """A multilayer perceptron over the flattened, rescaled pixels."""
  inputs, x = preprocessing.stem(input_shape, augment=augment, pixel_range=pixel_range, seed=seed)
  x = layers.Flatten()(x)
  for width in units:
    x = layers.Dense(width, activation="relu")(x)
  return keras.Model(inputs, head.output(x, num_classes), name="mlp")
