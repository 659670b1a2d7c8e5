"""`petpipe show` draws examples (label and file name) of every storage, and the build card."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image
import tensorflow_datasets as tfds

from petpipe import show
from petpipe.builders import card
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.scripts import show as show_command
from tests.test_cloud_paths import fresh_ram_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp("show") / "pets"
  rng = np.random.default_rng(0)
  for label in ("cat", "dog"):
    (root / label).mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.integers(0, 255, (20 + 4 * i, 24, 3), np.uint8)).save(
          root / label / f"{label}{i}.jpg")
  (root / "dog" / "empty.jpg").write_bytes(b"")
  return str(root)


def _build(folder, data_dir, encoding) -> str:
  config = FolderConfig(name=f"show_{encoding}", root=folder, encoding=encoding,
                        image_size=16 if encoding == "raw" else None, balance="none",
                        split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=config, data_dir=str(data_dir))
  builder.download_and_prepare()
  return os.fspath(builder.data_dir)


@pytest.mark.parametrize("encoding", ["raw", "jpeg", "png"])
def test_show_draws_examples_of_every_storage_and_the_card(folder, tmp_path, encoding):
  dataset_dir = _build(folder, tmp_path / "data", encoding)
  grid, card = show.show(dataset_dir, str(tmp_path / "pictures"), n=4, columns=2)
  assert os.path.basename(grid) == f"image_folder_show_{encoding}_train.png"
  assert os.path.basename(card) == f"image_folder_show_{encoding}_card.png"
  for path in (grid, card):
    with Image.open(path) as picture:
      pixels = np.asarray(picture.convert("L"))
    # Drawn, not blank: the figure holds more than its background.
    assert pixels.std() > 5, path


def test_card_records_a_histogram_of_longest_sides_and_show_draws_it(folder, tmp_path):
  dataset_dir = _build(folder, tmp_path / "data", "jpeg")
  info = tfds.builder_from_directory(dataset_dir).info
  histogram = info.metadata["card"]["longest_side_histogram"]
  # The fixture's usable images are 20x24, 24x24 and 28x24 (the empty file is skipped).
  assert sum(histogram["counts"]) == 6
  assert card.histogram_bins(histogram) == {"24-31": 6}
  _, path = show.show(dataset_dir, str(tmp_path / "pictures"), n=2)
  with Image.open(path) as picture:
    # Four panels of 5 inches at 100 dpi: counts, skip reasons, sizes and the histogram.
    assert picture.size[0] == 4 * 500


def test_histogram_bins_count_each_side_in_its_bin_and_trim_empty_ends():
  histogram = card.size_histogram([15, 16, 23, 24, 100, 9000])
  assert histogram["counts"][:3] == [1, 2, 1] and histogram["counts"][-1] == 1
  assert card.histogram_bins(card.size_histogram([16, 40, 47])) == {"16-23": 1, "24-31": 0, "32-47": 2}
  assert card.histogram_bins(card.size_histogram([])) == {}


def test_show_of_an_unknown_split_or_folder_is_a_one_line_error(folder, tmp_path):
  dataset_dir = _build(folder, tmp_path / "data", "raw")
  with pytest.raises(ValueError, match="Received: split='test'"):
    show.show(dataset_dir, str(tmp_path), split="test")
  result = CliRunner().invoke(show_command.main, [str(tmp_path / "nowhere")])
  assert result.exit_code == 1
  assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1
  assert "is not a built dataset folder" in result.output


def test_show_writes_its_pictures_to_a_ram_folder(folder, tmp_path):
  dataset_dir = _build(folder, tmp_path / "data", "raw")
  out = f"{fresh_ram_folder()}/pictures"
  grid, card_path = show.show(dataset_dir, out, n=2)
  for path in (grid, card_path):
    assert path.startswith(out)
    with tf.io.gfile.GFile(path, "rb") as f, Image.open(io.BytesIO(f.read())) as picture:
      assert picture.format == "PNG"


def test_tfds_show_examples_refuses_a_raw_config_which_petpipe_show_draws(folder, tmp_path):
  # docs/reading.md: TFDS's limit, and what to use instead.
  import matplotlib

  matplotlib.use("Agg")
  data_dir = _build(folder, tmp_path / "data", "raw")
  builder = tfds.builder_from_directory(data_dir)
  with pytest.raises(ValueError, match="Visualisation not supported"):
    tfds.show_examples(builder.as_dataset(split="train"), builder.info)
  grid, _ = show.show(data_dir, str(tmp_path / "pictures"))
  assert os.path.getsize(grid) > 0
