"""The pictures say what they show: the best epoch on the curves, which model the confusion
matrix scored and how well, whole-number counts on the card, and TensorBoard gets the
confusion matrix and the wrong predictions as images."""

from __future__ import annotations

import glob
import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from petpipe.models import plots
from petpipe.models import reports
from petpipe import show

HISTORY = [
    {"epoch": 1, "loss": 0.9, "val_loss": 0.8, "accuracy": 0.5, "val_accuracy": 0.55},
    {"epoch": 2, "loss": 0.6, "val_loss": 0.5, "accuracy": 0.7, "val_accuracy": 0.75},
    {"epoch": 3, "loss": 0.4, "val_loss": 0.6, "accuracy": 0.8, "val_accuracy": 0.7},
]


def _always_cat() -> keras.Model:
  """Predicts class 0 for everything (sigmoid of -5)."""
  model = keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Flatten(),
      keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros",
                         bias_initializer=keras.initializers.Constant(-5.0))])
  model.compile(loss="binary_crossentropy", metrics=["accuracy"])
  return model


def _data() -> tf.data.Dataset:
  """40 images, every fifth a dog: 8 dogs the model calls cats, 32 cats it gets right."""
  images = np.arange(40 * 64, dtype=np.float32).reshape(40, 8, 8, 1) % 256
  labels = np.array([1 if i % 5 == 4 else 0 for i in range(40)], np.int32)
  return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)


def _spy(monkeypatch, module, name: str) -> list:
  """Replaces `module.name` by a wrapper that keeps what each call returns (the figures)."""
  returned, original = [], getattr(module, name)

  def spy(*args, **kwargs):
    returned.append(original(*args, **kwargs))
    return returned[-1]

  monkeypatch.setattr(module, name, spy)
  return returned


def _image_summaries(logdir: str) -> dict:
  """tag -> the PNG images logged under `logdir` (read back from the event files)."""
  found = {}
  for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "images":
          # An image summary's tensor holds width, height, then one PNG per image.
          pngs = tf.make_ndarray(value.tensor)[2:]
          found.setdefault(value.tag, []).extend(
              Image.open(io.BytesIO(png)).convert("RGB") for png in pngs)
  return found


def test_curves_mark_the_best_epoch_on_both_panels(tmp_path):
  best = reports.best_epoch(HISTORY, "val_loss")
  figure = plots.curves(HISTORY, str(tmp_path / "curves.png"), best=best)
  assert best == {"epoch": 2, "monitor": "val_loss", "value": 0.5}
  for axes in figure.axes:
    marks = [line for line in axes.get_lines() if "best" in line.get_label()]
    assert len(marks) == 1
    assert list(marks[0].get_xdata()) == [2, 2]  # a vertical line at epoch 2
    assert "best: epoch 2 (val_loss 0.500)" in [t.get_text() for t in axes.get_legend().get_texts()]
  assert os.path.getsize(tmp_path / "curves.png") > 0


def test_curves_without_a_best_checkpoint_mark_nothing(tmp_path):
  figure = plots.curves(HISTORY, str(tmp_path / "curves.png"))
  assert not [line for axes in figure.axes for line in axes.get_lines()
              if "best" in line.get_label()]


def test_confusion_matrix_is_titled_with_the_model_scored_and_its_accuracy(tmp_path, monkeypatch):
  drawn = _spy(monkeypatch, plots, "confusion")
  paths = {name: str(tmp_path / f"{name}.png") for name in ("curves", "samples", "confusion")}
  reports.report(_always_cat(), {"test": _data()}, {"test": [32, 8]}, ["cat", "dog"], HISTORY,
                 paths, model_name="model.keras (final, epoch 3)")
  title = drawn[0].axes[0].get_title()
  # 32 cats right, 8 dogs wrong.
  assert title == "model.keras (final, epoch 3)\ntest split: accuracy 80.0% (32 of 40)"


