"""Every preprocessing op, run eagerly and inside tf.data, on tiny hand-made images."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from petpipe.images import decode
from petpipe.images import pixels
from petpipe.images import transform
from petpipe.pipeline import ops
from petpipe.pipeline import schema
from tests.shards_fixture import jpeg_bytes, png_bytes

SEED = tf.constant([1, 2], tf.int64)


def run_both_ways(fn, *args):
  """(eager result, result inside a tf.data map) as numpy."""
  eager = fn(*args)
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  in_data = next(iter(dataset))
  return tf.nest.map_structure(np.asarray, eager), tf.nest.map_structure(np.asarray, in_data)


def checker_png() -> bytes:
  """A 2x2 grayscale checkerboard [[0, 255], [255, 0]]."""
  return png_bytes(np.array([[[0], [255]], [[255], [0]]], np.uint8))


def bilinear_checker(mode: str) -> np.ndarray:
  """The checkerboard resized to 4x4 (half-pixel bilinear): sample points 0, .25, .75, 1."""
  t = np.array([0.0, 0.25, 0.75, 1.0])
  y, x = np.meshgrid(t, t, indexing="ij")
  values = 255.0 * (x + y - 2 * x * y)
  return {"0-1": values / 255.0, "-1-1": values / 127.5 - 1.0,
          "none": np.round(values)}[mode][..., np.newaxis]


def black_jpeg(height: int = 32, width: int = 40) -> bytes:
  return jpeg_bytes(np.zeros((height, width, 3), np.uint8))


def ramp(*shape, dtype=tf.float32) -> tf.Tensor:
  size = int(np.prod(shape))
  return tf.cast(tf.reshape(tf.range(size), shape), dtype)


RAW_2X3 = schema.ImageStorage("raw", 1, (2, 3))
OPS = [
    ("decode", lambda b: ops.decode(b, 1), checker_png),
    ("decode_any", lambda b: ops.decode_any(b, 3), checker_png),
    ("jpeg_at", lambda b: decode.jpeg_at(b, 1, 2), black_jpeg),
    ("decode_raw", lambda b: ops.decode_raw(b, RAW_2X3),
     lambda: tf.constant([bytes(range(6)), bytes(range(6, 12))])),
    ("to_grayscale", pixels.to_grayscale, lambda: tf.constant([[[255, 0, 0]]], tf.uint8)),
    ("to_channels", lambda x: ops.to_channels(x, 4), lambda: tf.constant([[[7]]], tf.uint8)),
    ("convert_channels", lambda x: ops.convert_channels(x, 3),
     lambda: tf.constant([[[7]]], tf.uint8)),
    ("center_crop_to_aspect", lambda x: pixels.center_crop_to_aspect(x, (2, 2)),
     lambda: ramp(2, 4, 1, dtype=tf.int32)),
    ("normalize", lambda x: ops.normalize(x, "-1-1"), lambda: tf.constant([0, 255], tf.uint8)),
    ("random_flip", lambda x: ops.random_flip(x, SEED), lambda: ramp(2, 4, 4, 1)),
    ("random_zoom", lambda x: ops.random_zoom(x, SEED), lambda: ramp(2, 4, 4, 1)),
    ("random_rotate", lambda x: ops.random_rotate(x, SEED), lambda: ramp(2, 4, 4, 1)),
    ("augment", lambda x: ops.augment(x, SEED), lambda: ramp(2, 4, 4, 1, dtype=tf.uint8)),
    ("encode_labels", lambda y: ops.encode_labels(y, "categorical", 3),
     lambda: tf.constant([0, 2], tf.int64)),
]


@pytest.mark.parametrize("name,fn,make_input", OPS, ids=[op[0] for op in OPS])
def test_op_gives_the_same_result_eagerly_and_inside_tf_data(name, fn, make_input):
  eager, in_data = run_both_ways(fn, tf.convert_to_tensor(make_input()))
  np.testing.assert_allclose(eager, in_data, atol=1e-5)
  assert eager.dtype == in_data.dtype


@pytest.mark.parametrize("mode", ["0-1", "-1-1", "none"])
def test_decode_resize_normalize_gives_exact_pixels(mode):
  def preprocess(encoded):
    return ops.normalize(transform.resize(ops.decode(encoded, 1), (4, 4)), mode)

  eager, in_data = run_both_ways(preprocess, tf.constant(checker_png()))
  expected = bilinear_checker(mode)
  np.testing.assert_allclose(eager, expected, atol=1e-6)
  np.testing.assert_allclose(in_data, expected, atol=1e-6)
  assert eager.dtype == (np.uint8 if mode == "none" else np.float32)


def test_decode_raw_reshapes_a_batch_without_decoding():
  storage = schema.ImageStorage("raw", 3, (1, 2))
  batch = tf.constant([bytes([1, 2, 3, 4, 5, 6]), bytes([7, 8, 9, 10, 11, 12])])
  out = ops.decode_raw(batch, storage)
  assert out.shape == (2, 1, 2, 3) and out.dtype == tf.uint8
  np.testing.assert_array_equal(out.numpy()[1, 0, 1], [10, 11, 12])


def test_jpeg_at_decodes_at_a_reduced_scale():
  encoded = jpeg_bytes(np.zeros((40, 30, 3), np.uint8))
  assert decode.jpeg_at(encoded, 1, 4).shape == (10, 8, 1)  # ceil(30 / 4) = 8.


def test_to_grayscale_uses_libjpeg_luma_weights():
  rgb = tf.constant([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], tf.uint8)
  gray = pixels.to_grayscale(rgb).numpy()[0, :, 0]
  np.testing.assert_array_equal(gray, [76, 150, 29, 18])  # 0.299*10+0.587*20+0.114*30 = 18.15


@pytest.mark.parametrize("stored,channels,expected", [
    ([[[9]]], 3, [9, 9, 9]),
    ([[[9, 100]]], 1, [9]),
    ([[[255, 0, 0]]], 1, [76]),
    ([[[1, 2, 3, 4]]], 3, [1, 2, 3]),
    ([[[9]]], 4, [9, 9, 9, 255]),
    ([[[9, 100]]], 4, [9, 9, 9, 100]),
    ([[[1, 2, 3]]], 4, [1, 2, 3, 255]),
])
def test_to_channels_converts_any_stored_channel_count(stored, channels, expected):
  out = ops.to_channels(tf.constant(stored, tf.uint8), channels)
  assert out.shape == (1, 1, channels) and out.dtype == tf.uint8
  np.testing.assert_array_equal(out.numpy()[0, 0], expected)


def test_decode_any_makes_rgba_from_a_jpeg():
  out = ops.decode_any(jpeg_bytes(np.full((8, 8, 3), 200, np.uint8)), 4)
  assert out.shape == (8, 8, 4)
  assert np.all(out.numpy()[..., 3] == 255)


def test_center_crop_to_aspect_keeps_the_central_window():
  image = tf.reshape(tf.range(8), (2, 4, 1))
  np.testing.assert_array_equal(pixels.center_crop_to_aspect(image, (1, 1)).numpy()[..., 0],
                                [[1, 2], [5, 6]])


def test_normalize_ranges_and_dtypes():
  pixels = tf.constant([0.0, 127.5, 255.0])
  np.testing.assert_allclose(ops.normalize(pixels, "0-1"), [0.0, 0.5, 1.0])
  np.testing.assert_allclose(ops.normalize(pixels, "-1-1"), [-1.0, 0.0, 1.0])
  none = ops.normalize(tf.constant([-3.0, 127.4, 300.0]), "none")
  assert none.dtype == tf.uint8
  np.testing.assert_array_equal(none, [0, 127, 255])
  with pytest.raises(ValueError, match="Received: mode='0-255'"):
    ops.normalize(pixels, "0-255")


def test_random_flip_mirrors_some_images_and_keeps_the_others():
  images = tf.reshape(tf.range(16 * 9, dtype=tf.float32), (16, 3, 3, 1))
  out = ops.random_flip(images, SEED).numpy()
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images.numpy())]
  kept = [np.array_equal(o, i) for o, i in zip(out, images.numpy())]
  assert all(m or k for m, k in zip(mirrored, kept))
  assert any(mirrored) and any(kept)


def test_random_zoom_keeps_size_and_constant_images():
  images = tf.fill((3, 8, 8, 1), 7.0)
  out = ops.random_zoom(images, SEED)
  assert out.shape == (3, 8, 8, 1)
  np.testing.assert_allclose(out, 7.0, atol=1e-5)
  identity = ops.random_zoom(tf.reshape(tf.range(64.0), (1, 8, 8, 1)), SEED, min_scale=1.0)
  np.testing.assert_allclose(identity.numpy().ravel(), np.arange(64.0), atol=1e-4)


def test_random_rotate_by_zero_degrees_is_the_identity():
  images = tf.reshape(tf.range(2 * 25, dtype=tf.float32), (2, 5, 5, 1))
  np.testing.assert_allclose(ops.random_rotate(images, SEED, max_degrees=0.0), images, atol=1e-4)
  rotated = ops.random_rotate(images, SEED)
  assert rotated.shape == images.shape and not np.allclose(rotated, images)


def test_augment_is_a_function_of_its_seed():
  images = tf.reshape(tf.range(4 * 64, dtype=tf.float32) % 255, (4, 8, 8, 1))
  first = ops.augment(images, SEED)
  np.testing.assert_array_equal(first, ops.augment(images, SEED))
  assert not np.array_equal(first, ops.augment(images, tf.constant([3, 4], tf.int64)))
  assert first.dtype == tf.float32 and first.shape == images.shape


@pytest.mark.parametrize("mode,dtype,shape", [
    ("int", tf.int32, (3,)), ("categorical", tf.float32, (3, 4)), ("binary", tf.float32, (3, 1)),
])
def test_encode_labels_like_keras(mode, dtype, shape):
  labels = ops.encode_labels(tf.constant([0, 1, 3], tf.int64), mode, 4 if mode != "binary" else 2)
  assert labels.dtype == dtype and labels.shape == shape
  if mode == "categorical":
    np.testing.assert_array_equal(labels.numpy().argmax(-1), [0, 1, 3])
