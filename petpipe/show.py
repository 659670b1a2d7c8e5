"""See a built dataset: a grid of its examples with labels and file names, and its card.

    paths = show("out/pet_images/gray100/1.0.0", out_dir=".", split="train", n=16)

Works for every storage (raw pixels, JPEG, PNG): TFDS decodes each record with the
dataset's own features, where `tfds.show_examples` refuses raw tensors. The second picture
charts the build's card: examples per split and class, files skipped by reason, and the
sizes of the source images.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.builders.card import histogram_bins
from petpipe.models import plots
from petpipe.pipeline import schema


def show(dataset_dir: str, out_dir: str = ".", split: str = "train", n: int = 16,
         columns: int = 4) -> tuple[str, Optional[str]]:
  """Writes `<name>_<config>_<split>.png` (the first `n` examples of `split`) and, when the
  dataset has a build card, `<name>_<config>_card.png` into `out_dir`; returns their paths
  (the second None without a card).

  Raises:
    FileNotFoundError: `dataset_dir` is not a built dataset folder.
    ValueError: `split` is not one of its splits, or `n` is not positive.
  """
  if not tf.io.gfile.exists(os.path.join(dataset_dir, "dataset_info.json")):
    raise FileNotFoundError(f"{dataset_dir} is not a built dataset folder (no dataset_info.json).")
  if n <= 0:
    raise ValueError(f"n must be a positive int. Received: n={n!r}")
  builder = tfds.builder_from_directory(dataset_dir)
  info = builder.info
  if split not in info.splits:
    raise ValueError(f"{dataset_dir} has the splits {sorted(info.splits)}. Received: split={split!r}")
  names = schema.class_names_of(info.features)
  images, titles = [], []
  for example in builder.as_dataset(split=split, shuffle_files=False).take(n).as_numpy_iterator():
    images.append(np.asarray(example[schema.IMAGE]))
    filename = example[schema.FILENAME].decode()
    titles.append(f"{names[int(example[schema.LABEL])]}\n{_shorten(filename)}")
  tf.io.gfile.makedirs(out_dir)
  stem = os.path.join(out_dir, f"{info.name}_{info.config_name or 'default'}")
  grid = f"{stem}_{split}.png"
  plots.image_grid(images, titles, grid, columns=columns,
                   title=f"{info.name}/{info.config_name} {split}: first {len(images)} of "
                         f"{info.splits[split].num_examples}")
  card = info.metadata.get("card") if info.metadata else None
  if not card:
    return grid, None
  card_path = f"{stem}_card.png"
  sizes = {side: card.get(f"image_{side}") or {} for side in ("width", "height")}
  panels = [
      ("examples per split and class", card.get("counts_after_balancing", {})),
      ("files skipped by reason", card.get("skipped_by_reason", {})),
      ("source image sizes (px)", {stat: {side: sizes[side].get(stat, 0) for side in sizes}
                                   for stat in ("min", "median", "max")}),
  ]
  if "longest_side_histogram" in card:  # cards of older builds have none
    panels.append(("files by longest side (px)", histogram_bins(card["longest_side_histogram"])))
  plots.bars(panels, card_path, title=card_title(f"{info.name}/{info.config_name}", card))
  return grid, card_path


def show_suspects(run_dir: str, out_dir: str = ".", n: int = 16, columns: int = 4) -> str:
  """Writes `suspects.png` into `out_dir`: the first `n` files of a run's `suspects.csv`, each
  with its given and predicted label, and returns its path. The pictures come from the
  records the run trained on (named in its metrics.json).

  Raises:
    FileNotFoundError: the run folder has no suspects.csv or metrics.json.
    ValueError: `n` is not positive, or the list is empty.
  """
  import dataclasses
  import json

  from petpipe import experiment
  from petpipe import suspects as suspects_lib
  from petpipe.pipeline import training_data

  if n <= 0:
    raise ValueError(f"n must be a positive int. Received: n={n!r}")
  rows = suspects_lib.read(os.path.join(run_dir, suspects_lib.FILE))[:n]
  if not rows:
    raise ValueError(f"{os.path.join(run_dir, suspects_lib.FILE)} lists no files.")
  metrics_path = os.path.join(run_dir, experiment.OUTPUTS["metrics"])
  if not tf.io.gfile.exists(metrics_path):
    raise FileNotFoundError(f"{run_dir} is not a run folder (no metrics.json).")
  with tf.io.gfile.GFile(metrics_path) as f:
    used = json.load(f)["config"]
  fields = {f.name for f in dataclasses.fields(experiment.RunConfig)}
  config = experiment.RunConfig(**{k: v for k, v in used.items() if k in fields})
  data = training_data.load(config.source(), image_size=config.image_size,
                            channels=config.channels)
  wanted = {(r["split"], r["file_name"]): i for i, r in enumerate(rows)}
  images = [None] * len(rows)
  for split in sorted({r["split"] for r in rows}):
    for batch, _, names in data.named(split):
      for image, name in zip(batch.numpy(), names.numpy()):
        i = wanted.get((split, name.decode("utf-8", "backslashreplace")))
        if i is not None:
          images[i] = image
  missing = [rows[i]["file_name"] for i, image in enumerate(images) if image is None]
  if missing:
    raise ValueError(f"{len(missing)} suspect file(s) are not in the run's records any more, "
                     f"e.g. {missing[0]}: the data changed since the run")
  titles = [f"{r['given_label']} -> {r['predicted_label']} {r['probability']:.0%}\n"
            f"{_shorten(r['file_name'])}" for r in rows]
  tf.io.gfile.makedirs(out_dir)
  path = os.path.join(out_dir, "suspects.png")
  plots.image_grid(images, titles, path, columns=columns,
                   title=f"{len(rows)} files of highest loss: given -> predicted label")
  return path


def card_title(dataset: str, card: dict) -> str:
  """The card picture's title: the files found and their status counts in words, largest
  first, e.g. `pet_images/gray100: 5,028 files found: 4,990 kept, 20 skipped, 18 ignored`."""
  found = card.get("files_found")
  title = f"{dataset}: " + (f"{found:,} files found" if isinstance(found, int) else "files found")
  status = sorted((card.get("status") or {}).items(), key=lambda item: (-item[1], item[0]))
  if status:
    title += ": " + ", ".join(f"{count:,} {name}" for name, count in status)
  return title


def _shorten(name: str, limit: int = 28) -> str:
  return name if len(name) <= limit else "…" + name[-(limit - 1):]