def test_tensorboard_gets_the_confusion_matrix_and_the_wrong_predictions(tmp_path):
  paths = {name: str(tmp_path / f"{name}.png") for name in ("curves", "samples", "confusion")}
  paths["tensorboard"] = str(tmp_path / "tensorboard")
  reports.report(_always_cat(), {"test": _data()}, {"test": [32, 8]}, ["cat", "dog"], HISTORY,
                 paths, model_name="model.keras")
  images = _image_summaries(paths["tensorboard"])
  assert set(images) == {"confusion_matrix", "wrong_predictions"}
  assert os.listdir(paths["tensorboard"]) == ["test"]  # the split the pictures show
  confusion, = images["confusion_matrix"]
  with Image.open(paths["confusion"]) as saved:
    assert confusion.size == saved.size  # the same picture as confusion.png
  wrong, = images["wrong_predictions"]
  # The 8 dogs called cats, framed in red.
  pixels = np.asarray(wrong).astype(int)
  assert ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum() > 1000


def test_a_run_without_mistakes_logs_no_wrong_predictions(tmp_path):
  images = np.zeros((8, 8, 8, 1), np.float32)
  data = tf.data.Dataset.from_tensor_slices((images, np.zeros(8, np.int32))).batch(4)
  paths = {name: str(tmp_path / f"{name}.png") for name in ("curves", "samples", "confusion")}
  paths["tensorboard"] = str(tmp_path / "tensorboard")
  reports.report(_always_cat(), {"test": data}, {"test": [8, 0]}, ["cat", "dog"], HISTORY, paths)
  assert set(_image_summaries(paths["tensorboard"])) == {"confusion_matrix"}


CARD = {
    "files_found": 5028,
    "status": {"ignored": 18, "kept": 4990, "skipped": 20},
    "counts_after_balancing": {"train": {"cat": 1997, "dog": 1997}, "test": {"cat": 3, "dog": 3}},
    "skipped_by_reason": {"truncated": 13, "empty": 7},
    "image_width": {"min": 64, "median": 111.5, "max": 160},
    "image_height": {"min": 64, "median": 110, "max": 160},
}


def test_card_title_says_the_status_counts_in_words():
  assert show.card_title("pet_images/gray100", CARD) == (
      "pet_images/gray100: 5,028 files found: 4,990 kept, 20 skipped, 18 ignored")
  assert show.card_title("x/y", {}) == "x/y: files found"


def test_card_bars_tick_whole_numbers_and_carry_their_values(tmp_path):
  sizes = {side: CARD[f"image_{side}"] for side in ("width", "height")}
  panels = [("examples per split and class", CARD["counts_after_balancing"]),
            ("files skipped by reason", CARD["skipped_by_reason"]),
            ("source image sizes (px)", {stat: {side: sizes[side][stat] for side in sizes}
                                         for stat in ("min", "median", "max")}),
            ("tiny counts", {"a": 1, "b": 2})]
  figure = plots.bars(panels, str(tmp_path / "card.png"), title="t")
  for axes in figure.axes:
    ticks = axes.get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (axes.get_title(), ticks)
  labels = {axes.get_title(): sorted(t.get_text() for t in axes.texts) for axes in figure.axes}
  assert labels["examples per split and class"] == sorted(["1,997", "1,997", "3", "3"])
  assert labels["files skipped by reason"] == sorted(["13", "7"])
  assert labels["source image sizes (px)"] == sorted(["64", "64", "111.5", "110", "160", "160"])
  assert labels["tiny counts"] == ["1", "2"]


@pytest.mark.slow
def test_petpipe_show_draws_the_card_with_a_readable_title_and_whole_counts(tmp_path, monkeypatch):
  from petpipe.builders.folder_config import FolderConfig
  from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder

  rng = np.random.default_rng(0)
  for label in ("cat", "dog"):
    (tmp_path / "pets" / label).mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(
          tmp_path / "pets" / label / f"{i}.jpg")
  (tmp_path / "pets" / "dog" / "empty.jpg").write_bytes(b"")
  config = FolderConfig(name="card", root=str(tmp_path / "pets"), encoding="raw", image_size=8,
                        balance="none", split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=config, data_dir=str(tmp_path / "data"))
  builder.download_and_prepare()
  drawn = _spy(monkeypatch, plots, "bars")
  show.show(os.fspath(builder.data_dir), str(tmp_path / "pictures"), n=2)
  figure, = drawn
  assert figure.get_suptitle() == "image_folder/card: 7 files found: 6 kept, 1 skipped"
  counts = figure.axes[0]
  assert all(float(t).is_integer() for t in counts.get_yticks())
  assert sorted(t.get_text() for t in counts.texts) == ["3", "3"]
