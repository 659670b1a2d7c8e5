"""What a finished run reports: loss and accuracy per split, and its pictures (the confusion
matrix and the wrong predictions also as TensorBoard images).

Data-agnostic like the training loop: it takes datasets of `(images, labels)` batches and
the number of examples each holds.
"""

from __future__ import annotations

import os
import time
from typing import Mapping, Optional, Sequence

import keras
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from petpipe.models import head
from petpipe.models import plots

SPLITS = ("train", "validation", "test")
SAMPLE_COUNT = 16


def evaluate(model: keras.Model, dataset: tf.data.Dataset, examples: int) -> dict:
  """Loss, accuracy, examples and images/s of `model` on `dataset`."""
  start = time.perf_counter()
  result = model.evaluate(dataset, verbose=0, return_dict=True)
  seconds = time.perf_counter() - start
  return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"]),
          "examples": examples, "images_per_second": examples / seconds}


def report(model: keras.Model, evaluation: Mapping[str, tf.data.Dataset],
           counts: Mapping[str, Sequence[int]], class_names: Sequence[str],
           history: Sequence[dict], paths: Mapping[str, str],
           multi_worker: bool = False, *, model_name: str = "the model",
           best: Optional[dict] = None) -> dict:
  """Evaluates every split and draws the pictures; returns the final metrics per split.

  Args:
    evaluation: split -> batches in a fixed order.
    counts: split -> examples per class.
    paths: where to draw "curves", "samples" and "confusion" (PNG files); with a
      "tensorboard" folder, the confusion matrix and the wrong predictions are also logged
      there as images (in its `<split>` run, at the last epoch's step).
    multi_worker: each worker predicts the whole split itself (see `_predictions`).
    model_name: which model `model` is, for the confusion matrix's title (a file name).
    best: the epoch the best checkpoint holds (`best_epoch`), marked on the curves.

  Returns:
    split -> `evaluate`'s dict, None for a split the data does not have.
  """
  final = evaluate_splits(model, evaluation, counts)
  shown = next(s for s in ("test", "validation", "train") if s in evaluation)
  labels, predicted, confidence, (images, shown_at) = _predictions(model, evaluation[shown],
                                                                  multi_worker)
  plots.curves(history, paths["curves"], best=best)
  plots.samples(images, labels[shown_at], predicted[shown_at], confidence[shown_at],
                class_names, paths["samples"])
  matrix = plots.confusion_matrix(labels, predicted, len(class_names))
  figure = plots.confusion(matrix, class_names, paths["confusion"],
                           title=confusion_title(model_name, shown, matrix))
  if paths.get("tensorboard"):
    wrong = predicted[shown_at] != labels[shown_at]
    mistakes = plots.samples(
        images[wrong], labels[shown_at][wrong], predicted[shown_at][wrong],
        confidence[shown_at][wrong], class_names, None,
        title=f"{model_name}: wrong predictions on the {shown} split") if wrong.any() else None
    step = history[-1]["epoch"] - 1 if history else 0  # Keras logs epoch N at step N - 1
    log_images(os.path.join(paths["tensorboard"], shown), step,
               {"confusion_matrix": figure, "wrong_predictions": mistakes})
  return final


def evaluate_splits(model: keras.Model, evaluation: Mapping[str, tf.data.Dataset],
                    counts: Mapping[str, Sequence[int]]) -> dict:
  """split -> `evaluate`'s dict, None for a split the data does not have."""
  final = {split: None for split in SPLITS}
  for split, dataset in evaluation.items():
    final[split] = evaluate(model, dataset, sum(counts[split]))
  return final


def confusion_title(model_name: str, split: str, matrix: np.ndarray) -> str:
  """Which model was scored, on which split, and how well (the share of the matrix on its
  diagonal), on two lines, e.g. `model.keras (final, epoch 4)` and
  `test split: accuracy 87.1% (61 of 70)`."""
  total, right = int(matrix.sum()), int(np.trace(matrix))
  accuracy = f"{right / total:.1%}" if total else "n/a"
  return f"{model_name}\n{split} split: accuracy {accuracy} ({right} of {total})"


