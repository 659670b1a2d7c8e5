"""The one image transform: the same pixels eagerly, in tf.data, in builders and prediction."""

from __future__ import annotations

import io
import json
import os

import matplotlib
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from petpipe import prediction
from petpipe.builders import storage as storage_lib
from petpipe.images import validation
from petpipe.images import decode
from petpipe.images import pixels
from petpipe.images import transform
from petpipe.pipeline import PipelineConfig, make_dataset, ops, schema
from tests.shards_fixture import jpeg_bytes, png_bytes

TARGET = (16, 16)
# (height, width) -> the DCT ratio that still covers TARGET: 1, 2, 4 and 8.
MIXED_SIZES = {(20, 24): 1, (33, 40): 2, (64, 70): 4, (130, 150): 8, (120, 300): 4}


def photo() -> Image.Image:
  """A real photograph (matplotlib's sample), natural-image content for the tests."""
  return Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))


def photo_jpeg(size, mode: str = "RGB", quality: int = 90) -> bytes:
  with photo() as image:
    resized = image.convert(mode).resize((size[1], size[0]), Image.LANCZOS)
  buffer = io.BytesIO()
  resized.save(buffer, "JPEG", quality=quality)
  return buffer.getvalue()


def in_tf_data(encoded: list, fn) -> list[np.ndarray]:
  dataset = tf.data.Dataset.from_tensor_slices(encoded).map(fn)
  return [image.numpy() for image in dataset]


@pytest.mark.parametrize("channels", [1, 3])
def test_eager_and_tf_data_entries_give_identical_pixels_on_jpegs_of_mixed_sizes(channels):
  files = [photo_jpeg(size) for size in MIXED_SIZES]
  files += [photo_jpeg((90, 70), "L"), photo_jpeg((40, 50), "CMYK")]
  preprocessing = transform.Preprocessing(TARGET, channels)
  eager = [transform.transform_bytes(data, preprocessing).numpy() for data in files]
  graph = in_tf_data(files, lambda b: transform.transform_encoded(b, preprocessing, "jpeg"))
  for e, g in zip(eager, graph):
    assert e.shape == g.shape == (*TARGET, channels) and e.dtype == g.dtype == np.float32
    np.testing.assert_array_equal(e, g)


def test_eager_and_tf_data_entries_give_identical_pixels_on_pngs():
  rng = np.random.default_rng(0)
  files = [png_bytes(rng.integers(0, 256, (20, 30, 3), np.uint8)),
           png_bytes(rng.integers(0, 256, (40, 24, 1), np.uint8))]
  preprocessing = transform.Preprocessing(TARGET, 1)
  eager = [transform.transform_bytes(data, preprocessing).numpy() for data in files]
  graph = in_tf_data(files, lambda b: transform.transform_encoded(b, preprocessing, "png"))
  for e, g in zip(eager, graph):
    np.testing.assert_array_equal(e, g)


