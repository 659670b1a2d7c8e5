"""`petpipe build`: tfds build's flags for this project's builders, and one `Error:` line for
every mistake a user types; `tfds build` ends with the same message as its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds
from click.testing import CliRunner

from petpipe import sample_data
from petpipe.builders.pet_images.pet_images_dataset_builder import Builder as PetImages
from petpipe.scripts import build as build_command

TFDS = os.path.join(os.path.dirname(sys.executable), "tfds")


@pytest.fixture(scope="module")
def pre_split_root(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp("given")
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for cls in ("a", "b"):
      os.makedirs(root / split / cls)
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(root / split / cls / "0.png")
  return str(root)


def _config(fields: dict) -> str:
  return json.dumps(fields)


def bad_configs(pre_split_root):
  return [
      (_config({"name": "x", "root": pre_split_root, "image_size": "64"}),
       "image_size must be an int or a [height, width] pair of ints. Received: image_size='64'"),
      (_config({"name": "x", "imagesize": 64}),
       "Unknown config field 'imagesize' (did you mean 'image_size'?). Valid fields: name, "),
      (_config({"image_size": 64}), "name is required: "),
      (_config({"name": "x"}), "root is required for image_folder"),
      (_config({"name": "x", "root": pre_split_root, "split_percent": [80, 10, 10]}),
       f"split_percent cannot be used with {pre_split_root}: its folders"),
      ("{bad json", "config is not valid JSON"),
  ]


def invoke(args):
  return CliRunner().invoke(build_command.main, [str(a) for a in args])


def _assert_one_error_line(result, fragment: str) -> str:
  assert result.exit_code == 1, result.output
  assert "Traceback" not in result.output
  errors = [line for line in result.output.splitlines() if line.startswith("Error")]
  assert len(errors) == 1, result.output
  assert fragment in errors[0], errors[0]
  return errors[0][len("Error: "):]


@pytest.mark.parametrize("case", range(6))
def test_a_bad_config_is_one_error_line_naming_the_field(case, pre_split_root, tmp_path):
  config, fragment = bad_configs(pre_split_root)[case]
  result = invoke(["image_folder", "--data_dir", tmp_path, "--config", config])
  _assert_one_error_line(result, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["flowers"], "petpipe build builds pet_images or image_folder"),
    (["pet_images/gray9"], "Unknown config 'gray9' of pet_images: one of original, gray100"),
    (["pet_images", "--config_idx", 7], "config_idx must be in 0..3"),
    (["pet_images/gray100", "--config", "rgb160"], "Give the config once"),
    (["pet_images", "--config", "gray100", "--manual_dir", "/nonexistent/pets"],
     "Manual directory /nonexistent/pets does not exist or is empty: Download "
     "kagglecatsanddogs_5340.zip"),
])
def test_a_bad_dataset_config_or_folder_is_one_error_line(args, fragment, tmp_path):
  _assert_one_error_line(invoke([*args, "--data_dir", tmp_path]), fragment)


@pytest.mark.slow
@pytest.mark.parametrize("case", [0, 1])
def test_tfds_build_ends_with_the_same_one_line_message(case, pre_split_root, tmp_path):
  config, fragment = bad_configs(pre_split_root)[case]
  ours = _assert_one_error_line(invoke(["image_folder", "--data_dir", tmp_path / "a",
                                        "--config", config]), fragment)
  result = subprocess.run([TFDS, "build", "image_folder", "--imports", "petpipe.builders",
                           "--data_dir", str(tmp_path / "b"), "--config", config],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == f"ValueError: {ours}"


@pytest.mark.slow
def test_petpipe_build_writes_the_shards_the_builder_writes(tmp_path):
  pets = str(tmp_path / "pets")
  sample_data.write_sample_folder(pets, per_class=8, min_size=24, max_size=40, seed=3,
                                  anomalies=False)
  result = invoke(["pet_images/gray100", "--manual-dir", pets, "--data-dir", tmp_path / "cli"])
  assert result.exit_code == 0, result.output
  built = tmp_path / "cli" / "pet_images" / "gray100" / "1.0.0"
  assert f"Built: {built}" in result.output
  reference = PetImages(config="gray100", data_dir=str(tmp_path / "lib"))
  reference.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=pets))
  shards = sorted(n for n in os.listdir(built) if ".tfrecord" in n)
  assert shards == sorted(n for n in os.listdir(reference.data_dir) if ".tfrecord" in n)
  for name in shards:
    with open(built / name, "rb") as a, open(os.path.join(reference.data_dir, name), "rb") as b:
      assert a.read() == b.read(), name
