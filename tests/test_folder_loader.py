"""`pipeline.image_dataset_from_directory`: Keras' arguments, errors, structure; bad files."""

from __future__ import annotations

import hashlib
import os
import shutil

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from petpipe import pipeline
from petpipe.pipeline import folder_files
from tests.shards_fixture import BAD_FILES, CLASS_NAMES, write_image_folder

ours = pipeline.image_dataset_from_directory
theirs = keras.utils.image_dataset_from_directory


def collect(dataset):
  batches = list(dataset)
  if isinstance(batches[0], tuple):
    return tuple(np.concatenate([b[i].numpy() for b in batches]) for i in range(2))
  return np.concatenate([b.numpy() for b in batches])


def error_of(fn, *args, **kwargs):
  with pytest.raises(Exception) as info:
    fn(*args, **kwargs)
  return type(info.value), str(info.value)


@pytest.mark.parametrize("kwargs", [
    dict(labels="folders"),
    dict(labels=[0, 1], class_names=["Cat"]),
    dict(labels=[0, 1]),
    dict(label_mode="sparse"),
    dict(color_mode="cmyk"),
    dict(image_size=(1, 2, 3)),
    dict(image_size="big"),
    dict(interpolation="cubic"),
    dict(format="png"),
    dict(validation_split=1.5, subset="training", seed=1),
    dict(subset="training"),
    dict(validation_split=0.2),
    dict(validation_split=0.2, subset="train", seed=1),
    dict(validation_split=0.2, subset="training"),
    dict(label_mode="binary", class_names=["Cat"]),
    dict(class_names=["Cat", "Bird"]),
    dict(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
    dict(data_format="channels_middle"),
    dict(labels=None, class_names=["Cat"]),
], ids=lambda kwargs: ",".join(kwargs))
def test_bad_arguments_raise_what_keras_raises(clean_folder, kwargs):
  assert error_of(ours, clean_folder, verbose=False, **kwargs) == error_of(
      theirs, clean_folder, verbose=False, **kwargs)


def test_no_images_raises_keras_error_naming_the_formats_read(tmp_path):
  os.makedirs(tmp_path / "Cat")
  kind, message = error_of(ours, str(tmp_path), verbose=False)
  assert kind == error_of(theirs, str(tmp_path), verbose=False)[0] == ValueError
  assert message == (f"No images found in directory {tmp_path}. Allowed formats: "
                     "('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')")


def test_same_files_classes_and_structure_as_keras(clean_folder):
  kwargs = dict(image_size=(20, 20), batch_size=4, seed=3, validation_split=0.25, subset="both",
                verbose=False)
  mine, keras_ds = ours(clean_folder, **kwargs), theirs(clean_folder, **kwargs)
  assert isinstance(mine, list) and len(mine) == 2
  for a, b in zip(mine, keras_ds):
    assert a.class_names == b.class_names == list(CLASS_NAMES)
    assert a.file_paths == b.file_paths
    assert a.element_spec == b.element_spec
    assert a.skipped_files == []


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
def test_same_pixels_as_keras_when_no_downscaled_decode_applies(clean_folder, color_mode):
  kwargs = dict(image_size=(30, 26), color_mode=color_mode, shuffle=False, batch_size=5,
                verbose=False)
  if color_mode == "rgba":
    # Keras cannot decode JPEGs to RGBA; compare on the PNGs alone.
    assert error_of(lambda: collect(theirs(clean_folder, **kwargs)))[1].find("4 channels") >= 0
    images, _ = collect(ours(clean_folder, **kwargs))
    assert images.shape[-1] == 4 and np.all(images[..., 3] == 255)
    return
  mine_images, mine_labels = collect(ours(clean_folder, **kwargs))
  keras_images, keras_labels = collect(theirs(clean_folder, **kwargs))
  np.testing.assert_array_equal(mine_images, keras_images)
  np.testing.assert_array_equal(mine_labels, keras_labels)


@pytest.mark.parametrize("kwargs", [
    dict(crop_to_aspect_ratio=True), dict(pad_to_aspect_ratio=True),
    dict(interpolation="nearest"), dict(interpolation="area"),
    dict(data_format="channels_first"),
])
def test_resize_options_match_keras(clean_folder, kwargs):
  kwargs = dict(image_size=(30, 20), shuffle=False, verbose=False, **kwargs)
  mine, keras_ds = ours(clean_folder, **kwargs), theirs(clean_folder, **kwargs)
  assert mine.element_spec == keras_ds.element_spec
  np.testing.assert_allclose(collect(mine)[0], collect(keras_ds)[0], atol=1e-3)


def test_fast_decode_decodes_large_jpegs_downscaled_close_to_keras(tmp_path):
  root = str(tmp_path)
  t = np.linspace(0, 1, 120)
  for name in CLASS_NAMES:
    os.makedirs(os.path.join(root, name))
    for i in range(3):
      gradient = np.outer(t, t[::-1] if i % 2 else t) * (200 + 20 * i)
      Image.fromarray(gradient.astype(np.uint8)).save(os.path.join(root, name, f"{i}.jpg"),
                                                      quality=95)
  kwargs = dict(image_size=(30, 30), color_mode="grayscale", shuffle=False, verbose=False)
  keras_images = collect(theirs(root, **kwargs))[0]
  # By default the drop-in keeps Keras's pixels, large JPEGs too.
  np.testing.assert_array_equal(collect(ours(root, **kwargs))[0], keras_images)
  fast = collect(ours(root, fast_decode=True, **kwargs))[0]
  assert fast.shape == keras_images.shape == (6, 30, 30, 1)
  # Decoded at 1/4 scale in the DCT domain: smoother, not identical.
  assert not np.array_equal(fast, keras_images)
  assert np.abs(fast - keras_images).mean() <= 2.0


@pytest.mark.parametrize("kwargs", [dict(crop_to_aspect_ratio=True), dict(pad_to_aspect_ratio=True),
                                    dict(color_mode="rgb")])
def test_fast_decode_with_resize_options_stays_close_to_keras(tmp_path, kwargs):
  root = str(tmp_path)
  t = np.linspace(0, 1, 160)
  for name in CLASS_NAMES:
    os.makedirs(os.path.join(root, name))
    gradient = np.outer(t[:120], t) * 230
    Image.fromarray(gradient.astype(np.uint8)).convert("RGB").save(
        os.path.join(root, name, "0.jpg"), quality=95)
  kwargs = dict(image_size=(20, 24), shuffle=False, verbose=False, **kwargs)
  fast = collect(ours(root, fast_decode=True, **kwargs))[0]
  keras_images = collect(theirs(root, **kwargs))[0]
  assert fast.shape == keras_images.shape
  assert np.abs(fast - keras_images).mean() <= 2.0


@pytest.mark.parametrize("label_mode,shape,dtype", [
    ("int", (12,), tf.int32), ("categorical", (12, 2), tf.float32),
    ("binary", (12, 1), tf.float32),
])
def test_label_modes_like_keras(clean_folder, label_mode, shape, dtype):
  kwargs = dict(label_mode=label_mode, batch_size=12, image_size=8, seed=4, verbose=False)
  images, labels = next(iter(ours(clean_folder, **kwargs)))
  keras_images, keras_labels = next(iter(theirs(clean_folder, **kwargs)))
  assert images.shape == (12, 8, 8, 3) and images.dtype == tf.float32
  assert labels.shape == shape and labels.dtype == dtype
  np.testing.assert_array_equal(labels, keras_labels)  # Keras's values, in Keras's order
  # And what each mode means: the class of the file each image came from.
  classes = np.argmax(labels, -1) if label_mode == "categorical" else np.reshape(labels, -1)
  assert sorted(classes.tolist()) == [0] * 6 + [1] * 6
  if label_mode != "int":
    assert set(np.unique(labels)) == {0.0, 1.0}


def test_without_labels_yields_images_only(clean_folder):
  for kwargs in (dict(labels=None), dict(label_mode=None)):
    batch = next(iter(ours(clean_folder, image_size=8, verbose=False, **kwargs)))
    assert isinstance(batch, tf.Tensor) and batch.shape[1:] == (8, 8, 3)


def test_explicit_labels_follow_the_sorted_files(clean_folder):
  labels = list(range(12))
  ds = ours(clean_folder, labels=labels, label_mode="int", shuffle=False, image_size=8,
            verbose=False)
  assert ds.class_names == [str(i) for i in labels]
  assert collect(ds)[1].tolist() == labels


def test_unbatched_when_batch_size_is_none(clean_folder):
  image, label = next(iter(ours(clean_folder, batch_size=None, image_size=8, verbose=False)))
  assert image.shape == (8, 8, 3) and label.shape == ()


def test_same_seed_same_shuffled_order_and_another_seed_another(clean_folder):
  def order(**kwargs):
    ds = ours(clean_folder, image_size=8, verbose=False, **kwargs)
    return collect(ds)[0].sum(axis=(1, 2, 3)).tolist()

  shuffled = order(seed=11)
  assert shuffled == order(seed=11)
  assert shuffled != order(shuffle=False)  # it is shuffled, not the file order
  assert sorted(shuffled) == sorted(order(shuffle=False))  # the same images
  assert shuffled != order(seed=12)


# Bad files --------------------------------------------------------------------------------


def test_keras_crashes_on_bad_files(bad_folder):
  with pytest.raises(tf.errors.InvalidArgumentError):
    collect(theirs(bad_folder, image_size=8, verbose=False))


def test_bad_files_are_skipped_and_reported(bad_folder, clean_folder, capsys):
  ds = ours(bad_folder, image_size=8, seed=0)
  expected = sorted(os.path.join(bad_folder, *name.split("/")) for name in BAD_FILES)
  assert sorted(ds.skipped_files) == expected
  assert set(ds.skip_reasons) == set(expected)
  assert ds.skip_reasons[os.path.join(bad_folder, "Cat", "empty.jpg")] == "empty: zero bytes"
  assert ds.skip_reasons[os.path.join(bad_folder, "Dog", "cut_off.jpg")].startswith("truncated: ")
  assert "Skipped 3 of 15 files" in capsys.readouterr().out
  images, _ = collect(ds)
  assert len(images) == len(ds.file_paths) == 12
  assert not set(ds.file_paths) & set(expected)


def test_labels_stay_with_their_files_when_bad_files_are_skipped(bad_folder):
  kwargs = dict(labels=list(range(15)), shuffle=False, image_size=8, verbose=False)
  ds = ours(bad_folder, **kwargs)
  every_file = sorted(theirs(bad_folder, **kwargs).file_paths)
  assert collect(ds)[1].tolist() == [every_file.index(p) for p in ds.file_paths]


def test_foreign_formats_are_read_not_skipped(tmp_path):
  root = str(tmp_path)
  write_image_folder(root, per_class=2)
  picture = Image.fromarray(np.full((20, 20, 3), (200, 100, 50), np.uint8))
  picture.save(os.path.join(root, "Cat", "gif.jpg"), "GIF")
  picture.save(os.path.join(root, "Cat", "bmp.bmp"), "BMP")
  picture.convert("CMYK").save(os.path.join(root, "Dog", "cmyk.jpg"), "JPEG")
  picture.save(os.path.join(root, "Dog", "webp.jpg"), "WEBP")
  for color_mode in ("grayscale", "rgb"):
    ds = ours(root, color_mode=color_mode, image_size=8, verbose=False)
    assert ds.skipped_files == []
    assert len(collect(ds)[0]) == len(ds.file_paths) == 8


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_every_file_that_passes_the_checks_decodes(tmp_path_factory, color_mode):
  from tests import fault_corpus

  root = str(tmp_path_factory.mktemp("faults") / "corpus")
  faults = fault_corpus.write_fault_corpus(root, good_per_class=2, copies=1)
  ds = ours(root, color_mode=color_mode, image_size=16, verbose=False, seed=0)
  # No silent drop: every listed file is delivered.
  assert len(collect(ds)[0]) == len(ds.file_paths)
  skipped = {os.path.relpath(p, root) for p in ds.skipped_files}
  must_skip = {f.path for f in faults
               if f.kind in ("zero_byte", "truncated_25", "truncated_50", "truncated_90",
                             "random_bytes", "html_as_jpg", "bomb_header", "lossless_jpeg",
                             "symlink_loop", "bmp_rle8_truncated")}
  assert skipped == must_skip


@pytest.mark.slow
def test_cache_dir_holds_the_fast_decode_pixels_of_each_subset_and_is_read_again(bad_folder,
                                                                                 tmp_path):
  cache = str(tmp_path / "cache")
  kwargs = dict(color_mode="grayscale", image_size=8, validation_split=0.25, subset="both",
                verbose=False, shuffle=False)
  train, val = ours(bad_folder, cache_dir=cache, **kwargs)
  fast_train, fast_val = ours(bad_folder, fast_decode=True, **kwargs)
  expected_bad = sorted(os.path.join(bad_folder, *name.split("/")) for name in BAD_FILES)
  assert sorted(train.skipped_files + val.skipped_files) == expected_bad
  assert train.class_names == list(CLASS_NAMES)
  # The subsets are those without the cache, with the pixels and labels of `fast_decode`.
  for cached, fast in ((train, fast_train), (val, fast_val)):
    assert cached.file_paths == fast.file_paths
    (got, got_labels), (expected, expected_labels) = collect(cached), collect(fast)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_labels, expected_labels)
  entries = sorted(os.listdir(cache))
  assert len(entries) == 2  # one per subset
  mtimes = [os.stat(os.path.join(cache, e)).st_mtime_ns for e in entries]
  again = ours(bad_folder, cache_dir=cache, **kwargs)[0]
  assert sorted(os.listdir(cache)) == entries
  assert [os.stat(os.path.join(cache, e)).st_mtime_ns for e in entries] == mtimes
  np.testing.assert_array_equal(collect(again)[0], collect(train)[0])


