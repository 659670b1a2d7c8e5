"""The layers every model starts with: pixel rescaling and train-time augmentation.

They live inside the model so the input pipeline can ship uint8 pixels (4x fewer bytes
than float32) and the accelerator does the arithmetic. A saved model therefore takes
raw pixel values, as the pipeline (`normalize="none"`) and `petpipe predict` feed it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
from keras import layers

# The value range of the pixels a model is fed: uint8, or float in the same range
# (as `keras.utils.image_dataset_from_directory` yields).
PIXEL_RANGE = (0.0, 255.0)


def check_input_shape(input_shape: Sequence[int]) -> Tuple[int, int, int]:
  """`(height, width, channels)` as ints; fails early on anything else."""
  shape = tuple(input_shape)
  if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
    raise ValueError(
        "input_shape must be three positive ints (height, width, channels). "
        f"Received: input_shape={input_shape!r}"
    )
  return shape


def image_input(input_shape: Sequence[int]) -> keras.KerasTensor:
  """The model input. float32, so uint8 and float batches both work: the cast to float
  happens inside the compiled step, on the device."""
  return keras.Input(shape=check_input_shape(input_shape), name="image")


def augmentation(seed: Optional[int] = None) -> list[layers.Layer]:
  """Random horizontal flips and small rotations, active only in training (as in Keras's
  PetImages example).

  Keras runs geometric layers such as `RandomRotation` outside XLA, so a model that
  augments trains without `jit_compile`.
  """
  return [
      layers.RandomFlip("horizontal", seed=seed, name="flip"),
      layers.RandomRotation(0.1, seed=seed, name="rotation"),
  ]


def rescaling(pixel_range: Tuple[float, float] = PIXEL_RANGE) -> layers.Layer:
  """Maps `pixel_range` to [0, 1]."""
  low, high = (float(v) for v in pixel_range)
  if not high > low:
    raise ValueError(
        f"pixel_range must be (low, high) with high > low. Received: pixel_range={pixel_range!r}"
    )
  return layers.Rescaling(1.0 / (high - low), offset=-low / (high - low), name="rescale")


def stem(
    input_shape: Sequence[int],
    augment: bool = False,
    pixel_range: Tuple[float, float] = PIXEL_RANGE,
    seed: Optional[int] = None,
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
  """The input and the rescaled (and, if asked, augmented) tensor models build on."""
  inputs = image_input(input_shape)
  x = inputs
  if augment:
    for layer in augmentation(seed):
      x = layer(x)
  return inputs, rescaling(pixel_range)(x)
