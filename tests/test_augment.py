"""Each in-model augmentation, run twice as big_vision runs its ops: eagerly and inside
tf.data; and all of them inside `fit` (under deterministic ops, with exact resume, in
tests/test_train.py). MixUp and CutMix, which mix labels in the training step: their
draws, the mixed loss, what the training and validation steps see, repeatability and
resume, XLA, and the saved model."""

from __future__ import annotations

import contextlib
import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from petpipe import models
from petpipe.models import checkpoint
from petpipe.models import head
from petpipe.models import mixing
from petpipe.models import preprocessing

SIZE = 16


def _images(channels: int = 1) -> np.ndarray:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, SIZE, SIZE, channels)).astype(np.uint8)
  images[:, :, : SIZE // 2] //= 4  # a dark half, so flips and crops show
  return images


def _layers(name: str):
  return preprocessing.augmentation(seed=1, augment=[name], image_size=(SIZE, SIZE))


def _apply(layers, images, training: bool):
  x = tf.cast(images, tf.float32)
  for layer in layers:
    x = layer(x, training=training)
  return x


@pytest.mark.parametrize("name", preprocessing.IMAGE_AUGMENTATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_augmentation_changes_training_images_only_eagerly(name, channels):
  images = _images(channels)
  layers = _layers(name)
  trained = np.asarray(_apply(layers, images, training=True))
  assert trained.shape == images.shape
  assert trained.min() >= 0 and trained.max() <= 255.5
  assert not np.allclose(trained, images)
  np.testing.assert_allclose(np.asarray(_apply(layers, images, training=False)), images)


@pytest.mark.parametrize("name", preprocessing.IMAGE_AUGMENTATIONS)
def test_each_augmentation_runs_inside_tf_data(name):
  images = _images()
  layers = _layers(name)
  dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(
      lambda x: _apply(layers, x, training=True))
  batches = np.concatenate(list(dataset.as_numpy_iterator()))
  assert batches.shape == images.shape and batches.dtype == np.float32
  assert not np.allclose(batches, images)


def test_augment_names_are_checked_and_true_is_the_default_set():
  assert preprocessing.augmentation_names(True) == ("flip", "rotate")
  assert preprocessing.augmentation_names("zoom, crop") == ("zoom", "crop")
  assert preprocessing.augmentation_names("flip,mixup,cutmix") == ("flip", "mixup", "cutmix")
  assert preprocessing.augmentation_names("none") == () == preprocessing.augmentation_names(False)
  with pytest.raises(ValueError, match="augment must name some of"):
    preprocessing.augmentation_names("flip,sharpen")


def test_a_model_built_with_a_list_holds_those_layers_in_order():
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=["contrast", "flip", "crop"], seed=0)
  names = [layer.name for layer in model.layers]
  assert names[1:5] == ["flip", "crop", "crop_resize", "contrast"]


def test_a_model_with_every_augmentation_trains_inside_fit():
  # Under deterministic ops, with exact resume: tests/test_train.py's kill test trains
  # this same list.
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (8, SIZE, SIZE, 1)).astype(np.uint8)
  y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32)
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=preprocessing.AUGMENTATIONS, seed=3)
  model.compile("adam", loss=head.loss(2))
  before = [np.asarray(w) for w in model.trainable_weights]
  history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1,
                      verbose=0, shuffle=False)
  assert np.isfinite(history.history["loss"][0])
  assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.trainable_weights))


@pytest.mark.parametrize("name", preprocessing.AUGMENTATIONS)
def test_only_the_documented_augmentations_compile_with_xla(name):
  model = models.build("mlp", (SIZE, SIZE, 1), 2, augment=[name], seed=0)
  xla = name in preprocessing.XLA_AUGMENTATIONS
  # Keras warns when it drops XLA for a layer that does not support it.
  with contextlib.nullcontext() if xla else pytest.warns(UserWarning, match="jit_compile"):
    model.compile("adam", loss=head.loss(2), jit_compile=True)
  assert bool(model.jit_compile) == xla


# ----------------------------------------------------------------- MixUp and CutMix

MIXES = [("mixup",), ("cutmix",), ("mixup", "cutmix")]


def _labelled(count: int = 8, num_classes: int = 2):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (count, SIZE, SIZE, 1)).astype(np.uint8)
  return images, (np.arange(count) % num_classes).astype(np.int32)


def _mixed(names, step: int = 0, seed: int = 7):
  images, labels = _labelled()
  mixed, target = mixing.mix(tf.constant(images), tf.constant(labels), names, seed,
                             tf.constant(step))
  return images, labels, np.asarray(mixed), target