def test_cache_dir_refuses_rgba_and_a_folder_inside_the_folder_read(clean_folder, tmp_path):
  with pytest.raises(ValueError, match="rgba"):
    ours(clean_folder, color_mode="rgba", cache_dir=str(tmp_path), verbose=False)
  with pytest.raises(ValueError, match="cache_dir must lie outside the folder being read"):
    ours(clean_folder, cache_dir=os.path.join(clean_folder, "cache"), verbose=False)


def test_a_cache_dir_inside_the_folder_never_becomes_a_class(clean_folder, tmp_path, monkeypatch):
  data = tmp_path / "data"
  shutil.copytree(clean_folder, data)
  monkeypatch.chdir(tmp_path)
  link = tmp_path / "link"
  os.symlink(data / "Cat", link)
  # As the first user typed it, twice; and through a symlink that leads inside.
  for cache in ("data/cache", "data/cache", str(link / "cache")):
    with pytest.raises(ValueError, match="cache_dir must lie outside the folder being read"):
      ours("data", cache_dir=cache, image_size=(16, 16), verbose=False)
  assert sorted(os.listdir(data)) == ["Cat", "Dog"]  # nothing written into the folder
  outside = ours("data", cache_dir=str(tmp_path / "cache"), image_size=(16, 16), verbose=False)
  again = ours("data", cache_dir=str(tmp_path / "cache"), image_size=(16, 16), verbose=False)
  assert outside.class_names == again.class_names == ["Cat", "Dog"]


