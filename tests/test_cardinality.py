"""Every reader states its exact batch count, so `model.fit` shows real progress and never
runs out of data; skipping batches (resuming mid-epoch) drops serialized records only."""

from __future__ import annotations

import io
import math
import os
import warnings
from contextlib import redirect_stdout

import keras
import numpy as np
import pytest
import tensorflow as tf

from petpipe import pipeline
from petpipe.pipeline import PipelineConfig
from tests.shards_fixture import BAD_FILES, CLASS_NAMES, NUM_EXAMPLES

BATCH = 6


def _config(**kwargs) -> PipelineConfig:
  return PipelineConfig(image_size=16, channels=1, batch_size=BATCH, normalize="none", seed=3,
                        deterministic=True, **kwargs)


def _batches(dataset) -> int:
  return sum(1 for _ in dataset)


def test_from_dataset_dir_states_the_batch_count_of_a_split_and_a_slice(tfds_dataset_dir):
  train = pipeline.from_dataset_dir(tfds_dataset_dir, "train", _config())
  half = pipeline.from_dataset_dir(tfds_dataset_dir, "train[:50%]+test", _config(),
                                   training=False)
  assert int(train.cardinality()) == math.ceil(NUM_EXAMPLES / BATCH) == _batches(train)
  assert int(half.cardinality()) == math.ceil((NUM_EXAMPLES // 2 + 10) / BATCH) == \
      _batches(half)


def test_from_tfds_and_drop_remainder_state_the_batch_count(tfds_data_dir):
  dataset = pipeline.from_tfds("tiny_shards/raw16", "train", tfds_data_dir,
                               _config(drop_remainder=True))
  assert int(dataset.cardinality()) == NUM_EXAMPLES // BATCH == _batches(dataset)


def test_from_shards_without_metadata_counts_the_records(raw_gray_dir, jpeg_dir):
  raw = pipeline.from_shards(os.path.join(raw_gray_dir, "*.tfrecord*"), _config())
  jpeg = pipeline.from_shards(os.path.join(jpeg_dir, "*.tfrecord*"), _config())
  for dataset in (raw, jpeg):
    assert int(dataset.cardinality()) == math.ceil(NUM_EXAMPLES / BATCH) == _batches(dataset)


def test_repeated_data_is_infinite_not_counted(raw_gray_dir):
  dataset = pipeline.from_shards(os.path.join(raw_gray_dir, "*.tfrecord*"),
                                 _config(repeat=True))
  assert int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY


def test_folder_loader_states_the_batch_count_with_bad_files_skipped(bad_folder):
  dataset = pipeline.image_dataset_from_directory(bad_folder, batch_size=5, image_size=(16, 16),
                                                  seed=1)
  good = len(dataset.file_paths)
  assert len(dataset.skipped_files) == len(BAD_FILES)
  assert int(dataset.cardinality()) == math.ceil(good / 5) == _batches(dataset)


def test_skipped_batches_are_the_start_of_the_same_epoch(jpeg_dir):
  files = os.path.join(jpeg_dir, "*.tfrecord*")
  whole = [labels for _, labels in pipeline.from_shards(files, _config()).as_numpy_iterator()]
  rest = pipeline.from_shards(files, _config(skip_batches=3))
  assert int(rest.cardinality()) == len(whole) - 3
  for expected, (_, labels) in zip(whole[3:], rest.as_numpy_iterator(), strict=True):
    np.testing.assert_array_equal(expected, labels)


@pytest.mark.slow
def test_fit_on_a_dataset_dir_shows_the_real_steps_and_never_runs_out(tfds_dataset_dir):
  train = pipeline.from_dataset_dir(tfds_dataset_dir, "train", _config())
  steps = math.ceil(NUM_EXAMPLES / BATCH)
  model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Flatten(), keras.layers.Dense(len(CLASS_NAMES))])
  model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  shown = io.StringIO()
  with warnings.catch_warnings(record=True) as caught, redirect_stdout(shown):
    warnings.simplefilter("always")
    model.fit(train, epochs=2, verbose=1)
  assert not [w for w in caught if "ran out of data" in str(w.message)]
  assert f"{steps}/{steps}" in shown.getvalue() and "Unknown" not in shown.getvalue()
