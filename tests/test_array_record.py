"""Datasets built with `--file_format array_record` read like TFRecord ones (our readers,
training splits, verify), shuffle globally by index, and serve Grain and random-access
(PyTorch-style) loops."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from petpipe import pipeline
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.pipeline import records
from petpipe.pipeline import schema
from petpipe.pipeline import verify

SIZE = 16
PER_CLASS = 12
EVAL = pipeline.PipelineConfig(image_size=SIZE, channels=1, batch_size=5, shuffle_buffer=0,
                               deterministic=True, normalize="none")


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
  """The same folder built as TFRecord and as ArrayRecord: format -> dataset folder."""
  base = tmp_path_factory.mktemp("array_record")
  rng = np.random.default_rng(0)
  for label in ("cat", "dog"):
    (base / "pets" / label).mkdir(parents=True)
    for i in range(PER_CLASS):
      pixels = rng.integers(0, 255, (SIZE + i, SIZE + 2 * i, 3), np.uint8)
      Image.fromarray(pixels).save(base / "pets" / label / f"{i}.png")
  folders = {}
  for file_format in ("tfrecord", "array_record"):
    config = FolderConfig(name="pets", root=str(base / "pets"), encoding="raw",
                          image_size=SIZE, channels=1, balance="none",
                          split_percent=(70, 15, 15))
    builder = image_folder.Builder(config=config, data_dir=str(base / file_format),
                                   file_format=file_format)
    builder.download_and_prepare()
    folders[file_format] = os.fspath(builder.data_dir)
  return folders


def _all_records(folder: str) -> collections.Counter:
  files = sorted(tf.io.gfile.glob(os.path.join(folder, "image_folder-*")))
  spec = schema.parse_spec()
  found = collections.Counter()
  for batch in records.in_order(files, 7):
    parsed = tf.io.parse_example(batch, spec)
    for name, label, image in zip(parsed[schema.FILENAME].numpy(), parsed[schema.LABEL].numpy(),
                                  parsed[schema.IMAGE].numpy()):
      found[(name, int(label), image)] += 1
  return found


def _pixels_and_labels(dataset) -> collections.Counter:
  return collections.Counter((image.tobytes(), int(label)) for images, labels in
                             dataset.as_numpy_iterator() for image, label in zip(images, labels))


def test_array_record_build_holds_the_same_records_as_tfrecord(builds):
  assert any(".array_record-" in f for f in os.listdir(builds["array_record"]))
  tfrecord, array_record = _all_records(builds["tfrecord"]), _all_records(builds["array_record"])
  assert sum(tfrecord.values()) == 2 * PER_CLASS
  assert tfrecord == array_record


@pytest.mark.parametrize("split", ["train", "validation", "test", "train[:50%]"])
def test_from_dataset_dir_reads_array_record_like_tfrecord(builds, split):
  expected = _pixels_and_labels(pipeline.from_dataset_dir(builds["tfrecord"], split, EVAL, False))
  got = pipeline.from_dataset_dir(builds["array_record"], split, EVAL, training=False)
  assert _pixels_and_labels(got) == expected and sum(expected.values()) > 0


def test_array_record_training_order_is_a_global_shuffle(builds):
  config = pipeline.PipelineConfig(image_size=SIZE, channels=1, batch_size=4, shuffle_buffer=2,
                                   seed=3, deterministic=True, normalize="none")
  in_order = [image.tobytes() for images, _ in pipeline.from_dataset_dir(
      builds["array_record"], "train", EVAL, training=False).as_numpy_iterator()
              for image in images]
  dataset = pipeline.from_dataset_dir(builds["array_record"], "train", config)
  epochs = [[image.tobytes() for images, _ in dataset.as_numpy_iterator() for image in images]
            for _ in range(2)]
  assert sorted(epochs[0]) == sorted(in_order) and epochs[0] != epochs[1]
  # A 2-record buffer moves a record at most a few places; an index shuffle anywhere.
  moved = max(abs(in_order.index(image) - position) for position, image in enumerate(epochs[0]))
  assert moved > 2 * config.shuffle_buffer + config.batch_size


def test_training_splits_and_verify_accept_array_record(builds):
  tfrecord = pipeline.load_splits(pipeline.DataSource(dataset_dir=builds["tfrecord"]), seed=0)
  array_record = pipeline.load_splits(pipeline.DataSource(dataset_dir=builds["array_record"]),
                                      seed=0)
  assert array_record.counts == tfrecord.counts
  images, labels = next(iter(array_record.train(1)))
  assert images.dtype == tf.uint8 and images.shape[1:] == (SIZE, SIZE, 1)
  reports = verify.verify(builds["array_record"])
  assert sum(r.records for r in reports) == 2 * PER_CLASS


def test_verify_names_a_damaged_array_record_file(builds, tmp_path):
  import shutil

  copy = str(tmp_path / "copy")
  shutil.copytree(builds["array_record"], copy)
  (victim,) = [f for f in os.listdir(copy) if "-train.array_record" in f]
  path = os.path.join(copy, victim)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(verify.CorruptDatasetError, match=victim):
    verify.check_sizes(copy)


def test_random_access_loop_reads_every_example_by_index(builds):
  # What a PyTorch-style Dataset/Sampler pair does: len() and integer indexing.
  source = tfds.builder_from_directory(builds["array_record"]).as_data_source("train")
  order = np.random.default_rng(0).permutation(len(source))
  names = [source[int(i)][schema.FILENAME] for i in order]
  assert len(set(names)) == len(source) == sum(
      pipeline.load_splits(pipeline.DataSource(dataset_dir=builds["array_record"])).counts["train"])


def test_grain_loader_reads_the_array_record_build(builds):
  import grain.python as grain

  source = tfds.builder_from_directory(builds["array_record"]).as_data_source("train")
  sampler = grain.IndexSampler(num_records=len(source), shuffle=True, seed=0, num_epochs=1,
                               shard_options=grain.NoSharding())
  loader = grain.DataLoader(data_source=source, sampler=sampler, worker_count=0)
  labels = [int(example[schema.LABEL]) for example in loader]
  assert len(labels) == len(source) and set(labels) <= {0, 1}