@pytest.mark.parametrize("size,expected", [
    ((100, 100), 1), ((197, 400), 1), ((199, 400), 2), ((250, 500), 2), ((400, 400), 4),
    ((791, 900), 4), ((793, 900), 8), ((5000, 5000), 8),
])
def test_ratio_for_size_keeps_the_target_covered(size, expected):
  ratio = decode.ratio_for_size(*size, (100, 100))
  assert ratio == expected
  assert -(-size[0] // ratio) >= 100 and -(-size[1] // ratio) >= 100
  if ratio < 8:  # the next scale would not cover
    assert -(-size[0] // (2 * ratio)) < 100 or -(-size[1] // (2 * ratio)) < 100
  # The graph decode picks the same scale from the header: its output has that size.
  decoded = decode.decode_jpeg(jpeg_bytes(np.zeros((*size, 1), np.uint8)), 1, (100, 100))
  assert decoded.shape[:2] == (-(-size[0] // expected), -(-size[1] // expected))


def test_mixed_sizes_decode_at_the_largest_scale_that_covers_the_target():
  for size, ratio in MIXED_SIZES.items():
    assert decode.ratio_for_size(*size, TARGET) == ratio
    decoded = decode.decode_bytes(photo_jpeg(size), 3, decode.JPEG, TARGET)
    assert decoded.shape[:2] == (-(-size[0] // ratio), -(-size[1] // ratio))
    assert min(decoded.shape[0] - TARGET[0], decoded.shape[1] - TARGET[1]) >= 0


def test_decode_jpeg_in_a_graph_covers_the_target_per_image():
  encoded = jpeg_bytes(np.zeros((40, 30, 3), np.uint8))
  assert decode.decode_jpeg(encoded, 3, (10, 7)).shape == (10, 8, 3)
  assert decode.decode_jpeg(encoded, 3, (11, 7)).shape == (20, 15, 3)
  assert decode.decode_jpeg(encoded, 1).shape == (40, 30, 1)


def photo_bytes() -> bytes:
  with open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"),
            "rb") as f:
    return f.read()  # 600 x 512


def mean_abs_error(a, b) -> float:
  return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


@pytest.mark.parametrize("channels", [1, 3])
def test_dct_scaled_decode_stays_close_to_a_full_decode_with_the_same_resize(channels):
  # Half size: the full-size route's bilinear step is still a fair 2x2 average there.
  data, target = photo_bytes(), (300, 256)
  scaled = transform.transform_bytes(data, transform.Preprocessing(target, channels))
  full = transform.transform_bytes(
      data, transform.Preprocessing(target, channels, jpeg_dct_scaling=False))
  assert decode.ratio_for_size(600, 512, target) == 2
  assert mean_abs_error(scaled, full) <= 2.0


@pytest.mark.parametrize("target", [(200, 200), (100, 90), (64, 64)])
def test_dct_scaled_decode_is_closer_to_an_antialiased_resize_than_a_full_decode_is(target):
  # Beyond 2x, bilinear without antialiasing skips pixels: the full-size route aliases
  # (4-10 off on this photo), the DCT route (a box filter first) stays near the ideal.
  data = photo_bytes()
  ideal = tf.image.resize(tf.io.decode_jpeg(data, channels=1), target, antialias=True)
  scaled = transform.transform_bytes(data, transform.Preprocessing(target, 1))
  full = transform.transform_bytes(
      data, transform.Preprocessing(target, 1, jpeg_dct_scaling=False))
  assert mean_abs_error(scaled, ideal) <= 3.0
  assert mean_abs_error(scaled, ideal) < mean_abs_error(full, ideal) / 2


def test_resize_of_an_image_already_at_size_only_casts():
  image = tf.constant(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1))
  out = transform.resize(image, (4, 4))
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), image.numpy())


def test_resize_is_plain_bilinear_without_antialiasing():
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 24, 1), np.uint8))
  np.testing.assert_array_equal(
      transform.resize(image, (8, 6)),
      tf.image.resize(image, (8, 6), method="bilinear", antialias=False))


def test_one_channel_of_a_png_is_rgb_then_rounded_luma():
  rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), np.uint8)
  gray = decode.decode_bytes(png_bytes(rgb), 1, decode.IMAGE).numpy()
  expected = np.round(rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))
  np.testing.assert_array_equal(gray[..., 0], expected.astype(np.uint8))


def test_one_channel_of_a_cmyk_jpeg_is_rgb_then_rounded_luma():
  data = photo_jpeg((40, 50), "CMYK")
  rgb = tf.io.decode_jpeg(data, channels=3)
  np.testing.assert_array_equal(decode.decode_bytes(data, 1, decode.JPEG),
                                pixels.to_grayscale(rgb))


def test_preprocessing_round_trips_through_json():
  preprocessing = transform.Preprocessing(32, 1)
  as_dict = preprocessing.to_dict()
  assert as_dict == {"image_size": [32, 32], "channels": 1, "resize": "bilinear",
                     "antialias": False, "jpeg_dct_scaling": True}
  assert transform.Preprocessing.from_dict(json.loads(json.dumps(as_dict))) == preprocessing


@pytest.mark.parametrize("values,message", [
    (dict(image_size=[8, 8], channels=2), "channels=2"),
    (dict(image_size=[8, 0], channels=1), "image_size"),
    (dict(image_size=[8, 8], channels=1, resize="cubic"), "resize='cubic'"),
    (dict(image_size=[8, 8], channels=1, sharpen=True), "unknown keys"),
    (dict(channels=1), "image_size and channels"),
])
def test_preprocessing_rejects_bad_values_naming_them(values, message):
  with pytest.raises(ValueError, match=message):
    transform.Preprocessing.from_dict(values)


