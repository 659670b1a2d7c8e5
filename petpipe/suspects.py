"""Suspect labels: the training and validation files on which a model's loss is highest.

On folders labelled by hand (PetImages among them) the files a trained model disagrees with
most are where mislabelled files are most likely found: checking the top of this list is the
cheapest way to clean a dataset. Each file is named by its path in the source, as the records
store it (`image/filename`).
"""

from __future__ import annotations

import csv
import heapq
import io
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from petpipe.models import head

FILE = "suspects.csv"
FIELDS = ("file_name", "split", "given_label", "predicted_label", "probability", "loss")
DEFAULT_TOP = 100
SPLITS = ("train", "validation")
_FLOOR = 1e-7  # the smallest probability a loss is taken of (Keras's epsilon)


def find(model, named: Callable[[str], tf.data.Dataset], class_names: Sequence[str],
         splits: Iterable[str] = SPLITS, top: int = DEFAULT_TOP) -> list[dict]:
  """The `top` files of `splits` on which `model`'s loss is highest, highest first.

  `named(split)` gives batches of `(images, labels, file_names)` (`TrainingData.named`, or
  `pipeline.from_dataset_dir` with `PipelineConfig(file_names=True)`). Memory: `top` rows.
  """
  if top < 1:
    raise ValueError(f"top must be at least 1. Received: top={top}")
  kept: list = []  # a heap of (loss, file name, row): the smallest of the top first
  for split in splits:
    for images, labels, names in named(split):
      probabilities = head.probabilities(model.predict_on_batch(images)).astype(np.float64)
      labels = labels.numpy().astype(np.int64)
      given = probabilities[np.arange(len(labels)), labels]
      losses = -np.log(np.clip(given, _FLOOR, 1.0))
      predicted = probabilities.argmax(axis=1)
      for i, name in enumerate(names.numpy()):
        row = {"file_name": name.decode("utf-8", "backslashreplace"), "split": split,
               "given_label": class_names[labels[i]],
               "predicted_label": class_names[predicted[i]],
               "probability": round(float(probabilities[i, predicted[i]]), 6),
               "loss": round(float(losses[i]), 6)}
        item = (row["loss"], _reverse(row["file_name"]), row)
        if len(kept) < top:
          heapq.heappush(kept, item)
        elif item[:2] > kept[0][:2]:
          heapq.heapreplace(kept, item)
  return [row for _, _, row in sorted(kept, key=lambda item: (-item[0], item[2]["file_name"]))]


def _reverse(name: str) -> tuple:
  """Orders names backwards, so that among equal losses the heap keeps the first names."""
  return tuple(-b for b in name.encode("utf-8", "surrogateescape"))


def write(rows: Sequence[dict], path: str) -> None:
  """`rows` as CSV with a header (local or cloud path)."""
  text = io.StringIO()
  writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text.getvalue())


def read(path: str) -> list[dict]:
  """The rows of a suspects.csv (probability and loss as floats)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: suspects.csv is written by petpipe train "
                            f"on record files (not --folder)")
  with tf.io.gfile.GFile(path) as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    row["probability"], row["loss"] = float(row["probability"]), float(row["loss"])
  return rows
