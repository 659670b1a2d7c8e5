"""Every build passes a quality gate: enough classes, few enough unusable files, class names
that differ in more than case, and a warning for a class the given train split lacks."""

from __future__ import annotations

import os
import zipfile

import pytest

from tests.test_build_safety import build, config, jpeg

# The Kaggle download's layout: one folder of classes beside a licence and a readme.
KAGGLE_EXTRAS = {"MSR-LA - 3467.docx": b"licence", "readme[1].txt": b"read me"}


def _write(root, files: dict) -> None:
  for rel, data in files.items():
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)


def _pets(prefix: str = "", count: int = 3) -> dict:
  return {f"{prefix}{cls}/{i}.jpg": jpeg(10 * k + i) for k, cls in enumerate(("Cat", "Dog"))
          for i in range(count)}


def test_a_root_holding_one_folder_beside_other_files_fails_saying_which_root_to_use(tmp_path):
  root = tmp_path / "download"
  _write(root, {**_pets("PetImages/"), **KAGGLE_EXTRAS})
  with pytest.raises(ValueError) as error:
    build(config(root), tmp_path / "out")
  message = str(error.value)
  assert "found 1 class" in message and "['PetImages']" in message and "min_classes is 2" in message
  assert (f"holds PetImages/ and 2 other files: use {root / 'PetImages'} as root, or the "
          f"pet_images builder (--manual_dir {root})") in message
  assert not (tmp_path / "out" / "image_folder" / "tiny" / "1.0.0").exists()


def test_the_kaggle_zip_as_root_fails_naming_its_one_folder_and_the_pet_images_builder(tmp_path):
  archive = tmp_path / "kagglecatsanddogs_5340.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for name, data in {**_pets("PetImages/"), **KAGGLE_EXTRAS}.items():
      zf.writestr(name, data)
  with pytest.raises(ValueError, match=r"found 1 class in .*kagglecatsanddogs_5340\.zip: "
                     r"\['PetImages'\]; min_classes is 2\. .* holds PetImages/ and 2 other files: "
                     r"extract that folder and use it as root, or the pet_images builder"):
    build(config(str(archive)), tmp_path / "out")


def test_min_classes_counts_the_classes_left_with_usable_images(tmp_path):
  _write(tmp_path / "root", {**_pets(count=2), "Dog/x.jpg": jpeg(9)})
  _write(tmp_path / "root", {f"Bird/{i}.jpg": b"not an image" for i in range(2)})
  with pytest.raises(ValueError, match=r"found 2 classes with usable images .*\['Cat', 'Dog'\]; "
                     "min_classes is 3"):
    build(config(tmp_path / "root", allow_empty_classes=True, min_classes=3,
                 max_skipped_fraction=1.0), tmp_path / "out")
  # One class is allowed when asked for.
  _write(tmp_path / "one", _pets(count=2))
  builder = build(config(tmp_path / "one", class_names=["Cat"], min_classes=1), tmp_path / "out1")
  assert builder.info.features["label"].names == ["Cat"]


def test_a_build_with_mostly_unusable_files_fails_naming_the_top_reasons(tmp_path):
  root = tmp_path / "root"
  bad = {f"{cls}/{kind}{i}.jpg": data for cls in ("Cat", "Dog") for i in range(3)
         for kind, data in (("empty", b""), ("html", b"<html>not a picture</html>"))}
  _write(root, {**_pets(count=2), **bad})
  with pytest.raises(ValueError) as error:
    build(config(root), tmp_path / "out")
  message = str(error.value)
  assert message.startswith("12 of 16 image files (75%) are unusable, more than "
                            "max_skipped_fraction 0.5: ")
  assert "empty 6 (e.g. Cat/empty0.jpg)" in message and "(e.g. Cat/html0.jpg)" in message
  # A higher limit builds the 4 good files.
  builder = build(config(root, max_skipped_fraction=0.8), tmp_path / "out2")
  assert builder.info.splits["train"].num_examples == 4


def test_class_names_differing_only_in_case_across_given_splits_are_an_error_naming_both(tmp_path):
  root = tmp_path / "given"
  _write(root, {**_pets("train/", 2), **{f"test/Cat/{i}.jpg": jpeg(50 + i) for i in range(2)}})
  os.rename(root / "train" / "Cat", root / "train" / "cat")
  with pytest.raises(ValueError, match=r"Class names differ only in case: 'Cat' \(test/Cat\) and "
                     r"'cat' \(train/cat\)"):
    build(config(root, split_percent=None), tmp_path / "out")


def test_a_class_the_given_train_split_lacks_is_warned_about(tmp_path, capsys):
  root = tmp_path / "given"
  _write(root, {**_pets("train/", 2), **_pets("test/", 2),
                **{f"test/Bird/{i}.jpg": jpeg(70 + i) for i in range(2)}})
  build(config(root, split_percent=None), tmp_path / "out")
  assert ("Warning: class 'Bird' has no files in the train split (train/), only in test/: a "
          "model cannot learn it.") in capsys.readouterr().out