@pytest.mark.parametrize("mode,channels", [("RGB", 1), ("RGB", 3), ("CMYK", 1), ("L", 3)])
def test_builder_raw_storage_is_the_rounded_transform(mode, channels):
  data = photo_jpeg((70, 90), mode)
  verdict = validation.inspect(data, "cat/x.jpg", "cat", validation.Limits())
  stored = storage_lib.encode(data, verdict, schema.ImageStorage("raw", channels, TARGET),
                              None, 95)
  expected = ops.normalize(
      transform.transform_bytes(data, transform.Preprocessing(TARGET, channels)), "none")
  assert stored.dtype == np.uint8
  np.testing.assert_array_equal(stored, expected.numpy())


def test_builder_jpeg_storage_shrinks_through_the_right_scale_decode():
  # A jpeg256-style config: the longest side is brought to 64, decoded at 1/4 first.
  data = photo_jpeg((300, 260))
  verdict = validation.inspect(data, "cat/x.jpg", "cat", validation.Limits())
  stored = storage_lib.encode(data, verdict, schema.ImageStorage("jpeg", 3), 64, 95)
  size = (64, 55)
  assert decode.ratio_for_size(300, 260, size) == 4
  expected = tf.io.encode_jpeg(ops.normalize(
      transform.transform_bytes(data, transform.Preprocessing(size, 3)), "none"),
      quality=95, optimize_size=False)
  assert stored == expected.numpy()


def test_make_dataset_and_prediction_give_the_same_uint8_pixels_of_stored_jpegs(tmp_path):
  files = [photo_jpeg(size) for size in MIXED_SIZES]
  paths = []
  shard = str(tmp_path / "data.tfrecord-00000-of-00001")
  with tf.io.TFRecordWriter(shard) as writer:
    for i, data in enumerate(files):
      paths.append(str(tmp_path / f"{i}.jpg"))
      with open(paths[-1], "wb") as f:
        f.write(data)
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          schema.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
          schema.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
      })).SerializeToString())
  config = PipelineConfig(image_size=TARGET, channels=1, batch_size=len(files),
                          normalize="none", deterministic=True)
  images, _ = next(iter(make_dataset([shard], schema.ImageStorage("jpeg", 3), config,
                                     training=False)))
  preprocessing = transform.Preprocessing(TARGET, 1)
  predicted = np.stack([prediction.load_image(p, preprocessing) for p in paths])
  assert images.dtype == tf.uint8 and predicted.dtype == np.uint8
  np.testing.assert_array_equal(images.numpy(), predicted)


def photo_crop_jpeg(size, seed: int) -> bytes:
  """A random crop of the photo, flipped or not, colour-shifted, resized to `size`:
  natural-image content of any size."""
  rng = np.random.default_rng(seed)
  with photo() as image:
    w, h = image.size
    cw, ch = int(rng.integers(w // 3, w)), int(rng.integers(h // 3, h))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image.convert("RGB").crop((x, y, x + cw, y + ch)).resize((size[1], size[0]),
                                                                     Image.BILINEAR)
  if rng.random() < 0.5:
    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
  pixels = np.clip(np.asarray(crop, np.float32) * rng.uniform(0.8, 1.2, 3), 0, 255)
  buffer = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(75, 95)))
  return buffer.getvalue()


@pytest.mark.parametrize("seed", range(4))
def test_dct_halving_of_natural_crops_stays_within_2_of_a_full_decode_with_the_same_resize(seed):
  # At exactly twice the target the full-size route's bilinear step is a fair 2x2 average.
  target = (80, 96)
  data = photo_crop_jpeg((160, 192), seed)
  assert decode.ratio_for_size(160, 192, target) == 2
  for channels in (1, 3):
    scaled = transform.transform_bytes(data, transform.Preprocessing(target, channels))
    full = transform.transform_bytes(
        data, transform.Preprocessing(target, channels, jpeg_dct_scaling=False))
    assert mean_abs_error(scaled, full) <= 2.0


@pytest.mark.parametrize("seed", range(4))
def test_dct_scaled_decode_of_natural_crops_is_no_further_from_the_ideal_than_a_full_decode(seed):
  # Beyond 2x the full-size route's bilinear step skips pixels; the ideal is the full decode
  # with an antialiased resize, which costs about twice the decode (see README).
  for size in MIXED_SIZES:
    data = photo_crop_jpeg(size, seed)
    ideal = tf.image.resize(tf.io.decode_jpeg(data, channels=1), TARGET, antialias=True)
    scaled = transform.transform_bytes(data, transform.Preprocessing(TARGET, 1))
    full = transform.transform_bytes(
        data, transform.Preprocessing(TARGET, 1, jpeg_dct_scaling=False))
    assert mean_abs_error(scaled, ideal) <= mean_abs_error(full, ideal) + 0.5