def test_split_percent_fixes_validation_and_test_files_by_their_paths_whatever_the_seed(tmp_path):
  root = tmp_path / "many"
  rng = np.random.default_rng(2)
  for cls in ("a", "b"):
    (root / cls).mkdir(parents=True)
    for i in range(25):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(root / cls / f"{i}.png")

  def split_by_hash(rel):  # the builders' rule, computed here anew
    point = int.from_bytes(hashlib.sha256(f"split:{rel}".encode()).digest()[:8], "big") / 2**64
    return "train" if point < 0.8 else "validation" if point < 0.9 else "test"

  expected = {}
  for cls in ("a", "b"):
    for i in range(25):
      expected.setdefault(split_by_hash(f"{cls}/{i}.png"), []).append(str(root / cls / f"{i}.png"))
  runs = [ours(str(root), split_percent=(80, 10, 10), seed=seed, image_size=(16, 16), verbose=False)
          for seed in (1, 2)]
  for splits in runs:
    assert set(splits) == {"train", "validation", "test"}
    for split in ("validation", "test"):
      assert splits[split].file_paths == sorted(expected[split])
    assert sorted(splits["train"].file_paths) == sorted(expected["train"])
  assert runs[0]["train"].file_paths != runs[1]["train"].file_paths  # the seed orders training
  with pytest.raises(ValueError, match="split_percent replaces validation_split"):
    ours(str(root), split_percent=(80, 10, 10), validation_split=0.2, subset="both", seed=1)


