"""Each in-model augmentation, run twice as big_vision runs its ops: eagerly and inside
tf.data; and all of them inside `fit` (under deterministic ops, with exact resume, in
tests/test_train.py)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from petpipe import models
from petpipe.models import head
from petpipe.models import preprocessing

SIZE = 16


def _images(channels: int = 1) -> np.ndarray:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, SIZE, SIZE, channels)).astype(np.uint8)
  images[:, :, : SIZE // 2] //= 4  # a dark half, so flips and crops show
  return images


def _layers(name: str):
  return preprocessing.augmentation(seed=1, augment=[name], image_size=(SIZE, SIZE))


def _apply(layers, images, training: bool):
  x = tf.cast(images, tf.float32)
  for layer in layers:
    x = layer(x, training=training)
  return x


@pytest.mark.parametrize("name", preprocessing.AUGMENTATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_augmentation_changes_training_images_only_eagerly(name, channels):
  images = _images(channels)
  layers = _layers(name)
  trained = np.asarray(_apply(layers, images, training=True))
  assert trained.shape == images.shape
  assert trained.min() >= 0 and trained.max() <= 255.5
  assert not np.allclose(trained, images)
  np.testing.assert_allclose(np.asarray(_apply(layers, images, training=False)), images)


@pytest.mark.parametrize("name", preprocessing.AUGMENTATIONS)
def test_each_augmentation_runs_inside_tf_data(name):
  images = _images()
  layers = _layers(name)
  dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(
      lambda x: _apply(layers, x, training=True))
  batches = np.concatenate(list(dataset.as_numpy_iterator()))
  assert batches.shape == images.shape and batches.dtype == np.float32
  assert not np.allclose(batches, images)


def test_augment_names_are_checked_and_true_is_the_default_set():
  assert preprocessing.augmentation_names(True) == ("flip", "rotate")
  assert preprocessing.augmentation_names("zoom, crop") == ("zoom", "crop")
  assert preprocessing.augmentation_names("none") == () == preprocessing.augmentation_names(False)
  with pytest.raises(ValueError, match="augment must name some of"):
    preprocessing.augmentation_names("flip,sharpen")


def test_a_model_built_with_a_list_holds_those_layers_in_order():
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=["contrast", "flip", "crop"], seed=0)
  names = [layer.name for layer in model.layers]
  assert names[1:5] == ["flip", "crop", "crop_resize", "contrast"]


def test_a_model_with_every_augmentation_trains_inside_fit():
  # Under deterministic ops, with exact resume: tests/test_train.py's kill test trains
  # this same list.
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (8, SIZE, SIZE, 1)).astype(np.uint8)
  y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32)
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=preprocessing.AUGMENTATIONS, seed=3)
  model.compile("adam", loss=head.loss(2))
  before = [np.asarray(w) for w in model.trainable_weights]
  history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1,
                      verbose=0, shuffle=False)
  assert np.isfinite(history.history["loss"][0])
  assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.trainable_weights))


@pytest.mark.parametrize("name", preprocessing.AUGMENTATIONS)
def test_only_the_documented_augmentations_compile_with_xla(name):
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=[name], seed=0)
  xla = name in preprocessing.XLA_AUGMENTATIONS
  # Keras warns when it drops XLA for a layer that does not support it.
  with contextlib.nullcontext() if xla else pytest.warns(UserWarning, match="jit_compile"):
    model.compile("adam", loss=head.loss(2), jit_compile=True)
  assert bool(model.jit_compile) == xla