# Independent references ---------------------------------------------------------------------
#
# The consistency tests above compare two paths through the same code. These compare the
# model's uint8 pixels with values computed without it: by hand, and with Pillow and NumPy.

# A gray image halved: with half-pixel centres, plain bilinear at exactly half size averages
# each 2x2 block. The averages end in .25 or .75, so rounding and truncating differ.
GRAY_4X6 = np.array([[10, 11, 200, 201, 0, 0],
                     [11, 11, 201, 201, 0, 1],
                     [50, 50, 90, 91, 255, 254],
                     [50, 51, 91, 91, 254, 254]], np.uint8)
HALVED_2X3 = np.array([[11, 201, 0],     # 10.75, 200.75, 0.25
                       [50, 91, 254]])   # 50.25, 90.75, 254.25
# Colours and their BT.601 luma 0.299 R + 0.587 G + 0.114 B, rounded (and Pillow's "L").
COLOURS_2X3 = np.array([[(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                        [(255, 255, 0), (200, 100, 50), (10, 20, 30)]], np.uint8)
LUMA_2X3 = np.array([[76, 150, 29],      # 76.245, 149.685, 29.07
                     [226, 124, 18]])    # 225.93, 124.2, 18.15
HAND_COMPUTED = {"halved_gray": (GRAY_4X6, HALVED_2X3), "colours_to_luma": (COLOURS_2X3, LUMA_2X3)}


def test_the_hand_computed_references_agree_with_pillow_and_numpy():
  np.testing.assert_array_equal(np.asarray(Image.fromarray(COLOURS_2X3).convert("L")), LUMA_2X3)
  luma = COLOURS_2X3.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_array_equal(np.round(luma), LUMA_2X3)
  blocks = GRAY_4X6.astype(np.float64).reshape(2, 2, 3, 2).mean(axis=(1, 3))
  np.testing.assert_array_equal(np.round(blocks), HALVED_2X3)


def _through_make_dataset(data: bytes, folder) -> np.ndarray:
  shard = str(folder / "one.tfrecord-00000-of-00001")
  with tf.io.TFRecordWriter(shard) as writer:
    writer.write(tf.train.Example(features=tf.train.Features(feature={
        schema.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        schema.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
    })).SerializeToString())
  config = PipelineConfig(image_size=(2, 3), channels=1, batch_size=1, normalize="none",
                          deterministic=True)
  images, _ = next(iter(make_dataset([shard], schema.ImageStorage("png", 3), config, training=False)))
  return images.numpy()[0]


def _through_prediction(data: bytes, folder) -> np.ndarray:
  path = folder / "picture.png"
  path.write_bytes(data)
  return prediction.load_image(str(path), transform.Preprocessing((2, 3), 1))


def _through_the_builders_raw_storage(data: bytes, folder) -> np.ndarray:
  verdict = validation.inspect(data, "cat/picture.png", "cat", validation.Limits(min_side=2))
  return storage_lib.encode(data, verdict, schema.ImageStorage("raw", 1, (2, 3)), None, 95)


@pytest.mark.parametrize("picture", sorted(HAND_COMPUTED))
@pytest.mark.parametrize("entry", [_through_make_dataset, _through_prediction, _through_the_builders_raw_storage],
                         ids=["make_dataset", "prediction", "builder_raw_storage"])
def test_uint8_pixels_are_the_hand_computed_rounded_values(entry, picture, tmp_path):
  pixels, expected = HAND_COMPUTED[picture]
  out = entry(png_bytes(pixels), tmp_path)
  assert out.dtype == np.uint8 and out.shape == (2, 3, 1)
  np.testing.assert_array_equal(out[..., 0], expected)


def bilinear_reference(image: np.ndarray, size) -> np.ndarray:
  """Plain bilinear resize with half-pixel centres and no antialiasing, in float64 NumPy:
  output pixel i samples input coordinate (i + 0.5) * in / out - 0.5 (clamped to the edges)."""
  out = np.asarray(image, np.float64)
  for axis, n in enumerate(size):
    m = out.shape[axis]
    x = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
    low = np.floor(x).astype(int)
    high = np.minimum(low + 1, m - 1)
    weight = (x - low).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
    out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
  return out


def pillow_reference(data: bytes, size, channels: int) -> np.ndarray:
  """Pillow's libjpeg decode at the largest DCT scale covering `size` (`draft`), then
  `bilinear_reference`: float64 (H, W, channels)."""
  with Image.open(io.BytesIO(data)) as image:
    width, height = image.size
    # Largest of 1/2, 1/4, 1/8 keeping both sides at least the target (by hand, not the library's).
    ratio = max(r for r in (1, 2, 4, 8) if -(-height // r) >= size[0] and -(-width // r) >= size[1])
    image.draft("L" if channels == 1 else "RGB", (width // ratio, height // ratio))
    assert image.size == (-(-width // ratio), -(-height // ratio))
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
  return bilinear_reference(pixels.reshape(*pixels.shape[:2], channels), size), ratio


def assert_rounds_the_reference(uint8_image, reference):
  """`uint8_image` is `reference` rounded, except where the reference sits within 0.01 of a
  .5 tie (float32 against float64 arithmetic)."""
  ties = np.abs(reference - np.floor(reference) - 0.5) < 0.01
  assert not ties.all()
  np.testing.assert_array_equal(np.where(ties, 0, uint8_image), np.where(ties, 0, np.round(reference)))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_pixels_are_pillows_dct_scaled_decode_resized_bilinearly_and_rounded(channels):
  # At 1/4 and 1/8 TensorFlow's libjpeg and Pillow's compute the same scaled IDCT; at 1/1 and
  # 1/2 TensorFlow's default fast integer IDCT differs from Pillow's accurate one by ~1 level.
  for seed in range(2):
    for size, ratio in MIXED_SIZES.items():
      data = photo_crop_jpeg(size, seed)
      reference, reference_ratio = pillow_reference(data, TARGET, channels)
      assert reference_ratio == ratio
      pixels = transform.transform_bytes(data, transform.Preprocessing(TARGET, channels))
      if ratio >= 4:
        np.testing.assert_allclose(pixels.numpy(), reference, atol=1e-3)
        assert_rounds_the_reference(ops.normalize(pixels, "none").numpy(), reference)
      else:
        assert mean_abs_error(pixels, reference) <= 1.5, (size, seed)


def test_make_dataset_decodes_each_image_of_mixed_size_shards_at_its_own_scale(tmp_path):
  sizes = list(MIXED_SIZES) * 2  # ratios 1, 2, 4, 8 and 4, in both shards
  files = [photo_crop_jpeg(size, seed) for seed, size in enumerate(sizes)]
  assert {decode.ratio_for_size(*size, TARGET) for size in sizes} == set(decode.JPEG_RATIOS)
  shards = [str(tmp_path / f"data.tfrecord-0000{i}-of-00002") for i in range(2)]
  for i, shard in enumerate(shards):
    with tf.io.TFRecordWriter(shard) as writer:
      for data in files[i * len(MIXED_SIZES):(i + 1) * len(MIXED_SIZES)]:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            schema.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            schema.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
        })).SerializeToString())
  config = PipelineConfig(image_size=TARGET, channels=3, batch_size=len(files),
                          normalize="none", deterministic=True)
  images, _ = next(iter(make_dataset(shards, schema.ImageStorage("jpeg", 3), config,
                                     training=False)))
  # Read in parallel, deterministically: one record of each shard in turn.
  n = len(MIXED_SIZES)
  files = [files[k + i * n] for k in range(n) for i in range(2)]
  preprocessing = transform.Preprocessing(TARGET, 3)
  per_image = [ops.normalize(transform.transform_bytes(data, preprocessing), "none").numpy()
               for data in files]
  np.testing.assert_array_equal(images.numpy(), np.stack(per_image))
  for image, data in zip(images.numpy(), files):  # and against Pillow and NumPy, where exact
    reference, ratio = pillow_reference(data, TARGET, 3)
    if ratio >= 4:
      assert_rounds_the_reference(image, reference)
  # One scale for all (the first image's, full size) would have given other pixels.
  one_scale = [ops.normalize(transform.resize(decode.jpeg_at(data, 3, 1), TARGET), "none")
               for data in files]
  assert any(not np.array_equal(a, b) for a, b in zip(per_image, one_scale))
