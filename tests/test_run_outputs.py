"""What a completed training run leaves: one model file when the best epoch is the last, two
when they differ, no backup; run again, it evaluates the same model, and with more epochs it
trains on exactly as an uninterrupted run would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from petpipe import experiment
from petpipe.pipeline import schema
from petpipe.scripts import train as train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("cat", "dog")
SIZE = 16


def _picture(label: int, rng: np.random.Generator) -> np.ndarray:
  """Learnable: cats bright, dogs dark."""
  low, high = (150, 230) if label == 0 else (20, 100)
  return rng.integers(low, high, size=(SIZE, SIZE, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
  """TFDS-named raw shards of learnable pictures; returns the training-shard glob."""
  folder = str(tmp_path_factory.mktemp("data"))
  feats = schema.features(schema.ImageStorage("raw", 1, (SIZE, SIZE)), CLASSES)
  feats.save_config(folder)
  rng = np.random.default_rng(0)
  for split, count in {"train": 24, "validation": 8, "test": 8}.items():
    with tf.io.TFRecordWriter(os.path.join(folder, f"tiny-{split}.tfrecord-00000-of-00001")) as w:
      for i in range(count):
        w.write(feats.serialize_example({
            schema.IMAGE: _picture(i % 2, rng), schema.LABEL: i % 2,
            schema.FILENAME: f"{CLASSES[i % 2]}/{split}-{i}.png"}))
  return os.path.join(folder, "tiny-train.tfrecord*")


class WorseAfterFirstEpoch(keras.callbacks.Callback):
  """Validates every epoch after the first with a model that is confidently wrong on half
  the examples, then puts the trained weights back: the best epoch is the first, whatever
  the training does, and the training is that of a run without this callback."""

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch

  def on_test_begin(self, logs=None):
    if getattr(self, "epoch", 0) >= 1:
      self.kept = [np.asarray(w) for w in self.model.trainable_weights]
      *rest, bias = self.model.trainable_weights
      for w in rest:
        w.assign(np.zeros(w.shape, w.dtype))
      bias.assign(np.full(bias.shape, 50.0, bias.dtype))  # "dog" for every picture

  def on_test_end(self, logs=None):
    if getattr(self, "kept", None) is not None:
      for w, value in zip(self.model.trainable_weights, self.kept):
        w.assign(value)
      self.kept = None


# A run with `WorseAfterFirstEpoch`, in its own process (`deterministic` sets op determinism
# for the whole process).
DRIVER = """
import sys
from petpipe import experiment
from tests.test_run_outputs import WorseAfterFirstEpoch
shards, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
experiment.run(experiment.RunConfig(shards=shards, model="mlp", epochs=epochs, batch_size=8,
                                    seed=3, deterministic=True, out=out),
               callbacks=[WorseAfterFirstEpoch()])