@pytest.mark.parametrize("names", MIXES)
def test_mixing_blends_or_pastes_partners_and_weighs_their_labels_eagerly(names):
  images, labels, mixed, target = _mixed(names)
  order, share = np.asarray(target.order), np.asarray(target.share)
  assert mixed.dtype == np.float32 and mixed.shape == images.shape
  assert 0 <= mixed.min() and mixed.max() <= 255
  assert sorted(order) == list(range(len(images))) and not np.array_equal(order, np.arange(8))
  assert ((0 <= share) & (share <= 1)).all() and not np.allclose(share, 1)
  np.testing.assert_array_equal(target.labels, labels)
  np.testing.assert_array_equal(target.partners(), labels[order])
  own, partner = images.astype(np.float32), images[order].astype(np.float32)
  blended = share[:, None, None, None] * own + (1 - share[:, None, None, None]) * partner
  pasted = np.where(mixed == own, True, mixed == partner).all(axis=(1, 2, 3))
  if names == ("mixup",):
    np.testing.assert_allclose(mixed, blended, atol=1e-3)
  elif names == ("cutmix",):
    assert pasted.all()
    # The label share is the share of pixels kept (a box is pasted, the rest kept; a few
    # pasted pixels equal the kept ones by chance).
    moved = order != np.arange(len(order))
    kept = (mixed == own).mean(axis=(1, 2, 3))[moved]
    assert (share[moved] <= kept + 1e-6).all() and (kept - share[moved] < 0.05).all()
  else:  # one of the two for the whole batch
    assert pasted.all() or np.allclose(mixed, blended, atol=1e-3)


def test_mixing_draws_follow_from_seed_and_step_alone():
  _, _, first, target = _mixed(("mixup", "cutmix"), step=3)
  _, _, again, same = _mixed(("mixup", "cutmix"), step=3)
  _, _, other, _ = _mixed(("mixup", "cutmix"), step=4)
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(target.share, same.share)
  assert not np.array_equal(first, other)
  assert not np.array_equal(first, _mixed(("mixup", "cutmix"), step=3, seed=8)[2])


@pytest.mark.parametrize("names", MIXES)
def test_mixing_runs_inside_tf_data_and_compiled_with_xla(names):
  images, labels = _labelled()
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4).map(
      lambda x, y: mixing.mix(x, y, names, 7, tf.constant(0))[0])
  batches = np.concatenate(list(dataset.as_numpy_iterator()))
  assert batches.shape == images.shape and not np.allclose(batches, images)
  xla = tf.function(lambda x, y: mixing.mix(x, y, names, 7, tf.constant(0))[0],
                    jit_compile=True)
  compiled = np.asarray(xla(tf.constant(images), tf.constant(labels)))
  assert compiled.shape == images.shape and not np.allclose(compiled, images)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_the_stateless_beta_sampler_has_the_beta_distribution_moments(alpha):
  draws = np.asarray(mixing.beta(200_000, alpha, tf.constant([1, 2], tf.int64)))
  assert ((0 <= draws) & (draws <= 1)).all()
  assert abs(draws.mean() - 0.5) < 0.005
  assert abs(draws.var() - 1 / (4 * (2 * alpha + 1))) < 0.005


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_mixed_loss_is_the_share_weighted_loss_of_both_labels(num_classes):
  model = models.build("mlp", (SIZE, SIZE, 1), num_classes, augment=["mixup"], seed=0)
  model.compile("adam", loss=head.loss(num_classes))
  images, labels = _labelled(num_classes=num_classes)
  order, share = np.roll(np.arange(8), 1), np.linspace(0, 1, 8, dtype=np.float32)
  target = mixing.MixedLabels(tf.constant(labels), tf.constant(order), tf.constant(share))
  predictions = model(images)
  weights = np.arange(1, 9, dtype=np.float32)  # class weights arrive as sample weights
  loss = float(model.compute_loss(y=target, y_pred=predictions, sample_weight=weights))
  per_image = head.loss(num_classes).__class__(reduction=None)
  expected = np.mean(share * weights * per_image(labels, predictions)
                     + (1 - share) * weights[order] * per_image(labels[order], predictions))
  assert loss == pytest.approx(float(expected), rel=1e-5)
  # Unmixed labels (validation, evaluation) get the plain loss.
  plain = float(model.compute_loss(y=labels, y_pred=predictions))
  assert plain == pytest.approx(float(np.mean(per_image(labels, predictions))), rel=1e-5)


class _Spy(mixing.MixingModel):
  """Keeps what each loss computation was given (run eagerly)."""

  seen = []

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    self.seen.append((training, np.asarray(x), y))
    return super().compute_loss(x, y, y_pred, sample_weight, training=training)


