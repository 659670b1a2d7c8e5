"""Readers: shards by glob or list, built dataset folders, TFDS names; the schema round trip."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.pipeline import (
    PipelineConfig, dataset_info, from_dataset_dir, from_shards, from_tfds, schema,
)
from petpipe.pipeline.input_pipeline import read_filenames
from petpipe.pipeline.reading import split_shards
from tests.shards_fixture import CLASS_NAMES, NUM_EXAMPLES, SIZE, write_shards

EVAL = PipelineConfig(image_size=SIZE, batch_size=8, normalize="none", deterministic=True)


def example_ids(dataset: tf.data.Dataset) -> list[int]:
  return [int(image[0, 0, 0]) for images, _ in dataset for image in images.numpy()]


def test_schema_round_trip_writer_to_reader(tmp_path):
  storage = schema.ImageStorage("raw", 3, (4, 6))
  folder = str(tmp_path)
  feats = schema.features(storage, ["a", "b", "c"])
  feats.save_config(folder)
  rng = np.random.default_rng(0)
  written = [rng.integers(0, 256, (4, 6, 3), np.uint8) for _ in range(5)]
  with tf.io.TFRecordWriter(os.path.join(folder, "x-train.tfrecord-00000-of-00001")) as writer:
    for i, image in enumerate(written):
      writer.write(feats.serialize_example(
          {schema.IMAGE: image, schema.LABEL: i % 3, schema.FILENAME: f"c/{i}.png"}))

  loaded = schema.load_features(folder)
  assert schema.storage_of(loaded) == storage
  assert schema.class_names_of(loaded) == ["a", "b", "c"]
  cfg = PipelineConfig(image_size=(4, 6), channels=3, batch_size=5, normalize="none",
                       label_mode="categorical")
  images, labels = next(iter(from_shards(os.path.join(folder, "*.tfrecord-*"), cfg,
                                         training=False)))
  np.testing.assert_array_equal(images.numpy(), np.stack(written))
  np.testing.assert_array_equal(labels.numpy(), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]])


def test_from_shards_reads_a_glob_and_a_list_alike(raw_gray_dir):
  pattern = os.path.join(raw_gray_dir, "*-train.tfrecord-*")
  by_glob = example_ids(from_shards(pattern, EVAL, training=False))
  by_list = example_ids(from_shards(sorted(glob.glob(pattern)), EVAL, training=False))
  assert by_glob == by_list
  assert sorted(by_glob) == list(range(NUM_EXAMPLES))


def test_from_shards_takes_num_classes_from_features_json(raw_gray_dir):
  cfg = PipelineConfig(image_size=SIZE, batch_size=4, label_mode="categorical")
  _, labels = next(iter(from_shards(os.path.join(raw_gray_dir, "*.tfrecord-*"), cfg)))
  assert labels.shape == (4, len(CLASS_NAMES))


def test_a_glob_matching_nothing_names_the_pattern(tmp_path):
  pattern = str(tmp_path / "nothing-*.tfrecord")
  with pytest.raises(FileNotFoundError, match="nothing-"):
    from_shards(pattern, EVAL)


def test_missing_listed_shards_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="gone.tfrecord"):
    from_shards([str(tmp_path / "gone.tfrecord")], EVAL)


def test_shards_without_features_json_need_storage(tmp_path):
  folder = str(tmp_path / "bare")
  write_shards(folder, schema.ImageStorage("raw", 1, (SIZE, SIZE)), with_features=False)
  with pytest.raises(FileNotFoundError, match="bare has no features.json"):
    from_shards(os.path.join(folder, "*.tfrecord-*"), EVAL)
  storage = schema.ImageStorage("raw", 1, (SIZE, SIZE))
  ids = example_ids(from_shards(os.path.join(folder, "*.tfrecord-*"), EVAL, storage=storage,
                                class_names=CLASS_NAMES))
  assert sorted(ids) == list(range(NUM_EXAMPLES))


def test_from_dataset_dir_reads_a_split_without_dataset_info(raw_gray_dir):
  ids = example_ids(from_dataset_dir(raw_gray_dir, "train", EVAL, training=False))
  assert sorted(ids) == list(range(NUM_EXAMPLES))


def test_slicing_needs_dataset_info_json(raw_gray_dir):
  with pytest.raises(ValueError, match="dataset_info.json"):
    from_dataset_dir(raw_gray_dir, "train[:10%]", EVAL)


def test_a_missing_split_names_the_pattern(raw_gray_dir):
  with pytest.raises(FileNotFoundError, match="-test.tfrecord"):
    from_dataset_dir(raw_gray_dir, "test", EVAL)


@pytest.mark.parametrize("split", ["train", "test", "train[:25%]", "train[10:]", "train[:5]+test"])
def test_split_slices_select_exactly_what_tfds_selects(tfds_dataset_dir, split):
  builder = tfds.builder_from_directory(tfds_dataset_dir)
  expected = sorted(int(ex[schema.IMAGE][0, 0, 0]) for ex in builder.as_dataset(split=split))
  ids = example_ids(from_dataset_dir(tfds_dataset_dir, split, EVAL, training=False))
  assert sorted(ids) == expected
  assert len(ids) == builder.info.splits[split].num_examples


def test_slices_span_several_shards(tfds_dataset_dir):
  shards = split_shards(tfds_dataset_dir, "train[5:35]")
  assert len(shards) > 1
  assert sum(s.take for s in shards) == 30


def test_from_tfds_reads_by_name(tfds_data_dir):
  cfg = PipelineConfig(image_size=SIZE, batch_size=4, seed=0, label_mode="binary")
  ds = from_tfds("tiny_shards/raw16", "test", tfds_data_dir, cfg)
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
  assert sum(len(x) for x in images) == 10
  assert labels[0].shape[1:] == (1,) and labels[0].dtype == np.float32


def test_from_tfds_of_an_unknown_name_names_it(tmp_path):
  with pytest.raises(Exception, match="not_built_here"):
    from_tfds("not_built_here/raw16", "train", str(tmp_path), EVAL)


def test_from_tfds_of_a_registered_dataset_not_built_says_so(tmp_path):
  import petpipe.builders.pet_images.pet_images_dataset_builder  # noqa: F401  (registers pet_images)

  with pytest.raises(FileNotFoundError, match="'pet_images/gray100' is not built in"):
    from_tfds("pet_images/gray100", "train", str(tmp_path), EVAL)


def test_dataset_info_of_a_tfds_folder(tfds_dataset_dir, tfds_data_dir):
  info = dataset_info(tfds_dataset_dir)
  assert info.class_names == CLASS_NAMES and info.num_classes == 2
  assert info.storage == schema.ImageStorage("raw", 1, (SIZE, SIZE))
  assert dict(info.num_examples) == {"train": NUM_EXAMPLES, "test": 10}
  assert dataset_info("tiny_shards/raw16", data_dir=tfds_data_dir) == info


def test_dataset_info_counts_records_without_dataset_info_json(raw_gray_dir, tmp_path):
  info = dataset_info(raw_gray_dir)
  assert dict(info.num_examples) == {"train": NUM_EXAMPLES}
  folder = str(tmp_path / "two_splits")
  shutil.copytree(raw_gray_dir, folder)
  write_shards(folder, schema.ImageStorage("raw", 1, (SIZE, SIZE)), num_examples=6,
               num_shards=2, split="validation")
  assert dict(dataset_info(folder).num_examples) == {"train": NUM_EXAMPLES, "validation": 6}
  files = glob.glob(os.path.join(folder, "*-validation.*"))
  assert dict(dataset_info(files).num_examples) == {"validation": 6}


def test_read_filenames_follows_the_unshuffled_order(raw_gray_dir):
  shards = sorted(glob.glob(os.path.join(raw_gray_dir, "*.tfrecord-*")))
  names = read_filenames(shards)
  ids = example_ids(from_shards(shards, EVAL, training=False))
  assert names == [f"{CLASS_NAMES[i % 2]}/{i}.png" for i in ids]


def test_a_truncated_shard_fails_before_streaming(tfds_dataset_dir, tmp_path):
  from petpipe.pipeline import verify

  copy = str(tmp_path / "copy")
  shutil.copytree(tfds_dataset_dir, copy)
  shard = sorted(glob.glob(os.path.join(copy, "*-train.tfrecord-*")))[0]
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 100)
  with pytest.raises(verify.CorruptDatasetError, match="split train"):
    from_dataset_dir(copy, "train[:50%]", EVAL)
  # Only the splits read are checked: the intact test split reads whole.
  assert sorted(example_ids(from_dataset_dir(copy, "test", EVAL))) == list(range(NUM_EXAMPLES, NUM_EXAMPLES + 10))
  # Unchecked, the cut shard opens and fails only when streaming reaches its end.
  unchecked = from_dataset_dir(copy, "train", EVAL, check_sizes=False)
  with pytest.raises(tf.errors.DataLossError):
    example_ids(unchecked)


def _two_datasets(tmp_path, second_storage, second_names):
  first, second = str(tmp_path / "a" / "1.0.0"), str(tmp_path / "b" / "1.0.0")
  storage = schema.ImageStorage("raw", 1, (SIZE, SIZE))
  write_shards(first, storage, num_examples=4, num_shards=1)
  write_shards(second, second_storage, num_examples=4, num_shards=1, with_features=False)
  schema.features(second_storage, second_names).save_config(second)
  return first, second


@pytest.mark.parametrize("second_storage, second_names, what", [
    (schema.ImageStorage("raw", 1, (SIZE, SIZE)), tuple(reversed(CLASS_NAMES)), "class names differ"),
    (schema.ImageStorage("raw", 3, (SIZE, SIZE)), CLASS_NAMES, "image storage differs"),
])
def test_shards_of_two_different_datasets_are_refused_naming_both(tmp_path, second_storage, second_names, what):
  first, second = _two_datasets(tmp_path, second_storage, second_names)
  with pytest.raises(ValueError, match=f"span two datasets \\({what}\\): {first} and {second}"):
    from_shards(str(tmp_path / "*" / "1.0.0" / "*.tfrecord*"), PipelineConfig(image_size=SIZE))


def test_shards_of_two_copies_of_one_dataset_are_read_together(tmp_path):
  first, second = _two_datasets(tmp_path, schema.ImageStorage("raw", 1, (SIZE, SIZE)), CLASS_NAMES)
  ds = from_shards(str(tmp_path / "*" / "1.0.0" / "*.tfrecord*"), PipelineConfig(image_size=SIZE, normalize="none"),
                   training=False)
  assert len(example_ids(ds)) == 8


def test_training_on_a_shards_glob_spanning_two_datasets_is_refused(tmp_path):
  from petpipe.pipeline import DataSource, load_splits
  _two_datasets(tmp_path, schema.ImageStorage("raw", 1, (SIZE, SIZE)), tuple(reversed(CLASS_NAMES)))
  with pytest.raises(ValueError, match="span two datasets \\(class names differ\\)"):
    load_splits(DataSource(shards=str(tmp_path / "*" / "1.0.0" / "*-train.tfrecord*")), seed=0)
