"""The layers every model starts with: pixel rescaling and train-time augmentation.

They live inside the model so the input pipeline can ship uint8 pixels (4x fewer bytes
than float32) and the accelerator does the arithmetic. A saved model therefore takes
raw pixel values, as the pipeline (`normalize="none"`) and `petpipe predict` feed it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

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


# The augmentations a model can apply to its input, by name (`--augment`). The image ones
# are Keras 3 random layers at the start of the model, active only in training; "mixup"
# and "cutmix" mix labels too, so they run in the training step (`models.mixing`, added
# by `models.build`). Under `jit_compile` (XLA) Keras compiles "flip", "contrast", "mixup"
# and "cutmix"; "rotate", "zoom", "crop" and "randaugment" hold image transforms Keras
# marks as not XLA-compatible, and a model with them trains without XLA (see README).
IMAGE_AUGMENTATIONS = ("flip", "rotate", "zoom", "crop", "contrast", "randaugment")
MIXING_AUGMENTATIONS = ("mixup", "cutmix")
AUGMENTATIONS = IMAGE_AUGMENTATIONS + MIXING_AUGMENTATIONS
XLA_AUGMENTATIONS = ("flip", "contrast", "mixup", "cutmix")
DEFAULT_AUGMENTATION = ("flip", "rotate")  # Keras's PetImages example


def augmentation_names(augment: Union[bool, str, Sequence[str], None]) -> tuple[str, ...]:
  """`augment` as a tuple of names: True is the default set, False/None/"none" nothing,
  "flip,zoom" or ["flip", "zoom"] those."""
  if augment is True:
    return DEFAULT_AUGMENTATION
  if not augment or augment == "none":
    return ()
  names = [n.strip() for n in augment.split(",")] if isinstance(augment, str) else list(augment)
  unknown = [n for n in names if n not in AUGMENTATIONS]
  if unknown or not names:
    raise ValueError(f"augment must name some of {', '.join(AUGMENTATIONS)} (or be True, "
                     f"False or 'none'). Received: augment={augment!r}")
  return tuple(dict.fromkeys(names))


def augmentation(seed: Optional[int] = None, augment: Union[bool, Sequence[str]] = True,
                 image_size: Optional[Tuple[int, int]] = None) -> list[layers.Layer]:
  """The random layers `augment` names, in a fixed order (geometry, then colour), active
  only in training. Pixels stay in [0, 255]; "crop" takes a random 90% crop and resizes it
  back to `image_size` (needed for it). "mixup" and "cutmix" are no layers: a model
  built by `petpipe.models.build` applies them in its training step."""
  names = augmentation_names(augment)
  mixing = [n for n in names if n in MIXING_AUGMENTATIONS]
  if mixing:
    raise ValueError(f"{' and '.join(mixing)} mix labels too and are not layers: build the "
                     f"model with petpipe.models.build. Received: augment={augment!r}")
  result = []
  for name in IMAGE_AUGMENTATIONS:
    if name not in names:
      continue
    if name == "flip":
      result.append(layers.RandomFlip("horizontal", seed=seed, name="flip"))
    elif name == "rotate":
      result.append(layers.RandomRotation(0.1, seed=seed, name="rotation"))
    elif name == "zoom":
      result.append(layers.RandomZoom(0.2, seed=seed, name="zoom"))
    elif name == "crop":
      if image_size is None:
        raise ValueError("crop needs the image size. Received: image_size=None")
      height, width = image_size
      result += [layers.RandomCrop(max(1, int(height * 0.9)), max(1, int(width * 0.9)),
                                   seed=seed, name="crop"),
                 layers.Resizing(height, width, name="crop_resize")]
    elif name == "contrast":
      result.append(layers.RandomContrast(0.3, value_range=PIXEL_RANGE, seed=seed,
                                          name="contrast"))
    elif name == "randaugment":
      result.append(layers.RandAugment(value_range=PIXEL_RANGE, seed=seed, name="randaugment"))
  return result


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
    augment: Union[bool, Sequence[str]] = False,
    pixel_range: Tuple[float, float] = PIXEL_RANGE,
    seed: Optional[int] = None,
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
  """The input and the rescaled (and, if asked, augmented: True or names from
  `AUGMENTATIONS`) tensor models build on."""
  inputs = image_input(input_shape)
  x = inputs
  for layer in augmentation(seed, augment, tuple(input_shape[:2])):
    x = layer(x)
  return inputs, rescaling(pixel_range)(x)