@pytest.mark.parametrize("names", MIXES)
def test_fit_trains_on_mixed_images_and_labels_and_validates_on_plain_ones(names):
  images, labels = _labelled()
  inputs = keras.Input((SIZE, SIZE, 1))
  outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
  model = _Spy(inputs, outputs, mixing=names, mixing_seed=0)
  model.seen = []
  model.compile("adam", loss=head.loss(2), metrics=[head.accuracy(2)], run_eagerly=True)
  model.fit(images, labels, batch_size=8, epochs=1, shuffle=False, verbose=0,
            validation_data=(images, labels))
  (train, x_train, y_train), (validate, x_val, y_val) = model.seen
  assert train and not validate
  assert isinstance(y_train, mixing.MixedLabels) and not np.allclose(y_train.share, 1)
  assert not np.allclose(x_train, images)
  np.testing.assert_array_equal(x_val, images)
  np.testing.assert_array_equal(y_val, labels)


def _fit_mixing(names, num_classes: int, epochs: int, model=None, initial_epoch: int = 0):
  images, labels = _labelled(16, num_classes)
  if model is None:
    keras.utils.set_random_seed(0)
    model = models.build("mlp", (SIZE, SIZE, 1), num_classes, augment=names, seed=3)
    model.compile("adam", loss=head.loss(num_classes), metrics=[head.accuracy(num_classes)])
  history = model.fit(images, labels, batch_size=4, epochs=epochs, initial_epoch=initial_epoch,
                      shuffle=False, verbose=0)
  return model, history.history


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("names", MIXES)
def test_mixing_trains_inside_fit_and_repeats_with_the_same_seed(names, num_classes):
  first, history = _fit_mixing(names, num_classes, epochs=2)
  second, again = _fit_mixing(names, num_classes, epochs=2)
  assert isinstance(first, mixing.MixingModel)
  assert np.isfinite(history["loss"]).all() and history == again
  for a, b in zip(first.weights, second.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_mixing_run_resumed_from_its_saved_state_ends_with_the_same_weights(tmp_path):
  # The draws follow from the optimizer's step, which the saved state holds: no other
  # state to keep (tests/test_train.py kills and resumes a run with every augmentation).
  names = ("mixup", "cutmix")
  whole, _ = _fit_mixing(names, 2, epochs=2)
  half, _ = _fit_mixing(names, 2, epochs=1)
  checkpoint.save(half, str(tmp_path), epoch=1)
  keras.utils.set_random_seed(1)  # the resumed process's own seeds do not matter
  resumed = models.build("mlp", (SIZE, SIZE, 1), 2, augment=names, seed=3)
  resumed.compile("adam", loss=head.loss(2), metrics=[head.accuracy(2)])
  checkpoint.restore(resumed, str(tmp_path), checkpoint.load(str(tmp_path)))
  _fit_mixing(names, 2, epochs=2, model=resumed, initial_epoch=1)
  for a, b in zip(whole.weights, resumed.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
@pytest.mark.parametrize("names", MIXES)
def test_mixing_trains_under_xla(names):
  model = models.build("mlp", (SIZE, SIZE, 1), 3, augment=["flip", *names], seed=0)
  model.compile("adam", loss=head.loss(3), jit_compile=True)
  assert model.jit_compile
  images, labels = _labelled(num_classes=3)
  history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


def test_a_mixing_model_saves_as_a_plain_functional_model(tmp_path):
  model, _ = _fit_mixing(("mixup", "cutmix"), 2, epochs=1)
  images, _ = _labelled()
  path = str(tmp_path / "model.keras")
  model.save(path)
  best = str(tmp_path / "model.best.keras")  # what the best-checkpoint callback writes
  _fit_mixing(("mixup", "cutmix"), 2, epochs=2, model=model, initial_epoch=1)
  callback = keras.callbacks.ModelCheckpoint(best)
  callback.set_model(model)
  callback.on_epoch_end(0, {"loss": 1.0})
  for saved in (path, best):
    with zipfile.ZipFile(saved) as archive:
      assert json.loads(archive.read("config.json"))["class_name"] == "Functional"
    loaded = keras.models.load_model(saved, safe_mode=True)
    assert type(loaded) is keras.Model or loaded.__class__.__name__ == "Functional"
    assert loaded.optimizer is not None and int(loaded.optimizer.iterations) > 0
  loaded = keras.models.load_model(best)
  np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                             rtol=1e-5)


def test_mixing_is_no_layer_so_a_model_module_alone_refuses_it():
  with pytest.raises(ValueError, match="mixup mix labels too"):
    preprocessing.augmentation(augment=["flip", "mixup"])
  with pytest.raises(ValueError, match="functional model"):
    mixing.MixingModel.of(keras.Sequential(), ["mixup"], seed=0)
