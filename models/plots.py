"""The pictures a training run leaves behind: learning curves, sample predictions and
the confusion matrix.

Figures are drawn with matplotlib's object API on the Agg canvas, so nothing touches a
display or pyplot's global state. Each drawing function saves its PNG and returns the
figure, so a caller can also log it (`png_bytes`) or check what it shows.
"""

from __future__ import annotations

import io
import math
from typing import Optional, Sequence

import numpy as np
from matplotlib import patches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import tensorflow as tf

_RIGHT = "tab:green"
_WRONG = "tab:red"
_BEST = "tab:purple"


def _figure(width: float, height: float) -> Figure:
  figure = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _save(figure: Figure, path: Optional[str]) -> Figure:
  """A PNG at `path`, local or on any file system TensorFlow knows (`gs://`, `ram://`...);
  None saves nothing (the figure is only returned)."""
  if path is None:
    return figure
  if "://" not in path:
    figure.savefig(path, dpi=100)
    return figure
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(png_bytes(figure))
  return figure


def png_bytes(figure: Figure) -> bytes:
  """The figure as a PNG file's bytes (as saved: 100 dpi)."""
  buffer = io.BytesIO()
  figure.savefig(buffer, dpi=100, format="png")
  return buffer.getvalue()


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  counts = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(counts, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
  return counts


def curves(history: Sequence[dict], path: Optional[str], best: Optional[dict] = None) -> Figure:
  """Loss and accuracy per epoch, training and (if any) validation; `best` ({"epoch",
  "monitor", "value"}, as `reports.best_epoch` gives it) is marked on both panels, so the
  epoch the best checkpoint holds is seen against the curves."""
  figure = _figure(10, 4)
  epochs = [row["epoch"] for row in history]
  for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
    for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
      values = [row.get(key) for row in history]
      if any(v is not None for v in values):
        axes.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=label)
    if best:
      axes.axvline(best["epoch"], color=_BEST, linestyle="--", linewidth=1.5,
                   label=f"best: epoch {best['epoch']} ({best['monitor']} {best['value']:.3f})")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
  return _save(figure, path)


def samples(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str],
    path: Optional[str],
    columns: int = 4,
    title: str = "",
) -> Figure:
  """A grid of images titled "predicted (p) / true", green when right; a wrong one is
  titled "WRONG" in red and framed in red."""
  count = len(images)
  rows = max(1, math.ceil(count / columns))
  figure = _figure(2.5 * columns, 2.7 * rows + (0.4 if title else 0))
  if title:
    figure.suptitle(title)
  grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
  for index, axes in enumerate(grid):
    axes.axis("off")
    if index >= count:
      continue
    image = np.asarray(images[index])
    if image.shape[-1] == 1:
      axes.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
      axes.imshow(np.clip(image, 0, 255).astype(np.uint8))
    guess, truth = class_names[predicted[index]], class_names[labels[index]]
    right = guess == truth
    axes.set_title(
        f"{'' if right else 'WRONG: '}{guess} ({confidence[index]:.2f})\ntrue: {truth}",
        color=_RIGHT if right else _WRONG,
        fontsize=9,
        fontweight="normal" if right else "bold",
    )
    if not right:
      height, width = image.shape[:2]
      axes.add_patch(patches.Rectangle(
          (-0.5, -0.5), width, height, fill=False, edgecolor=_WRONG, linewidth=4))
  return _save(figure, path)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: Optional[str],
               columns: int = 4, title: str = "") -> Figure:
  """uint8 images (H, W, 1 or 3) of any sizes in a grid, each with its title."""
  count = len(images)
  rows = max(1, math.ceil(count / columns))
  figure = _figure(2.5 * columns, 2.7 * rows + (0.4 if title else 0))
  if title:
    figure.suptitle(title)
  for index, axes in enumerate(np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())):
    axes.axis("off")
    if index < count:
      _draw(axes, images[index])
      axes.set_title(titles[index], fontsize=8)
  return _save(figure, path)


def bars(panels: Sequence[tuple[str, dict]], path: Optional[str], title: str = "") -> Figure:
  """One bar chart per (title, {name: count or {series: count}}) panel, side by side; every
  value is a whole number (files, examples, pixels), so the axes tick whole numbers only and
  each bar is labelled with its value."""
  figure = _figure(5 * max(1, len(panels)), 4)
  if title:
    figure.suptitle(title)
  for axes, (name, values) in zip(np.atleast_1d(figure.subplots(1, max(1, len(panels)))), panels):
    axes.set_title(name)
    nested = {k: v if isinstance(v, dict) else {"": v} for k, v in values.items()}
    series = sorted({s for v in nested.values() for s in v})
    width = 0.8 / max(1, len(series))
    for i, serie in enumerate(series):
      x = np.arange(len(nested)) + i * width
      heights = [v.get(serie, 0) for v in nested.values()]
      drawn = axes.bar(x, heights, width, label=serie or None)
      axes.bar_label(drawn, labels=[_number(h) for h in heights], fontsize=7, padding=2)
    axes.set_xticks(np.arange(len(nested)) + width * (len(series) - 1) / 2, list(nested),
                    rotation=30, ha="right")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Head room for the labels on the highest bars.
    axes.margins(y=0.12)
    if any(series):
      axes.legend(fontsize=8)
    if not nested:
      axes.text(0.5, 0.5, "none", ha="center", va="center", transform=axes.transAxes)
  return _save(figure, path)


def _number(value: float) -> str:
  """5028 -> "5,028"; a median between two sizes keeps its half: 22.5 -> "22.5"."""
  return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _draw(axes, image: np.ndarray) -> None:
  image = np.asarray(image)
  if image.shape[-1] == 1:
    axes.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
  else:
    axes.imshow(np.clip(image, 0, 255).astype(np.uint8))


def confusion(counts: np.ndarray, class_names: Sequence[str], path: Optional[str],
              title: str = "") -> Figure:
  """The confusion matrix as a heat map with the count in each cell."""
  size = max(4.0, 0.6 * len(class_names) + 3)
  figure = _figure(size, size)
  axes = figure.subplots()
  axes.imshow(counts, cmap="Blues")
  ticks = range(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=45, ha="right")
  axes.set_yticks(ticks, class_names)
  axes.set_xlabel("predicted")
  axes.set_ylabel("true")
  if title:
    axes.set_title(title)
  threshold = counts.max() / 2 if counts.size else 0
  for (row, column), value in np.ndenumerate(counts):
    axes.text(column, row, str(value), ha="center", va="center",
              color="white" if value > threshold else "black")
  return _save(figure, path)
