"""Pre-split roots (`root/train/<class>`, `root/val/<class>`, `root/test/<class>`): each
folder is built as its split, never re-split."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from petpipe import pipeline
from petpipe.builders import folder_builder
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from tests.test_cloud_paths import to_ram

# split folder -> class -> number of images; "c" only in train.
COUNTS = {"train": {"a": 4, "b": 3, "c": 2}, "val": {"a": 2, "b": 1}, "test": {"a": 1, "b": 2}}
SPLIT = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
  """The split folders above, one exact copy of train/a/0.png as test/a/copy.png, a file
  directly in train/, and a `__MACOSX` folder."""
  top = str(tmp_path_factory.mktemp("presplit") / "root")
  rng = np.random.default_rng(0)
  for folder, classes in COUNTS.items():
    for cls, n in classes.items():
      os.makedirs(os.path.join(top, folder, cls))
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), np.uint8)).save(
            os.path.join(top, folder, cls, f"{i}.png"))
  shutil.copy(os.path.join(top, "train", "a", "0.png"), os.path.join(top, "test", "a", "copy.png"))
  shutil.copy(os.path.join(top, "train", "b", "0.png"), os.path.join(top, "train", "loose.png"))
  os.makedirs(os.path.join(top, "__MACOSX", "train"))
  return top


def _build(root, data_dir, name, **kwargs):
  builder = image_folder.Builder(config=FolderConfig(name=name, root=root, **kwargs), data_dir=str(data_dir))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    builder.download_and_prepare()
  builder.printed = out.getvalue()
  return builder


def _files(builder) -> dict:
  names = builder.info.features["label"].names
  return {split: sorted((e["image/filename"].decode(), names[int(e["label"])])
                        for e in tfds.as_numpy(builder.as_dataset(split=split)))
          for split in builder.info.splits}


@pytest.fixture(scope="module")
def unbalanced(root, tmp_path_factory):
  return _build(root, tmp_path_factory.mktemp("out"), "given", balance="none")


def test_each_split_folder_is_built_as_its_split_with_the_union_of_classes(unbalanced):
  assert unbalanced.info.features["label"].names == ["a", "b", "c"]
  expected = {SPLIT[f]: sorted((f"{f}/{c}/{i}.png", c) for c, n in classes.items() for i in range(n))
              for f, classes in COUNTS.items()}
  expected["test"] = sorted(expected["test"] + [("test/a/copy.png", "a")])
  assert _files(unbalanced) == expected


def test_the_build_prints_that_it_used_the_given_splits(unbalanced):
  assert "Using the splits given by the folders of" in unbalanced.printed
  assert "train=train/, validation=val/, test=test/ (no re-splitting)" in unbalanced.printed
  card = unbalanced.info.metadata["card"]
  assert card["splits_given"] == {"train": "train/", "validation": "val/", "test": "test/"}
  assert card["storage"]["split_percent"] is None


def test_duplicates_across_given_splits_are_reported_not_moved(unbalanced):
  files = _files(unbalanced)
  assert ("train/a/0.png", "a") in files["train"] and ("test/a/copy.png", "a") in files["test"]
  assert unbalanced.info.metadata["card"]["duplicates"]["groups_across_given_splits"] == 1
  assert "duplicate groups across the given splits (kept where they are): 1" in unbalanced.printed


def test_files_directly_in_a_split_folder_and_junk_folders_are_listed_as_ignored(unbalanced):
  rows = {r["path"]: r for r in folder_builder.read_manifest(unbalanced.data_dir)}
  assert rows["train/loose.png"]["status"] == "ignored"
  assert rows["train/loose.png"]["reason"] == "not in a class folder of its split folder"
  assert unbalanced.info.metadata["card"]["ignored_folders"] == ["__MACOSX"]


def test_balancing_applies_per_split_among_the_classes_each_split_has(root, tmp_path):
  builder = _build(root, tmp_path, "balanced", balance="undersample")
  after = builder.info.metadata["card"]["counts_after_balancing"]
  # Validation and test have no "c": cutting them to 0 would empty them.
  assert after == {"train": {"a": 2, "b": 2, "c": 2}, "validation": {"a": 1, "b": 1, "c": 0},
                   "test": {"a": 2, "b": 2, "c": 0}}


def test_drop_keeps_one_copy_of_a_group_across_given_splits(root, tmp_path):
  builder = _build(root, tmp_path, "drop", balance="none", duplicates="drop")
  rows = {r["path"]: r for r in folder_builder.read_manifest(builder.data_dir)}
  assert rows["train/a/0.png"]["reason"] == "duplicate: same bytes as test/a/copy.png"
  assert ("test/a/copy.png", "a") in _files(builder)["test"]


def test_class_names_choose_the_classes_of_every_split(root, tmp_path):
  builder = _build(root, tmp_path, "two", balance="none", class_names=["b", "a"])
  assert builder.info.features["label"].names == ["b", "a"]
  assert {c for files in _files(builder).values() for _, c in files} == {"a", "b"}


def test_split_percent_with_a_pre_split_root_is_an_error_saying_so(root, tmp_path):
  with pytest.raises(ValueError) as info:
    _build(root, tmp_path, "refused", split_percent=[80, 10, 10])
  message = str(info.value)
  assert "\n" not in message
  assert "split_percent cannot be used" in message and "are the splits" in message


def test_val_and_validation_folders_together_is_an_error(tmp_path):
  for folder in ("train", "val", "validation"):
    os.makedirs(tmp_path / "root" / folder / "a")
  with pytest.raises(ValueError, match="Folders 'val' and 'validation' both hold the validation split"):
    _build(str(tmp_path / "root"), tmp_path / "out", "twice")


def test_split_folder_names_match_in_any_case(tmp_path):
  rng = np.random.default_rng(1)
  for folder in ("Train", "Test"):
    os.makedirs(tmp_path / "root" / folder / "a")
    for i in range(2):
      Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(tmp_path / "root" / folder / "a" / f"{i}.png")
  builder = _build(str(tmp_path / "root"), tmp_path / "out", "cased", balance="none",
                  min_classes=1)  # one class is enough to see the splits
  assert sorted(builder.info.splits) == ["test", "train"]
  assert builder.info.metadata["card"]["splits_given"] == {"train": "Train/", "test": "Test/"}


def test_a_root_with_any_other_folder_is_read_as_class_folders(root, tmp_path):
  mixed = tmp_path / "mixed"
  shutil.copytree(os.path.join(root, "train"), mixed / "train")
  shutil.copytree(os.path.join(root, "val", "a"), mixed / "extra")
  builder = _build(str(mixed), tmp_path / "out", "mixed", balance="none", split_percent=[100, 0, 0])
  assert builder.info.features["label"].names == ["extra", "train"]


def test_a_pre_split_zip_gives_the_same_examples_as_the_folder(root, unbalanced, tmp_path):
  archive = tmp_path / "root.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for folder, _, names in os.walk(root):
      for name in names:
        full = os.path.join(folder, name)
        zf.write(full, "data/" + os.path.relpath(full, root))
  zipped = _build(str(archive), tmp_path / "out", "zipped", balance="none")
  assert zipped.info.features["label"].names == ["a", "b", "c"]
  assert _files(zipped) == _files(unbalanced)
  assert "(no re-splitting)" in zipped.printed


def test_split_percent_defaults_to_80_10_10_for_class_folders(root, tmp_path):
  config = FolderConfig(name="x", root=os.path.join(root, "train"))
  assert config.split_percent is None and config.percentages == (80.0, 10.0, 10.0)
  builder = _build(os.path.join(root, "train"), tmp_path, "plain", balance="none")
  assert builder.info.metadata["card"]["storage"]["split_percent"] == [80.0, 10.0, 10.0]


@pytest.mark.slow
def test_a_pre_split_root_on_beam_gives_the_local_build(root, tmp_path):
  beam = pytest.importorskip("apache_beam")
  local = _build(root, tmp_path / "local", "beam_check")
  options = beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])
  on_beam = image_folder.Builder(config=FolderConfig(name="beam_check", root=root), data_dir=str(tmp_path / "beam"))
  on_beam.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
  assert _files(on_beam) == _files(local)
  assert on_beam.info.metadata["card"]["counts_after_balancing"] == local.info.metadata["card"][
      "counts_after_balancing"]


def test_pre_split_false_reads_split_folders_as_classes(root, tmp_path):
  builder = _build(root, tmp_path, "as_classes", pre_split=False, balance="none", split_percent=[100, 0, 0])
  assert builder.info.features["label"].names == ["test", "train", "val"]
  assert "Using the splits given" not in builder.printed


def test_pre_split_true_without_split_folders_is_an_error_naming_them(root, tmp_path):
  with pytest.raises(ValueError, match=r"pre_split is true but .* Received folders: \['a', 'b', 'c'\]"):
    _build(os.path.join(root, "train"), tmp_path, "not_split", pre_split=True)


def test_the_folder_loaders_cache_keeps_keras_classes_for_split_named_folders(root, tmp_path):
  folder = tmp_path / "keras"
  shutil.copytree(root, folder, ignore=shutil.ignore_patterns("__MACOSX"))
  ds = pipeline.image_dataset_from_directory(str(folder), image_size=(16, 16), cache_dir=str(tmp_path / "cache"),
                                             verbose=False)
  assert ds.class_names == ["test", "train", "val"]
  # + test/a/copy.png and train/loose.png, which a class folder "train" holds.
  assert len(ds.file_paths) == sum(sum(c.values()) for c in COUNTS.values()) + 2


def test_json_config_takes_labels_and_pre_split_and_names_wrong_types():
  config = image_folder.Builder.builder_config_cls(
      **json.loads('{"name": "x", "root": "/data", "labels": "metadata.jsonl", "pre_split": false}'))
  assert config.labels == "metadata.jsonl" and config.pre_split is False and config.split_percent is None
  with pytest.raises(ValueError, match="pre_split must be true, false or null. Received: pre_split='no'"):
    image_folder.Builder.builder_config_cls(name="x", root="/data", pre_split="no")


def test_a_pre_split_root_on_ram_gives_the_local_build(root, unbalanced, tmp_path):
  remote = _build(to_ram(root), tmp_path, "ram_given_splits", balance="none")
  assert _files(remote) == _files(unbalanced)
