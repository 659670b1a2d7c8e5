"""`make_dataset` and `PipelineConfig`: order, shapes, determinism, bounded memory."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from petpipe.pipeline import PipelineConfig, ShardSlice, make_dataset, schema
from tests.shards_fixture import NUM_EXAMPLES, SIZE

RAW_GRAY = schema.ImageStorage("raw", 1, (SIZE, SIZE))
RAW_RGB = schema.ImageStorage("raw", 3, (SIZE, SIZE))


def shards(folder: str) -> list[str]:
  return sorted(glob.glob(os.path.join(folder, "*.tfrecord-*")))


def collect(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
  return np.concatenate(images), np.concatenate(labels)


def example_ids(dataset: tf.data.Dataset) -> list[int]:
  """Which examples came out, in order (every pixel of example i is i; normalize="none")."""
  images, _ = collect(dataset)
  return [int(image[0, 0, 0]) for image in images]


def config(**overrides) -> PipelineConfig:
  base = dict(image_size=SIZE, batch_size=8, shuffle_buffer=16, normalize="none")
  base.update(overrides)
  return PipelineConfig(**base)


# PipelineConfig ---------------------------------------------------------------------------


def test_config_accepts_an_int_image_size_as_a_square():
  assert PipelineConfig(image_size=64).image_size == (64, 64)
  assert PipelineConfig(image_size=[32, 48]).image_size == (32, 48)


def test_config_is_frozen():
  with pytest.raises(AttributeError):
    PipelineConfig().batch_size = 4


@pytest.mark.parametrize("field,value", [
    ("image_size", 0), ("image_size", (1, 2, 3)), ("channels", 2), ("batch_size", 0),
    ("shuffle_buffer", -1), ("seed", 1.5), ("normalize", "0-255"), ("label_mode", "sparse"),
    ("num_classes", 0), ("cache", ""), ("augment", "yes"), ("repeat", 1),
])
def test_config_rejects_bad_values_naming_them(field, value):
  with pytest.raises(ValueError, match=f"Received: {field}={value!r}".replace("(", r"\(")
                     .replace(")", r"\)").replace("[", r"\[").replace(".", r"\.")):
    PipelineConfig(**{field: value})


def test_config_binary_needs_two_classes():
  with pytest.raises(ValueError, match="num_classes=3"):
    PipelineConfig(label_mode="binary", num_classes=3)


# Shapes and dtypes -----------------------------------------------------------------------


@pytest.mark.parametrize("label_mode,label_dtype,label_shape", [
    ("int", tf.int32, (8,)), ("categorical", tf.float32, (8, 2)), ("binary", tf.float32, (8, 1)),
])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("normalize,image_dtype", [
    ("0-1", tf.float32), ("-1-1", tf.float32), ("none", tf.uint8),
])
def test_batches_have_the_configured_shapes_and_dtypes(
    raw_gray_dir, label_mode, label_dtype, label_shape, channels, normalize, image_dtype):
  cfg = config(channels=channels, label_mode=label_mode, normalize=normalize, image_size=12)
  ds = make_dataset(shards(raw_gray_dir), RAW_GRAY, cfg, num_classes=2)
  images, labels = next(iter(ds))
  assert images.shape == (8, 12, 12, channels) and images.dtype == image_dtype
  assert labels.shape == label_shape and labels.dtype == label_dtype
  assert ds.element_spec[0].shape.as_list() == [None, 12, 12, channels]
  if normalize == "0-1":
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
  if normalize == "-1-1":
    assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0


def test_raw_records_at_the_configured_size_are_reshaped_not_resized(raw_gray_dir):
  images, labels = collect(make_dataset(shards(raw_gray_dir), RAW_GRAY, config(), training=False))
  assert images.dtype == np.uint8
  ids = [int(image[0, 0, 0]) for image in images]
  for image, label, i in zip(images, labels, ids):
    np.testing.assert_array_equal(image, np.full((SIZE, SIZE, 1), i, np.uint8))
    assert label == i % 2
  assert sorted(ids) == list(range(NUM_EXAMPLES))


def test_rgb_records_become_grayscale_with_luma_weights(raw_rgb_dir):
  images, _ = collect(make_dataset(shards(raw_rgb_dir), RAW_RGB, config(), training=False))
  # Grey (i, i, i) stays i: the weights sum to 1.
  assert sorted(int(image[0, 0, 0]) for image in images) == list(range(NUM_EXAMPLES))


def test_png_records_are_decoded_and_resized_to_exact_pixels(png_dir):
  cfg = config(image_size=(8, 8), normalize="0-1")
  images, labels = collect(make_dataset(shards(png_dir), schema.ImageStorage("png", 1), cfg,
                                        training=False))
  assert images.shape == (NUM_EXAMPLES, 8, 8, 1)
  values = sorted(float(image[3, 5, 0]) for image in images)
  np.testing.assert_allclose(values, np.arange(NUM_EXAMPLES) / 255.0, atol=1e-6)
  assert all(np.all(image == image[0, 0, 0]) for image in images)
  assert sorted(labels.tolist()) == sorted(i % 2 for i in range(NUM_EXAMPLES))


def test_jpeg_records_are_decoded_to_the_configured_channels(jpeg_dir):
  cfg = config(image_size=(10, 12), channels=1, normalize="0-1")
  images, _ = collect(make_dataset(shards(jpeg_dir), schema.ImageStorage("jpeg", 3), cfg))
  assert images.shape == (NUM_EXAMPLES, 10, 12, 1) and images.dtype == np.float32
  # Constant JPEGs decode to (nearly) their value.
  np.testing.assert_allclose(sorted(images[:, 0, 0, 0] * 255), range(NUM_EXAMPLES), atol=2)


def test_augmentation_keeps_shapes_and_the_value_range(raw_gray_dir):
  cfg = config(augment=True, normalize="0-1", seed=3)
  images, _ = collect(make_dataset(shards(raw_gray_dir), RAW_GRAY, cfg))
  assert images.shape == (NUM_EXAMPLES, SIZE, SIZE, 1) and images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0


def test_augmentation_is_for_training_only(raw_gray_dir):
  cfg = config(augment=True, seed=3)
  images, _ = collect(make_dataset(shards(raw_gray_dir), RAW_GRAY, cfg, training=False))
  assert all(np.all(image == image[0, 0, 0]) for image in images)
  assert images.dtype == np.uint8


# Order and determinism -------------------------------------------------------------------


def test_every_example_is_seen_exactly_once_per_epoch(raw_gray_dir):
  ids = example_ids(make_dataset(shards(raw_gray_dir), RAW_GRAY, config(seed=None)))
  assert sorted(ids) == list(range(NUM_EXAMPLES))


def test_each_epoch_of_a_repeated_dataset_is_complete_before_the_next(raw_gray_dir):
  # Deterministic: otherwise parallel steps may deliver a batch of the next epoch early.
  ds = make_dataset(shards(raw_gray_dir), RAW_GRAY,
                    config(repeat=True, batch_size=10, seed=1, deterministic=True))
  ids = example_ids(ds.take(2 * NUM_EXAMPLES // 10))
  assert sorted(ids[:NUM_EXAMPLES]) == list(range(NUM_EXAMPLES))
  assert sorted(ids[NUM_EXAMPLES:]) == list(range(NUM_EXAMPLES))
  assert ids[:NUM_EXAMPLES] != ids[NUM_EXAMPLES:]  # Reshuffled each epoch.


def test_same_seed_gives_the_same_order_and_another_seed_another(raw_gray_dir):
  def order(seed):
    return example_ids(make_dataset(shards(raw_gray_dir), RAW_GRAY,
                                    config(seed=seed, deterministic=True)))

  assert order(7) == order(7)
  assert order(7) != order(8)
  assert order(7) != sorted(order(7))


def test_same_seed_gives_the_same_augmentation(raw_gray_dir):
  def run(seed):
    images, _ = collect(make_dataset(shards(raw_gray_dir), RAW_GRAY,
                                     config(seed=seed, deterministic=True, augment=True)))
    return images

  np.testing.assert_array_equal(run(5), run(5))
  assert not np.array_equal(run(5), run(6))


def test_evaluation_reads_in_a_fixed_order_without_shuffling(raw_gray_dir):
  cfg = config(deterministic=True)
  first = example_ids(make_dataset(shards(raw_gray_dir), RAW_GRAY, cfg, training=False))
  assert first == example_ids(make_dataset(shards(raw_gray_dir), RAW_GRAY, cfg, training=False))
  # Shards hold examples round-robin: shard k has k, k+4, ...; interleave takes one of each.
  assert first[:8] == [0, 1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("drop_remainder,sizes", [(False, [16, 16, 8]), (True, [16, 16])])
def test_drop_remainder(raw_gray_dir, drop_remainder, sizes):
  ds = make_dataset(shards(raw_gray_dir), RAW_GRAY,
                    config(batch_size=16, drop_remainder=drop_remainder))
  # Out of order unless deterministic: the short batch may come before a full one.
  assert sorted((int(x.shape[0]) for x, _ in ds), reverse=True) == sizes
  if drop_remainder:
    assert ds.element_spec[0].shape[0] == 16


def test_shard_slices_read_only_their_records(raw_gray_dir):
  paths = shards(raw_gray_dir)
  slices = [ShardSlice(paths[0], skip=2, take=3), ShardSlice(paths[1], skip=9)]
  ids = example_ids(make_dataset(slices, RAW_GRAY, config(), training=False))
  # Shard 0 holds 0, 4, 8, ..., shard 1 holds 1, 5, 9, ...
  assert sorted(ids) == [8, 12, 16, 37]


# Memory and options ----------------------------------------------------------------------


def test_nothing_is_cached_unless_asked(raw_gray_dir, monkeypatch):
  calls = []
  original = tf.data.Dataset.cache
  def recording_cache(self, *args, **kwargs):
    calls.append(args)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(tf.data.Dataset, "cache", recording_cache)
  ds = make_dataset(shards(raw_gray_dir), RAW_GRAY, config(repeat=True))
  for _ in ds.take(10):
    pass
  assert calls == []
  make_dataset(shards(raw_gray_dir), RAW_GRAY, config(cache="memory"))
  assert calls == [()]


def test_a_file_cache_is_written_where_asked(raw_gray_dir, tmp_path):
  path = str(tmp_path / "records")
  ids = example_ids(make_dataset(shards(raw_gray_dir), RAW_GRAY, config(cache=path)))
  assert sorted(ids) == list(range(NUM_EXAMPLES))
  assert glob.glob(path + "*")


def test_the_shuffle_buffer_is_bounded_by_the_config(raw_gray_dir, monkeypatch):
  sizes = []
  original = tf.data.Dataset.shuffle
  monkeypatch.setattr(tf.data.Dataset, "shuffle",
                      lambda self, buffer_size, *a, **k: sizes.append(buffer_size)
                      or original(self, buffer_size, *a, **k))
  make_dataset(shards(raw_gray_dir), RAW_GRAY, config(shuffle_buffer=5))
  assert sizes == [4, 5]  # The 4 shard names, then 5 records.
  sizes.clear()
  make_dataset(shards(raw_gray_dir), RAW_GRAY, config(shuffle_buffer=5), training=False)
  assert sizes == []


def test_tf_data_options_are_set_deliberately(raw_gray_dir):
  options = make_dataset(shards(raw_gray_dir), RAW_GRAY, config(deterministic=True)).options()
  assert options.deterministic is True
  assert options.autotune.enabled is True
  assert options.threading.private_threadpool_size == (os.cpu_count() or 1)
  assert options.threading.max_intra_op_parallelism == 1
  assert make_dataset(shards(raw_gray_dir), RAW_GRAY, config()).options().deterministic is False


def test_categorical_labels_need_the_number_of_classes(raw_gray_dir):
  with pytest.raises(ValueError, match="num_classes=None"):
    make_dataset(shards(raw_gray_dir), RAW_GRAY, config(label_mode="categorical"))
  with pytest.raises(ValueError, match="num_classes=3"):
    make_dataset(shards(raw_gray_dir), RAW_GRAY, config(label_mode="binary"), num_classes=3)


def test_no_shards_is_an_error():
  with pytest.raises(ValueError, match="Received: shards=\\[\\]"):
    make_dataset([], RAW_GRAY, config())


def test_one_cache_prefix_for_two_splits_never_returns_the_other_splits_records(tmp_path):
  from tests.shards_fixture import write_shards
  train_dir, test_dir = str(tmp_path / "train"), str(tmp_path / "test")
  write_shards(train_dir, RAW_GRAY, num_examples=12, num_shards=2, split="train")
  test_paths = write_shards(test_dir, RAW_GRAY, num_examples=5, num_shards=1, split="test")
  cache = str(tmp_path / "cache" / "x")
  os.makedirs(os.path.dirname(cache))
  assert sorted(example_ids(make_dataset(shards(train_dir), RAW_GRAY, config(cache=cache)))) == list(range(12))
  assert sorted(example_ids(make_dataset(test_paths, RAW_GRAY, config(cache=cache), training=False))) == list(range(5))
  # A rewritten shard set is a new cache too, and the first one is still reused as is.
  assert sorted(example_ids(make_dataset(shards(train_dir), RAW_GRAY, config(cache=cache)))) == list(range(12))
  assert len({os.path.basename(p).split(".")[1] for p in glob.glob(cache + ".*")}) == 2
