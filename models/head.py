"""The output layer, loss and accuracy that fit a number of classes.

Two classes get one sigmoid unit (binary cross-entropy); more get a softmax. Labels are
integer class indices either way. The output layer computes in float32, so the
probabilities stay accurate under a mixed-precision policy.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def check_num_classes(num_classes: int) -> int:
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2. Received: num_classes={num_classes!r}")
  return int(num_classes)


def output(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
  """Class probabilities: shape (batch, 1) for two classes, (batch, num_classes) otherwise."""
  if check_num_classes(num_classes) == 2:
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
  return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def loss(num_classes: int) -> keras.losses.Loss:
  if check_num_classes(num_classes) == 2:
    return keras.losses.BinaryCrossentropy()
  return keras.losses.SparseCategoricalCrossentropy()


def accuracy(num_classes: int) -> keras.metrics.Metric:
  """Named "accuracy" in both cases, so logs and metrics.json keys do not depend on it."""
  if check_num_classes(num_classes) == 2:
    return keras.metrics.BinaryAccuracy(name="accuracy")
  return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def probabilities(predictions: np.ndarray) -> np.ndarray:
  """One column per class, whatever the head: (batch, 1) sigmoid becomes [1 - p, p]."""
  predictions = np.asarray(predictions, dtype=np.float32)
  if predictions.ndim == 1:
    predictions = predictions[:, None]
  if predictions.shape[-1] == 1:
    return np.concatenate([1.0 - predictions, predictions], axis=-1)
  return predictions
