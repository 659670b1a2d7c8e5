"""Suspect labels after training: planted mislabelled files come out on top."""

from __future__ import annotations

import csv
import os

from click.testing import CliRunner
import numpy as np
from PIL import Image
import pytest

from petpipe import experiment
from petpipe import suspects
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.scripts import show as show_script

PER_CLASS = 40
# (folder it is put in, what it shows): dark pictures filed as light and light as dark.
PLANTED = {f"light/planted_dark_{i}.jpg": "dark" for i in range(3)}
PLANTED.update({f"dark/planted_light_{i}.jpg": "light" for i in range(3)})


def _picture(rng, path, level) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.clip(rng.normal(level, 25, (16, 16)), 0, 255).astype(np.uint8)
  Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run of the mlp on dark and light pictures with six planted mislabelled files."""
  tmp = tmp_path_factory.mktemp("suspects")
  rng = np.random.default_rng(7)
  levels = {"dark": 60, "light": 190}
  for cls, level in levels.items():
    for i in range(PER_CLASS):
      _picture(rng, str(tmp / "root" / cls / f"{i}.jpg"), level)
  for path, shows in PLANTED.items():
    _picture(rng, str(tmp / "root" / path), levels[shows])
  config = FolderConfig(name="levels", root=str(tmp / "root"), encoding="raw", image_size=16,
                        channels=1, balance="none", split_percent=(80, 10, 10))
  builder = image_folder.Builder(config=config, data_dir=str(tmp / "data"))
  builder.download_and_prepare()
  out = str(tmp / "run")
  experiment.run(experiment.RunConfig(
      shards=os.path.join(os.fspath(builder.data_dir), "image_folder-train.tfrecord*"), model="mlp", epochs=10, batch_size=8, seed=0, learning_rate=0.01,
      deterministic=True, augment="none", out=out, suspects=12))
  return out, builder


@pytest.mark.slow
def test_training_writes_suspects_with_the_planted_mislabelled_files_on_top(run):
  out, builder = run
  with open(os.path.join(out, suspects.FILE)) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == list(suspects.FIELDS) and len(rows) == 12
  losses = [float(r["loss"]) for r in rows]
  assert losses == sorted(losses, reverse=True)
  assert {r["split"] for r in rows} <= {"train", "validation"}
  # Planted files in train and validation (the test split is never listed).
  listed = {ex: s for s in ("train", "validation") for ex in _names(builder, s)}
  planted = [p for p in PLANTED if p in listed]
  top = {r["file_name"]: r for r in rows[:2 * len(PLANTED)]}
  found = [p for p in planted if p in top]
  # Measured: recall 6 of 6, the planted files are the top 6 (the model is sure of the rest).
  assert len(planted) >= 4
  assert {r["file_name"] for r in rows[:len(planted)]} == set(planted) == set(found)
  for p in found:
    assert top[p]["given_label"] == p.split("/")[0] and top[p]["predicted_label"] == PLANTED[p]
    assert float(top[p]["probability"]) > 0.5


@pytest.mark.slow
def test_show_suspects_draws_the_runs_list(run, tmp_path):
  out, _ = run
  result = CliRunner().invoke(show_script.main, ["--suspects", out, "--n", "6",
                                                 "--out", str(tmp_path)])
  assert result.exit_code == 0, result.output
  with Image.open(tmp_path / "suspects.png") as picture:
    assert picture.size[0] > 200 and picture.size[1] > 200
  result = CliRunner().invoke(show_script.main, ["--suspects", str(tmp_path / "nothing")])
  assert result.exit_code == 1 and result.output.startswith("Error: ")
  assert "suspects.csv" in result.output and len(result.output.strip().splitlines()) == 1


def _names(builder, split) -> list:
  import tensorflow_datasets as tfds

  if split not in builder.info.splits:
    return []
  return [ex["image/filename"].decode() for ex in tfds.as_numpy(builder.as_dataset(split=split))]


def test_find_keeps_the_highest_losses_first_and_ties_by_name():
  class Fixed:
    def predict_on_batch(self, images):
      return images  # one sigmoid unit: the "image" is p(class 1)

  import tensorflow as tf

  batches = [(tf.constant([[0.9], [0.2], [0.6]]), tf.constant([0, 1, 1]),
              tf.constant([b"a.jpg", b"b.jpg", b"c.jpg"])),
             (tf.constant([[0.8], [0.1]]), tf.constant([1, 0]), tf.constant([b"d.jpg", b"e.jpg"]))]
  rows = suspects.find(Fixed(), lambda split: batches, ["cat", "dog"], ["train"], top=3)
  # Losses: a -ln(0.1), b -ln(0.2), c -ln(0.6), d -ln(0.8), e -ln(0.9).
  assert [r["file_name"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg"]
  assert rows[0]["loss"] == pytest.approx(-np.log(0.1), abs=1e-5)
  assert (rows[0]["given_label"], rows[0]["predicted_label"]) == ("cat", "dog")
  assert rows[0]["probability"] == pytest.approx(0.9)
  with pytest.raises(ValueError, match="top must be at least 1"):
    suspects.find(Fixed(), lambda split: batches, ["cat", "dog"], top=0)


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_batches_with_file_names_name_each_example_as_its_record_does(tmp_path, encoding):
  import tensorflow_datasets as tfds

  from petpipe import pipeline

  rng = np.random.default_rng(2)
  for cls in ("a", "b"):
    for i in range(5):
      _picture(rng, str(tmp_path / "root" / cls / f"{i}.jpg"), 40 + 150 * (cls == "b"))
  config = FolderConfig(name=encoding, root=str(tmp_path / "root"), encoding=encoding,
                        image_size=16, channels=1, balance="none", split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=config, data_dir=str(tmp_path / "data"))
  builder.download_and_prepare()
  batches = pipeline.from_dataset_dir(
      os.fspath(builder.data_dir), "train",
      pipeline.PipelineConfig(image_size=16, channels=1, batch_size=4, file_names=True,
                              normalize="none"), training=False)
  seen = {}
  for images, labels, names in batches:
    assert images.shape[1:] == (16, 16, 1)
    for image, label, name in zip(images.numpy(), labels.numpy(), names.numpy()):
      seen[name.decode()] = (int(label), int(image.astype(np.int64).mean() > 115))
  records = {ex["image/filename"].decode(): int(ex["label"])
             for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
  assert {n: label for n, (label, _) in seen.items()} == records and len(records) == 10
  assert all(label == bright for label, bright in seen.values())  # the picture is the file's