def log_images(logdir: str, step: int, figures: Mapping[str, Optional[Figure]]) -> None:
  """Logs each figure (None: skipped) as a TensorBoard image summary named by its key."""
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for name, figure in figures.items():
      if figure is not None:
        image = tf.io.decode_png(plots.png_bytes(figure), channels=3)
        tf.summary.image(name, image[tf.newaxis], step=step)
  writer.close()


def best_epoch(history: Sequence[dict], monitor: str) -> Optional[dict]:
  """The first epoch with the lowest `monitor` (the one Keras's `ModelCheckpoint` with
  `save_best_only` keeps): {"epoch", "monitor", "value"}, or None before any epoch."""
  rows = [row for row in history if monitor in row]
  if not rows:
    return None
  row = min(rows, key=lambda r: r[monitor])  # `min` keeps the first of equal values
  return {"epoch": row["epoch"], "monitor": monitor, "value": row[monitor]}


def metrics(config: dict, class_names: Sequence[str], counts: Mapping[str, Sequence[int]],
            history: Sequence[dict], final: Optional[dict], outputs: dict,
            best: Optional[dict] = None, final_model: Optional[str] = None,
            last_epoch_model: Optional[dict] = None) -> dict:
  """metrics.json's content; `final` is None until training has finished; `best` is the
  epoch `model.best.keras` holds; `final_model` names the file `final` measured (the one the
  user is told to use), and `last_epoch_model` holds {"file", "epoch", "final"} of the last
  epoch's model when that is another."""
  trained = [row["images_per_second"] for row in history]
  test = (final or {}).get("test")
  return {
      "config": config,
      "class_names": list(class_names),
      "counts": {split: dict(zip(class_names, c)) for split, c in counts.items()},
      "epochs": list(history),
      "final": final,
      "images_per_second": {
          "train": float(np.mean(trained)) if trained else None,
          "test": test["images_per_second"] if test else None,
      },
      "best": best,
      "final_model": final_model,
      "last_epoch_model": last_epoch_model,
      "outputs": outputs,
  }


def _predictions(model: keras.Model, dataset: tf.data.Dataset, multi_worker: bool = False):
  """Labels, predicted classes and their probabilities, in order, and the images to show
  with their indices: up to half of them mistakes (so the picture shows what the model
  gets wrong), the rest the first images."""
  # Under a multi-worker strategy `predict_on_batch` gathers the batches of all workers;
  # here each worker predicts the whole split itself, so it calls the model directly.
  predict = (lambda x: model(x, training=False)) if multi_worker else model.predict_on_batch
  labels, predicted, confidence = [], [], []
  first, wrong = [], []  # (index, image)
  seen = 0
  for batch_images, batch_labels in dataset:
    probabilities = head.probabilities(keras.ops.convert_to_numpy(predict(batch_images)))
    batch_labels = np.asarray(batch_labels)
    guesses = probabilities.argmax(axis=-1)
    labels.append(batch_labels)
    predicted.append(guesses)
    confidence.append(probabilities.max(axis=-1))
    batch = np.asarray(batch_images)
    for i in range(len(batch)):
      if len(first) < SAMPLE_COUNT:
        first.append((seen + i, batch[i]))
      if guesses[i] != batch_labels[i] and len(wrong) < SAMPLE_COUNT // 2:
        wrong.append((seen + i, batch[i]))
    seen += len(batch)
  chosen = dict(wrong)
  for index, image in first:
    if len(chosen) >= SAMPLE_COUNT:
      break
    chosen.setdefault(index, image)
  order = sorted(chosen)
  images = np.stack([chosen[i] for i in order]) if order else np.zeros((0, 1, 1, 1), np.uint8)
  return (np.concatenate(labels), np.concatenate(predicted), np.concatenate(confidence),
          (images, np.asarray(order, np.int64)))