def test_the_check_reads_headers_only(bad_folder):
  paths = [os.path.join(bad_folder, "Cat", name) for name in sorted(os.listdir(
      os.path.join(bad_folder, "Cat")))]
  checks, reasons = folder_files.check(paths)
  assert set(reasons) == {os.path.join(bad_folder, "Cat", "empty.jpg"),
                          os.path.join(bad_folder, "Cat", "text.jpg")}
  assert len(checks) == 6 and {c.header.format for c in checks.values()} == {"jpeg", "png"}


def test_same_shuffled_order_as_keras_for_the_same_seed(clean_folder):
  kwargs = dict(image_size=(30, 26), color_mode="grayscale", seed=5, batch_size=4, verbose=False)
  mine_images, mine_labels = collect(ours(clean_folder, **kwargs))
  keras_images, keras_labels = collect(theirs(clean_folder, **kwargs))
  np.testing.assert_array_equal(mine_images, keras_images)
  np.testing.assert_array_equal(mine_labels, keras_labels)


def test_a_webp_named_jpg_among_bmps_is_read_with_its_own_decoder(tmp_path):
  root = tmp_path / "many_bmps"
  for cls in ("a", "b"):
    (root / cls).mkdir(parents=True)
  rng = np.random.default_rng(0)
  count = 70
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), np.uint8)).save(root / "ab"[i % 2] / f"{i}.bmp", "BMP")
  Image.fromarray(np.full((12, 12, 3), 77, np.uint8)).save(root / "a" / "webp.jpg", "WEBP")
  ds = ours(str(root), color_mode="grayscale", image_size=8, shuffle=False, verbose=False)
  images, _ = collect(ds)
  assert len(images) == count + 1 and ds.skipped_files == []
  webp = ds.file_paths.index(str(root / "a" / "webp.jpg"))
  np.testing.assert_allclose(images[webp], 77, atol=1)


