"""Every reader states the batches' height, width and channels in `element_spec`, whatever the
storage (raw or encoded), file format (TFRecord or ArrayRecord), size asked for or
augmentation, so Keras can build a model from the dataset's spec alone."""

from __future__ import annotations

import os

import keras
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.pipeline import PipelineConfig, from_dataset_dir, from_shards, from_tfds, schema
from tests.shards_fixture import SIZE, TinyShards

FORMATS = ("tfrecord", "array_record")


class TinyPng(TinyShards, skip_registration=True):
  """The examples of `TinyShards` stored as PNG, decoded and resized per image when read."""

  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="png")]
  STORAGE = schema.ImageStorage("png", 1)


BUILDERS = {"raw": (TinyShards, "tiny_shards/raw16"), "png": (TinyPng, "tiny_png/png")}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> dict:
  """(storage, file format) -> a TFDS data dir holding that build."""
  dirs = {}
  for storage, (builder_class, _) in BUILDERS.items():
    for file_format in FORMATS:
      data_dir = str(tmp_path_factory.mktemp(f"{storage}_{file_format}"))
      builder_class(data_dir=data_dir, file_format=file_format).download_and_prepare()
      dirs[storage, file_format] = data_dir
  return dirs


def read(reader: str, storage: str, file_format: str, data_dirs: dict,
         config: PipelineConfig) -> tf.data.Dataset:
  """The training split of that build, through `reader`."""
  name, data_dir = BUILDERS[storage][1], data_dirs[storage, file_format]
  if reader == "from_tfds":
    return from_tfds(name, "train", data_dir, config)
  folder = os.path.join(data_dir, name, "1.0.0")
  if reader == "from_dataset_dir":
    return from_dataset_dir(folder, "train", config)
  return from_shards(os.path.join(folder, f"*-train.{file_format}*"), config)


@pytest.mark.parametrize("reader", ["from_tfds", "from_dataset_dir", "from_shards"])
@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("storage", ["raw", "png"])
@pytest.mark.parametrize("image_size,channels,augment", [
    ((SIZE, SIZE), 1, False),  # the stored size: raw records are only reshaped
    ((SIZE, SIZE), 1, True),  # augmentation used to drop the sides
    ((12, 20), 3, True),  # another size and channel count than stored
])
def test_every_reader_states_height_width_and_channels(
    data_dirs, reader, file_format, storage, image_size, channels, augment):
  config = PipelineConfig(image_size=image_size, channels=channels, batch_size=8,
                          augment=augment, seed=0)
  ds = read(reader, storage, file_format, data_dirs, config)
  assert ds.element_spec[0].shape.as_list() == [None, *image_size, channels]
  images, _ = next(iter(ds))
  assert images.shape == (8, *image_size, channels)


@pytest.mark.parametrize("storage", ["raw", "png"])
def test_a_keras_model_builds_from_the_element_spec_and_fits(data_dirs, storage):
  config = PipelineConfig(image_size=(SIZE, SIZE), channels=1, batch_size=8, augment=True,
                          seed=0)
  ds = read("from_dataset_dir", storage, "tfrecord", data_dirs, config)
  inputs = keras.Input(shape=ds.element_spec[0].shape[1:])
  # Flatten + Dense needs every side known when the model is built.
  model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
  assert model.input_shape == (None, SIZE, SIZE, 1)
  model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
  assert len(history.history["loss"]) == 1
