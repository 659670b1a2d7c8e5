"""Session fixtures: tiny shard folders, a tiny TFDS dataset, tiny image folders (good and bad)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from petpipe.pipeline import schema
from tests.shards_fixture import (
    BAD_FILES, SIZE, TinyShards, jpeg_bytes, write_image_folder, write_shards,
)


@pytest.fixture(scope="session")
def raw_gray_dir(tmp_path_factory) -> str:
  """A dataset folder without dataset_info.json: raw 16x16x1 examples in 4 shards."""
  folder = str(tmp_path_factory.mktemp("raw_gray"))
  write_shards(folder, schema.ImageStorage("raw", 1, (SIZE, SIZE)))
  return folder


@pytest.fixture(scope="session")
def raw_rgb_dir(tmp_path_factory) -> str:
  folder = str(tmp_path_factory.mktemp("raw_rgb"))
  write_shards(folder, schema.ImageStorage("raw", 3, (SIZE, SIZE)))
  return folder


@pytest.fixture(scope="session")
def png_dir(tmp_path_factory) -> str:
  """PNG examples of varying sizes (lossless, so pixel values survive)."""
  folder = str(tmp_path_factory.mktemp("png"))
  write_shards(folder, schema.ImageStorage("png", 1))
  return folder


@pytest.fixture(scope="session")
def jpeg_dir(tmp_path_factory) -> str:
  folder = str(tmp_path_factory.mktemp("jpeg"))
  write_shards(folder, schema.ImageStorage("jpeg", 3))
  return folder


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory) -> str:
  """A TFDS data dir holding `tiny_shards/raw16/1.0.0`, train in 3 shards."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = TinyShards(data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
  return data_dir


@pytest.fixture(scope="session")
def tfds_dataset_dir(tfds_data_dir) -> str:
  return os.path.join(tfds_data_dir, "tiny_shards", "raw16", "1.0.0")


@pytest.fixture(scope="session")
def clean_folder(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("clean_folder"))
  write_image_folder(root)
  return root


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory, clean_folder) -> str:
  """The clean folder plus an empty, a foreign and a cut-off file."""
  root = str(tmp_path_factory.mktemp("bad_folder"))
  shutil.rmtree(root)
  shutil.copytree(clean_folder, root)
  good = jpeg_bytes(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8))
  for name, data in BAD_FILES.items():
    with open(os.path.join(root, name), "wb") as f:
      f.write(good[:len(good) // 2] if data is None else data)
  return root
