"""Every registered model builds, takes uint8 pixels, trains a step and round-trips
through a safe-mode save; the head fits the number of classes."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from petpipe import models
from petpipe.models import determinism
from petpipe.models import head

SHAPE = (24, 24, 1)


def _tiny_data(num_classes: int, count: int = 8, shape=SHAPE):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
  labels = np.arange(count) % num_classes
  return images, labels


def _compiled(name: str, num_classes: int, shape=SHAPE) -> keras.Model:
  model = models.build(name, shape, num_classes)
  model.compile(optimizer="adam", loss=head.loss(num_classes), metrics=[head.accuracy(num_classes)])
  return model


def test_registry_lists_the_three_models():
  assert models.names() == ["cnn", "mlp", "xception"]
  assert models.DEFAULT in models.names()


def test_unknown_model_name_lists_the_known_ones():
  with pytest.raises(ValueError, match="Unknown model 'resnet'.*cnn, mlp, xception"):
    models.get("resnet")


def test_registering_a_taken_name_fails():
  with pytest.raises(ValueError, match="already registered"):
    models.register("cnn", models.get("mlp"))


@pytest.fixture(scope="module", params=["mlp", "cnn", "xception"])
def trained(request):
  """(model, history) of each registered model after one epoch on tiny two-class data."""
  model = _compiled(request.param, 2)
  images, labels = _tiny_data(2)
  return model, model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history


def test_two_classes_end_in_one_sigmoid_unit_and_train_a_step(trained):
  model, history = trained
  assert model.output_shape == (None, 1)
  assert np.isfinite(history["loss"][0])
  assert set(history) == {"loss", "accuracy"}
  probabilities = model.predict(_tiny_data(2)[0], verbose=0)
  assert probabilities.dtype == np.float32
  assert np.all((probabilities >= 0) & (probabilities <= 1))


@pytest.mark.parametrize("name", ["mlp", "cnn", "xception"])
def test_three_classes_end_in_a_softmax_and_train_a_step(name):
  model = _compiled(name, 3, shape=(16, 16, 3))
  images, labels = _tiny_data(3, count=6, shape=(16, 16, 3))
  model.fit(images, labels, batch_size=3, epochs=1, verbose=0)
  probabilities = model.predict(images, verbose=0)
  assert probabilities.shape == (6, 3)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn", "xception"])
def test_uint8_and_float_pixels_give_the_same_prediction(name):
  model = models.build(name, SHAPE, 2)
  images, _ = _tiny_data(2, count=4)
  from_uint8 = model.predict(images, verbose=0)
  from_float = model.predict(images.astype(np.float32), verbose=0)
  np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)


def test_rescaling_maps_the_pixel_range_to_unit_interval():
  model = models.build("mlp", (2, 2, 1), 2)
  rescale = keras.Model(model.input, model.get_layer("rescale").output)
  pixels = np.array([[[[0], [255]], [[51], [255]]]], dtype=np.uint8)
  scaled = rescale.predict(pixels, verbose=0)[0, ..., 0]
  np.testing.assert_allclose(scaled, [[0, 1], [0.2, 1]], rtol=1e-6)


def test_augmentation_is_inside_the_model_and_only_changes_training_outputs():
  model = models.build("xception", SHAPE, 2, seed=1)
  assert [layer.name for layer in model.layers[1:3]] == ["flip", "rotation"]  # first, on uint8 pixels
  augmented = keras.Model(model.input, model.get_layer("rotation").output)
  images, _ = _tiny_data(2, count=4)
  # Inference: the pixels pass through untouched and predictions repeat.
  np.testing.assert_array_equal(augmented(images, training=False), images.astype(np.float32))
  np.testing.assert_array_equal(model(images, training=False), model(images, training=False))
  # Training: every image is rotated (and some flipped), so what the model sees changes.
  moved = np.asarray(augmented(images, training=True))
  assert all(not np.array_equal(m, image) for m, image in zip(moved, images.astype(np.float32)))
  assert not np.allclose(model(images, training=True), model(images, training=False))


def test_mlp_and_cnn_have_no_augmentation_unless_asked():
  for name in ("mlp", "cnn"):
    assert "flip" not in {layer.name for layer in models.build(name, SHAPE, 2).layers}
    assert "flip" in {layer.name for layer in models.build(name, SHAPE, 2, augment=True).layers}


def test_output_layer_stays_float32_under_mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = models.build("cnn", SHAPE, 2)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert model.get_layer("rescale").compute_dtype == "float16"
  assert model.layers[-1].compute_dtype == "float32"
  assert model.output.dtype == "float32"


@pytest.mark.parametrize("bad", [(24, 24), (0, 24, 1), (24, 24, -1), (24.0, 24, 1)])
def test_bad_input_shapes_fail_early(bad):
  with pytest.raises(ValueError, match="input_shape must be three positive ints"):
    models.build("cnn", bad, 2)


@pytest.mark.parametrize("bad", [1, 0, 2.0])
def test_fewer_than_two_classes_fail_early(bad):
  with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
    models.build("mlp", SHAPE, bad)


def test_probabilities_give_one_column_per_class():
  sigmoid = np.array([[0.25], [1.0]])
  np.testing.assert_allclose(head.probabilities(sigmoid), [[0.75, 0.25], [0.0, 1.0]])
  softmax = np.array([[0.2, 0.3, 0.5]])
  np.testing.assert_allclose(head.probabilities(softmax), softmax)


def test_saved_model_loads_in_safe_mode_with_the_same_predictions(trained, tmp_path):
  model, _ = trained
  images, _ = _tiny_data(2)
  path = os.path.join(tmp_path, "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path, safe_mode=True)
  np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                             rtol=1e-5)


def test_reseeding_random_layers_repeats_their_draws():
  model = models.build("xception", SHAPE, 2, seed=3)
  images, _ = _tiny_data(2, count=4)
  assert determinism.reseed_layers(model, seed=7, epoch=2) >= 3  # flip, rotation, dropout
  first = np.asarray(model(images, training=True))
  second = np.asarray(model(images, training=True))
  determinism.reseed_layers(model, seed=7, epoch=2)
  again = np.asarray(model(images, training=True))
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, second)


def test_derived_seeds_differ_per_key_and_repeat_per_call():
  assert determinism.derive(1, 0) == determinism.derive(1, 0)
  assert len({determinism.derive(1, epoch) for epoch in range(20)}) == 20
  assert 0 <= determinism.derive(2**40, 5) < 2**31
