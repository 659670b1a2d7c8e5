"""samples.png shows what the model gets wrong: mistakes are picked first and framed in red."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from petpipe.models import plots
from petpipe.models import reports


def _always_cat() -> keras.Model:
  """Predicts class 0 for everything (sigmoid of -5)."""
  return keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Flatten(),
      keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros",
                         bias_initializer=keras.initializers.Constant(-5.0))])


def _data() -> tf.data.Dataset:
  images = np.arange(40 * 64, dtype=np.float32).reshape(40, 8, 8, 1) % 256
  labels = np.array([1 if i % 5 == 4 else 0 for i in range(40)], np.int32)  # 8 dogs
  return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)


def test_samples_hold_the_mistakes_and_the_first_images_in_order():
  labels, predicted, _, (images, shown) = reports._predictions(_always_cat(), _data())
  assert len(images) == len(shown) == reports.SAMPLE_COUNT
  assert list(shown) == sorted(shown)
  wrong = [i for i in shown if predicted[i] != labels[i]]
  assert len(wrong) == 8  # every dog (at most half the picture), then the first cats
  np.testing.assert_array_equal(images[0], np.asarray(list(_data().unbatch())[0][0]))


def test_wrong_predictions_are_framed_in_red(tmp_path):
  labels, predicted, confidence, (images, shown) = reports._predictions(_always_cat(), _data())

  def red_pixels(path, keep):
    plots.samples(images[keep], labels[shown][keep], predicted[shown][keep],
                  confidence[shown][keep], ["cat", "dog"], str(path))
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum())

  right = np.array([predicted[i] == labels[i] for i in shown])
  assert red_pixels(tmp_path / "wrong.png", ~right) > 20 * red_pixels(tmp_path / "right.png", right)