def test_cache_dir_is_rebuilt_when_a_webp_is_deleted(tmp_path):
  root = str(tmp_path / "folder")
  write_image_folder(root, per_class=2)
  Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(os.path.join(root, "Cat", "w.webp"), "WEBP")
  kwargs = dict(color_mode="grayscale", image_size=8, verbose=False, cache_dir=str(tmp_path / "cache"))
  assert len(collect(ours(root, **kwargs))[0]) == 5
  os.remove(os.path.join(root, "Cat", "w.webp"))
  again = ours(root, **kwargs)
  assert len(collect(again)[0]) == 4
  assert not any(p.endswith("w.webp") for p in again.file_paths)


def test_bmps_tensorflow_rejects_or_misreads_are_read_through_pillow(tmp_path):
  from tests import fault_corpus

  rng = np.random.default_rng(1)
  root = tmp_path / "bmps"
  (root / "a").mkdir(parents=True)
  (root / "b").mkdir()
  palette8 = Image.fromarray(rng.integers(0, 256, (16, 20, 3), np.uint8)).convert("P")
  files = {"a/rle8.bmp": fault_corpus._bmp_rle8(rng), "a/four.bmp": fault_corpus._bmp_4bit(rng),
           "b/sixteen.bmp": fault_corpus._bmp_16bit(rng), "b/palette8.bmp": fault_corpus._encode(palette8, "BMP")}
  for name, data in files.items():
    (root / name).write_bytes(data)
  ds = ours(str(root), image_size=(16, 20), shuffle=False, verbose=False, batch_size=None)
  images = dict(zip(ds.file_paths, [x.numpy() for x, _ in ds]))
  assert ds.skipped_files == [] and len(images) == len(files)
  for name in ("a/rle8.bmp", "a/four.bmp", "b/sixteen.bmp", "b/palette8.bmp"):
    expected = np.asarray(Image.open(root / name).convert("RGB"), np.float32)
    np.testing.assert_allclose(images[str(root / name)], expected, atol=0.5, err_msg=name)