"""


def _start(shards: str, epochs: int, out) -> subprocess.Popen:
  # Output to files, not pipes: a process running beside another never blocks on a full pipe.
  stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
  process = subprocess.Popen([sys.executable, "-c", DRIVER, shards, str(epochs), str(out)],
                             cwd=ROOT, stdout=stdout, stderr=stderr, text=True)
  process.outputs = stdout, stderr
  return process


def _finish(process: subprocess.Popen) -> str:
  try:
    process.wait(timeout=300)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  texts = []
  for file in process.outputs:
    file.seek(0)
    texts.append(file.read())
    file.close()
  assert process.returncode == 0, texts[1][-3000:]
  return texts[0]


def _run(shards: str, epochs: int, out) -> str:
  return _finish(_start(shards, epochs, out))


def _invoke(args) -> str:
  result = CliRunner().invoke(train_command.main, [str(a) for a in args])
  assert result.exit_code == 0, result.output + repr(result.exception)
  return result.output


def _metrics(out) -> dict:
  with open(os.path.join(out, "metrics.json")) as f:
    return json.load(f)


def _weights(path) -> list:
  return [np.asarray(w) for w in keras.models.load_model(path).weights]


def _files(out) -> set:
  return {name for name in os.listdir(out) if not name.startswith(".")}


@pytest.mark.slow
def test_a_completed_run_whose_best_epoch_is_the_last_keeps_one_model_and_no_backup(shards,
                                                                                   tmp_path):
  out = tmp_path / "out"
  output = _invoke(["--shards", shards, "--model", "mlp", "--epochs", 1, "--batch-size", 8,
                    "--seed", 1, "--out", out])
  metrics = _metrics(out)
  assert metrics["best"]["epoch"] == 1 and metrics["best"]["file"] == "model.keras"
  assert _files(out) == {"model.keras", "history.csv", "classes.json", "metrics.json",
                         "curves.png", "samples.png", "confusion.png", "suspects.csv",
                         "tensorboard"}
  assert set(metrics["outputs"].values()) == _files(out)
  assert "The best epoch is the last, epoch 1" in output
  assert "model.keras holds it (no separate model.best.keras)" in output
  assert "Outputs in" in output and "model.best.keras," not in output


@pytest.mark.slow
def test_a_best_epoch_before_the_last_is_kept_as_a_second_model(shards, tmp_path):
  out = tmp_path / "out"
  metrics = experiment.run(experiment.RunConfig(shards=shards, model="mlp", epochs=3,
                                                batch_size=8, seed=1, out=str(out)),
                           callbacks=[WorseAfterFirstEpoch()])
  assert json.loads(json.dumps(metrics)) == _metrics(out)
  assert metrics["best"]["epoch"] == 1 and metrics["best"]["file"] == "model.best.keras"
  assert _files(out) == {"model.keras", "model.best.keras", "history.csv", "classes.json",
                         "metrics.json", "curves.png", "samples.png", "confusion.png", "suspects.csv",
                         "tensorboard"}
  assert set(metrics["outputs"].values()) == _files(out)
  final, best = _weights(out / "model.keras"), _weights(out / "model.best.keras")
  assert any(not np.array_equal(a, b) for a, b in zip(final, best))


@pytest.mark.slow
def test_a_completed_run_run_again_evaluates_the_same_model_without_training(shards, tmp_path):
  out = tmp_path / "out"
  args = ["--shards", shards, "--model", "mlp", "--epochs", 2, "--batch-size", 8, "--seed", 1,
          "--out", out]
  _invoke(args)
  first, weights = _metrics(out), _weights(out / "model.keras")
  output = _invoke(args)
  assert "already holds 2 trained epochs: evaluating them again" in output
  assert "Epoch " not in output  # nothing trained
  again = _metrics(out)
  assert again["epochs"] == first["epochs"] and again["resume"] == first["resume"]
  assert again["final"]["test"]["loss"] == pytest.approx(first["final"]["test"]["loss"])
  for a, b in zip(weights, _weights(out / "model.keras")):
    np.testing.assert_array_equal(a, b)
  assert "backup" not in _files(out)


@pytest.mark.slow
def test_a_completed_run_trains_on_to_the_weights_of_an_uninterrupted_run(shards, tmp_path):
  # The best epoch is the first: after one epoch the final model is the only copy of it,
  # and training on must keep it as model.best.keras.
  whole, continued = tmp_path / "whole", tmp_path / "continued"
  # Two separate processes (separate folders) at once: neither depends on the other.
  running = [_start(shards, 3, whole), _start(shards, 1, continued)]
  try:
    for process in running:
      _finish(process)
  finally:
    for process in running:
      if process.poll() is None:
        process.kill()
        process.wait()
  assert "model.best.keras" not in _files(continued)
  output = _run(shards, 3, continued)
  assert "Continuing from epoch 2, step 0 of 3 (1 of 3 epochs done; state in " in output
  for name in ("model.keras", "model.best.keras"):
    for a, b in zip(_weights(whole / name), _weights(continued / name)):
      np.testing.assert_array_equal(a, b, err_msg=name)
  assert _metrics(whole)["best"] == _metrics(continued)["best"]
  assert _metrics(whole)["best"]["file"] == "model.best.keras"
  for key in ("loss", "val_loss", "accuracy", "examples"):
    assert [r[key] for r in _metrics(whole)["epochs"]] == \
        [r[key] for r in _metrics(continued)["epochs"]], key
  assert "backup" not in _files(continued) | _files(whole)
