"""Model build functions by name, so the command line and configs can pick one.

Every entry is `build(input_shape, num_classes, **options) -> keras.Model` and takes at
least the options `augment`, `pixel_range` and `seed`. The model takes pixels in
[0, 255] (uint8 or float), rescales and augments them itself, and ends in one sigmoid
unit for two classes or a softmax for more. `build` adds "mixup" and "cutmix" (which mix
labels, in the training step: `models.mixing`) around any of them, and passes the other
augmentations on.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras

from petpipe.models import cnn
from petpipe.models import mixing
from petpipe.models import mlp
from petpipe.models import preprocessing
from petpipe.models import xception

BuildFn = Callable[..., keras.Model]

# The stronger net for real photos; `cnn` and `mlp` are the tutorial's.
DEFAULT = "xception"

_MODELS: dict[str, BuildFn] = {
    "mlp": mlp.build,
    "cnn": cnn.build,
    "xception": xception.build,
}


def names() -> list[str]:
  return sorted(_MODELS)


def register(name: str, build_fn: BuildFn) -> None:
  """Adds a model under `name`; names are unique."""
  if name in _MODELS:
    raise ValueError(f"A model named {name!r} is already registered.")
  _MODELS[name] = build_fn


def get(name: str) -> BuildFn:
  if name not in _MODELS:
    raise ValueError(f"Unknown model {name!r}; known models: {', '.join(names())}.")
  return _MODELS[name]


def build(name: str, input_shape: Sequence[int], num_classes: int, **options) -> keras.Model:
  """Builds the model registered as `name`; with "mixup" or "cutmix" in `augment`, a
  `mixing.MixingModel` that mixes its training batches (seeded by `seed`)."""
  build_fn = get(name)
  mixes = ()
  if options.get("augment") is not None:
    names = preprocessing.augmentation_names(options["augment"])
    mixes = tuple(n for n in names if n in preprocessing.MIXING_AUGMENTATIONS)
    if mixes:
      options["augment"] = tuple(n for n in names if n not in mixes) or False
  model = build_fn(input_shape, num_classes, **options)
  return mixing.MixingModel.of(model, mixes, options.get("seed")) if mixes else model
